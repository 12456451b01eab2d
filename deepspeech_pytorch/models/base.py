"""The contract every acoustic model meets, so training, inference, export and streaming never name one.

An acoustic model maps features to per-frame CTC logits:
    forward(features (batch, freq, frames), lengths (batch,)) -> (logits (batch, time, classes), lengths (batch,))
with `time_stride` input frames per output frame and `output_lengths()` giving the output lengths from the
input lengths without running the model. Models that can stream also implement
    initial_state(batch) -> state,
    forward_chunk(features (batch, freq, frames), state, final=False) -> (logits (batch, time, classes), state)
so that feeding a recording chunk by chunk gives the logits of one pass (the shape of torchaudio's Emformer
`infer`, with the state passed in and out explicitly). A chunk of any size, even empty, is accepted: what
needs future context is held back in the state and comes out with a later chunk; `final=True` marks the
last chunk, after which the held-back frames come out as one pass pads them (with zeros). Concatenating the
logits of all chunks gives exactly the one-pass logits, `output_lengths(total frames)` of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

from torch import Tensor, nn


class StreamingNotSupported(ValueError):
    """The model sees the whole utterance at once (e.g. bidirectional layers) and cannot stream."""


@dataclass
class AcousticModelConfig:
    """Base of every model config: `architecture` names the registry entry that builds it."""

    architecture: str = "?"

    def check(self) -> None:
        """Raise ValueError naming a field whose value cannot build a model (`model.<field>=...`)."""


class AcousticModel(nn.Module):
    """Features in, CTC logits out. Subclasses set `config`, `num_features` and `num_classes`."""

    config: AcousticModelConfig
    num_features: int
    num_classes: int

    def forward(self, features: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def time_stride(self) -> int:
        """Input frames per output frame."""
        raise NotImplementedError

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Output frames for `lengths` input frames, shape (batch,)."""
        raise NotImplementedError

    def describe(self) -> Dict[str, Any]:
        """A short description for logs, the CLI and the server: architecture, a one-line summary,
        parameter count, time stride and whether the model streams."""
        return {"architecture": self.config.architecture, "summary": self.config.architecture,
                "parameters": sum(p.numel() for p in self.parameters()), "time_stride": self.time_stride,
                "streaming": self.can_stream}

    @property
    def can_stream(self) -> bool:
        """Whether `initial_state` / `forward_chunk` work (e.g. unidirectional layers)."""
        return False

    @property
    def latency_frames(self) -> Optional[int]:
        """Input frames of future context a streaming model needs before an output frame comes out (its conv
        and lookahead right context): the model's share of a stream's latency. None for models that cannot
        stream."""
        return None

    def initial_state(self, batch: int = 1) -> Any:
        """The state before the first chunk of `batch` streams (on the model's device)."""
        raise StreamingNotSupported(f"{self.config.architecture} models of this configuration cannot stream")

    def forward_chunk(self, features: Tensor, state: Any, final: bool = False) -> Tuple[Tensor, Any]:
        """features (batch, freq, frames) of the next chunk, any number of frames -> the logits (batch, time,
        classes) that are complete now, and the new state. Eval mode (BatchNorm with running statistics)."""
        raise StreamingNotSupported(f"{self.config.architecture} models of this configuration cannot stream")
