"""DeepSpeech2: a masked conv front end, a stack of (bi)directional RNNs with sequence-wise BatchNorm, a CTC head.

Follows the paper (Amodei et al., 2016, "Deep Speech 2: End-to-End Speech Recognition in English and
Mandarin") and the original deepspeech.pytorch port. The model is free of I/O: features in, per-frame
logits out, with output lengths from the conv arithmetic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import torch
from torch import Tensor, nn

from deepspeech_pytorch.models.base import AcousticModel, AcousticModelConfig

ARCHITECTURE = "deepspeech2"
_RNNS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


@dataclass
class DeepSpeech2Config(AcousticModelConfig):
    architecture: str = ARCHITECTURE
    rnn_type: str = "gru"  # lstm | gru | rnn
    hidden_size: int = 512
    hidden_layers: int = 3
    bidirectional: bool = True
    lookahead_context: int = 20  # frames, for unidirectional models only
    conv_channels: int = 32

    def check(self) -> None:
        if self.rnn_type not in _RNNS:
            raise ValueError(f"model.rnn_type={self.rnn_type!r}: choose from {', '.join(sorted(_RNNS))}")
        for name in ("hidden_size", "hidden_layers", "conv_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name}={getattr(self, name)} must be at least 1")
        if self.lookahead_context < 0:
            raise ValueError(f"model.lookahead_context={self.lookahead_context} must be at least 0")

# (kernel, stride, padding) of the two convolutions over (freq, time), as in the original port.
CONV_LAYERS = (
    ((41, 11), (2, 2), (20, 5)),
    ((21, 11), (2, 1), (10, 5)),
)


def padding_mask(lengths: Tensor, steps: int) -> Tensor:
    """(batch, steps) booleans, True on the padded steps after each utterance's length."""
    return torch.arange(steps, device=lengths.device)[None, :] >= lengths[:, None]


def conv_output_size(size: Tensor | int, kernel: int, stride: int, padding: int) -> Tensor | int:
    if isinstance(size, Tensor):
        return torch.div(size + 2 * padding - kernel, stride, rounding_mode="floor") + 1
    return (size + 2 * padding - kernel) // stride + 1


class MaskedConv(nn.Module):
    """Conv2d + BatchNorm + Hardtanh layers that zero the padded time steps after every layer,
    so padding never leaks into the valid frames of shorter utterances."""

    def __init__(self, channels: int):
        super().__init__()
        layers = []
        in_channels = 1
        for kernel, stride, padding in CONV_LAYERS:
            layers += [nn.Conv2d(in_channels, channels, kernel, stride, padding),
                       nn.BatchNorm2d(channels), nn.Hardtanh(0, 20, inplace=True)]
            in_channels = channels
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """x: (batch, channels, freq, time); lengths: (batch,) valid time steps."""
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, nn.Conv2d):
                lengths = conv_output_size(lengths, layer.kernel_size[1], layer.stride[1], layer.padding[1])
            x = x.masked_fill(padding_mask(lengths, x.shape[3])[:, None, None, :], 0.0)
        return x, lengths


class SequenceWise(nn.Module):
    """Apply a module to every time step of a (time, batch, features) tensor."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor) -> Tensor:
        time, batch = x.shape[:2]
        return self.module(x.reshape(time * batch, -1)).reshape(time, batch, -1)


def reversal_index(lengths: Tensor, padding: Tensor) -> Tensor:
    """(time, batch) source steps that reverse each utterance within its own length (padding stays put);
    `padding` is the layer's (time, batch) padding mask. Reversing twice is the identity."""
    time = torch.arange(padding.shape[0], device=padding.device)[:, None]
    return torch.where(padding, time, lengths[None, :] - 1 - time)


