"""DeepSpeech2: a masked conv front end, a stack of (bi)directional RNNs with sequence-wise BatchNorm, a CTC head.

Follows the paper (Amodei et al., 2016, "Deep Speech 2: End-to-End Speech Recognition in English and
Mandarin") and the original deepspeech.pytorch port. The model is free of I/O: features in, per-frame
logits out, with output lengths from the conv arithmetic.

Unidirectional models (`bidirectional: false`, with the paper's lookahead row convolution, section 3.5)
stream: `forward_chunk` runs the same layers on each new chunk of frames, holding back in `StreamState` what
needs future context (the conv front end's right context, the lookahead's `lookahead_context` frames) and
carrying the recurrent state, so chunks of any size give the logits of one pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

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

    # ---- streaming (unidirectional models) ----

    @property
    def can_stream(self) -> bool:
        return not self.config.bidirectional

    @property
    def latency_frames(self) -> Optional[int]:
        """Input frames of future context an output frame needs: the lookahead's frames and the conv front
        end's right context (kernel - 1 - padding per layer), through the strides. 15 + 2 x lookahead_context.

        None for a bidirectional model (never an error, so tracing and export read it safely): its backward
        layers make every output frame depend on the utterance's last frame, so no bounded number of future
        frames suffices; `StreamingTranscriber` runs such a model in utterance mode instead."""
        if not self.can_stream:
            return super().latency_frames
        frames = self.config.lookahead_context
        for kernel, stride, padding in reversed(CONV_LAYERS):
            frames = frames * stride[1] + kernel[1] - 1 - padding[1]
        return frames

    def initial_state(self, batch: int = 1) -> "StreamState":
        if not self.can_stream:
            return super().initial_state(batch)
        parameter = next(self.parameters())
        conv_inputs = []
        channels, freq = 1, self.num_features
        for kernel, stride, padding in CONV_LAYERS:  # each layer's left padding, as one pass pads it
            conv_inputs.append(parameter.new_zeros(batch, channels, freq, padding[1]))
            channels, freq = self.config.conv_channels, conv_output_size(freq, kernel[0], stride[0], padding[0])
        lookahead = parameter.new_zeros(0, batch, self.config.hidden_size)
        return StreamState(conv_inputs, [None] * len(self.rnns), lookahead, batch)

    def forward_chunk(self, features: Tensor, state: "StreamState", final: bool = False) -> Tuple[Tensor, "StreamState"]:
        """features (batch, freq, frames) of the next chunk -> logits (batch, time, classes) of the output frames
        complete now, and the new state (the old one is not changed). See `base.AcousticModel`."""
        if not self.can_stream:
            return super().forward_chunk(features, state, final)
        if self.training:
            raise ValueError("forward_chunk runs in eval mode (model.eval()): BatchNorm must use its running statistics")
        if state.finished:
            raise ValueError("this stream has ended (final=True was given): start again from initial_state()")
        if features.dim() != 3 or features.shape[0] != state.batch or features.shape[1] != self.num_features:
            raise ValueError(f"expected features of shape ({state.batch}, {self.num_features}, frames), "
                             f"got {tuple(features.shape)}")
        x, conv_inputs = self._conv_chunk(features.unsqueeze(1).to(state.lookahead), state.conv_inputs, final)
        batch, channels, freq, time = x.shape
        x = x.reshape(batch, channels * freq, time).permute(2, 0, 1)  # (time, batch, features)
        hidden: List[Any] = list(state.hidden)
        if time:
            for index, layer in enumerate(self.rnns):
                if layer.batch_norm is not None:
                    x = layer.batch_norm(x)
                x, hidden[index] = layer.rnn(x, hidden[index])
        else:
            x = state.lookahead[:0]
        x, lookahead = self._lookahead_chunk(torch.cat([state.lookahead, x]), final)
        logits = (self.head(x) if x.shape[0] else x.new_zeros(0, state.batch, self.num_classes)).transpose(0, 1)
        return logits, StreamState(conv_inputs, hidden, lookahead, state.batch, finished=final)

    def _conv_chunk(self, x: Tensor, pending: List[Tensor], final: bool) -> Tuple[Tensor, List[Tensor]]:
        """x: (batch, 1, freq, frames) -> the conv front end's complete output frames and each layer's input
        frames kept for the next chunk (those a later output's window still covers)."""
        layers = self.conv.layers
        kept = []
        for index, (kernel, stride, padding) in enumerate(CONV_LAYERS):
            conv, norm, activation = layers[3 * index], layers[3 * index + 1], layers[3 * index + 2]
            window, step = kernel[1], stride[1]
            frames = torch.cat([pending[index], x], dim=3)
            if final:  # the right padding of one pass
                frames = nn.functional.pad(frames, (0, padding[1]))
            count = (frames.shape[3] - window) // step + 1 if frames.shape[3] >= window else 0
            freq = conv_output_size(frames.shape[2], kernel[0], stride[0], padding[0])
            if count:
                x = nn.functional.conv2d(frames[..., : (count - 1) * step + window], conv.weight, conv.bias,
                                         stride=conv.stride, padding=(conv.padding[0], 0))
                x = activation(norm(x))
            else:
                x = frames.new_zeros(frames.shape[0], conv.out_channels, freq, 0)
            kept.append(frames[..., count * step:])
        return x, kept

    def _lookahead_chunk(self, x: Tensor, final: bool) -> Tuple[Tensor, Tensor]:
        """x: (time, batch, hidden) recurrent outputs not yet through the lookahead -> those that have their
        `lookahead_context` future frames now, through it, and the frames kept for the next chunk."""
        context = self.config.lookahead_context
        if final:
            x = torch.cat([x, x.new_zeros(context, *x.shape[1:])])
        count = max(0, x.shape[0] - context)
        lookahead = self.lookahead
        out = lookahead.activation(lookahead.conv(x[: count + context].permute(1, 2, 0))).permute(2, 0, 1) \
            if count else x[:0]
        return out, x[count:]


@dataclass
class StreamState:
    """What a DeepSpeech2 stream carries from chunk to chunk (tensors on the model's device).

    conv_inputs: per conv layer, its input frames (batch, channels, freq, frames) from the first one its next
        output frame's window covers (at the start: the layer's left padding, zeros).
    hidden: per recurrent layer, its state (h, or (h, c) for an LSTM; None before the first frame).
    lookahead: (frames, batch, hidden) recurrent outputs waiting for their future context.
    batch: streams in the batch. finished: the last chunk (final=True) has been given.
    """

    conv_inputs: List[Tensor]
    hidden: List[Any]
    lookahead: Tensor
    batch: int = 1
    finished: bool = False



def unidirectional_from(model: DeepSpeech2, lookahead_context: int = 6) -> DeepSpeech2:
    """A streaming DeepSpeech2 (`bidirectional: false`) started from a bidirectional one's forward direction.

    The conv front end, each layer's forward RNN and BatchNorm and the CTC head are copied; the backward RNNs
    are dropped, and the lookahead row convolution (`lookahead_context` output frames) starts as the identity
    on its current frame. The result does not transcribe yet (each layer was trained on the sum of both
    directions): it is a starting point for fine-tuning with causal features, which then needs far fewer steps
    than training from scratch. The input model is not changed.

    Raises ValueError when `model` is already unidirectional or `lookahead_context` is negative.
    """
    if not model.config.bidirectional:
        raise ValueError("the model is already unidirectional: it streams as it is")
    config = dataclasses.replace(model.config, bidirectional=False, lookahead_context=lookahead_context)
    config.check()
    streaming = DeepSpeech2(config, model.num_features, model.num_classes)
    weights = {name: value for name, value in model.state_dict().items() if ".rnn_reverse." not in name}
    identity = torch.zeros_like(streaming.lookahead.conv.weight)  # (hidden, 1, context + 1): tap 0 is the frame itself
    identity[:, 0, 0] = 1.0
    weights["lookahead.conv.weight"] = identity
    streaming.load_state_dict(weights, strict=True)
    return streaming.train(model.training)


def _register() -> None:
    from deepspeech_pytorch.models import Architecture, register
    register(Architecture(ARCHITECTURE, DeepSpeech2Config, DeepSpeech2))


_register()
