"""deepspeech-pytorch: DeepSpeech2 speech recognition on modern PyTorch.

The package's face is a few names, as whisper's is:

    import deepspeech_pytorch
    deepspeech_pytorch.available_models()                  # ['default']
    model = deepspeech_pytorch.load_model()                # the bundled English model (or a checkpoint path)
    print(deepspeech_pytorch.transcribe("speech.wav").text)
    deepspeech_pytorch.Transcriber(model, decoder="beam").transcribe("speech.wav")

Everything else is one import deeper (`deepspeech_pytorch.inference`, `.models`, `.training`, ...). The names
are loaded on first use, so `import deepspeech_pytorch` itself imports neither torch nor the model.
"""

from __future__ import annotations

import os
from typing import Any, List

_PRETRAINED = os.path.join(os.path.dirname(__file__), "pretrained")
_LAZY = {"load_model": "deepspeech_pytorch.inference", "Transcriber": "deepspeech_pytorch.inference",
         "Transcription": "deepspeech_pytorch.inference"}


def available_models() -> List[str]:
    """Names of the models bundled with this installation (`load_model(name)` loads one)."""
    if not os.path.isdir(_PRETRAINED):
        return []
    return sorted(name[:-3] for name in os.listdir(_PRETRAINED) if name.endswith(".pt"))


def transcribe(audio: Any, model: Any = None, decoder: str = "greedy", word_timings: bool = True):
    """Transcribe one file path, bytes or mono float32 array at 16 kHz with `model` (a name from
    `available_models()`, a checkpoint path, or a loaded model; None: the bundled default) and return a
    `Transcription` (text, words with start/end seconds, duration). Raises AudioError for unusable audio
    and CheckpointError for an unusable model."""
    from deepspeech_pytorch.inference import LoadedModel, Transcriber, load_model

    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    return Transcriber(loaded, decoder=decoder).transcribe(audio, word_timings=word_timings)


def _version() -> str:
    from importlib import metadata  # on first use: importing it costs 15-20 ms of every start-up

    try:
        return metadata.version("deepspeech-pytorch")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "0.0.0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()["__version__"] = version = _version()
        return version
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deepspeech_pytorch' has no attribute {name!r}")


__all__ = ["__version__", "available_models", "load_model", "transcribe", "Transcriber", "Transcription"]