class BatchRNN(nn.Module):
    """One recurrent layer; bidirectional outputs are summed, as in the original port.

    Two plain one-direction RNN modules (`rnn` forward, `rnn_reverse` backward) so the layer traces,
    exports to ONNX and dynamic-quantizes. Runs on padded tensors instead of packed sequences (on CPU the
    backward pass of a packed RNN is three to four times slower): the forward direction ignores the
    padding after each utterance; the backward direction reads each utterance reversed within its
    length, so its outputs equal a packed run's. Padded output frames are zeroed.
    """

    def __init__(self, input_size: int, hidden_size: int, rnn_type: str, bidirectional: bool, batch_norm: bool):
        super().__init__()
        self.bidirectional = bidirectional
        self.batch_norm = SequenceWise(nn.BatchNorm1d(input_size)) if batch_norm else None
        self.rnn = _RNNS[rnn_type](input_size, hidden_size, bias=True)
        self.rnn_reverse = _RNNS[rnn_type](input_size, hidden_size, bias=True) if bidirectional else None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoint format 1 stored one bidirectional nn.RNN: its `rnn.*_reverse` weights are `rnn_reverse.*`.
        for key in [k for k in state_dict if k.startswith(prefix + "rnn.") and k.endswith("_reverse")]:
            name = key[len(prefix + "rnn."):-len("_reverse")]
            state_dict[f"{prefix}rnn_reverse.{name}"] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        """x: (time, batch, features); lengths: (batch,) valid steps."""
        if self.batch_norm is not None:
            x = self.batch_norm(x)
        lengths = lengths.to(x.device)
        padding = padding_mask(lengths, x.shape[0]).t()  # (time, batch)
        output, _ = self.rnn(x)
        if self.rnn_reverse is not None:
            index = reversal_index(lengths, padding)[:, :, None]
            backward, _ = self.rnn_reverse(x.gather(0, index.expand_as(x)))
            output = output + backward.gather(0, index.expand_as(backward))
        return output.masked_fill(padding[:, :, None], 0.0)


class Lookahead(nn.Module):
    """Row convolution over `context` future frames (paper section 3.5) for unidirectional models."""

    def __init__(self, features: int, context: int):
        super().__init__()
        self.context = context
        self.conv = nn.Conv1d(features, features, kernel_size=context + 1, groups=features, bias=False)
        self.activation = nn.Hardtanh(0, 20, inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """x: (time, batch, features) -> same shape."""
        x = x.permute(1, 2, 0)  # (batch, features, time)
        x = nn.functional.pad(x, (0, self.context))
        return self.activation(self.conv(x)).permute(2, 0, 1)


class DeepSpeech2(AcousticModel):
    """Features (batch, freq, time) -> logits (batch, time', classes) and output lengths (batch,)."""

    def __init__(self, config: DeepSpeech2Config, num_features: int, num_classes: int):
        super().__init__()
        if not isinstance(config, DeepSpeech2Config):  # a dataclass with the same fields (configs.ModelConfig)
            config = DeepSpeech2Config(**{f.name: getattr(config, f.name) for f in dataclasses.fields(DeepSpeech2Config)
                                          if hasattr(config, f.name) and f.name != "architecture"})
        config.check()
        self.config = config
        self.num_features = num_features
        self.num_classes = num_classes
        self.conv = MaskedConv(config.conv_channels)
        freq = num_features
        for kernel, stride, padding in CONV_LAYERS:
            freq = conv_output_size(freq, kernel[0], stride[0], padding[0])
        rnn_input = config.conv_channels * freq
        self.rnns = nn.ModuleList(
            BatchRNN(rnn_input if i == 0 else config.hidden_size, config.hidden_size, config.rnn_type,
                     config.bidirectional, batch_norm=i > 0)
            for i in range(config.hidden_layers)
        )
        self.lookahead = None if config.bidirectional else Lookahead(config.hidden_size, config.lookahead_context)
        self.head = SequenceWise(nn.Sequential(nn.BatchNorm1d(config.hidden_size),
                                               nn.Linear(config.hidden_size, num_classes, bias=False)))

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Frames out of the conv front end for `lengths` frames in."""
        for kernel, stride, padding in CONV_LAYERS:
            lengths = conv_output_size(lengths, kernel[1], stride[1], padding[1])
        return lengths

    @property
    def time_stride(self) -> int:
        """Input frames per output frame."""
        stride = 1
        for _, layer_stride, _ in CONV_LAYERS:
            stride *= layer_stride[1]
        return stride

    def describe(self) -> Dict[str, Any]:
        config = self.config
        direction = "bi-" if config.bidirectional else "uni-"
        return {**super().describe(),
                "summary": f"DeepSpeech2 {config.hidden_layers} x {direction}{config.rnn_type} {config.hidden_size}"}

    def forward(self, features: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """features: (batch, freq, frames); lengths: (batch,) valid frames."""
        x, lengths = self.conv(features.unsqueeze(1), lengths)
        batch, channels, freq, time = x.shape
        x = x.view(batch, channels * freq, time).permute(2, 0, 1).contiguous()  # (time, batch, features)
        for rnn in self.rnns:
            x = rnn(x, lengths)
        if self.lookahead is not None:
            x = self.lookahead(x)
        logits = self.head(x).transpose(0, 1)  # (batch, time, classes)
        return logits, lengths



def _register() -> None:
    from deepspeech_pytorch.models import Architecture, register
    register(Architecture(ARCHITECTURE, DeepSpeech2Config, DeepSpeech2))


_register()
