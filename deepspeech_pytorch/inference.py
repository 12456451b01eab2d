"""The one transcription API: `load_model()` and `Transcriber`, used by transcribe.py, test.py,
training-time validation and the server alike, so there is a single audio -> text pipeline.

Two backends run the acoustic model: torch (a checkpoint, `.pt`) and onnxruntime (a model exported by
export.py, `.onnx`: fp32 or int8). Everything around the model is shared: the audio, the voice-activity
detection, the same features (numpy twins of features.py for onnxruntime), the same decoders. The
onnxruntime path never imports torch, so a deployment can leave PyTorch out.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from typing import TYPE_CHECKING

import numpy as np

from deepspeech_pytorch.audio import AudioSource, to_waveform
from deepspeech_pytorch.configs import BACKENDS, CHUNK_SECONDS, DecoderConfig, FeatureConfig, LanguageModelConfig
from deepspeech_pytorch.decoders import (Hypothesis, ModelLanguageModel, WordTiming, as_lengths, as_numpy,
                                         build_decoder, move_word_times)
from deepspeech_pytorch.extras import available, require
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.numpy_features import seconds_per_frame
from deepspeech_pytorch.onnx_backend import ModelFileError, folder_hint, is_onnx
from deepspeech_pytorch.vad import VadConfig, speech_segments

if TYPE_CHECKING:  # torch is imported where the torch backend runs, never on the onnxruntime path
    import torch

    from deepspeech_pytorch.models import AcousticModel
    from deepspeech_pytorch.onnx_backend import OnnxAcousticModel

logger = logging.getLogger(__name__)

QUIET_SEARCH_SECONDS = 3.0  # how far back from a chunk's end to look for a quiet place to cut
ENERGY_FRAME_SECONDS = 0.01


def resolve_device(device: Union[str, "torch.device", None] = "auto") -> "torch.device":
    """The torch device a setting names: auto is CUDA when available, else the CPU. MissingExtraError
    without PyTorch."""
    torch = require("torch", f"device={device}")

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was requested but CUDA is not available")
    return device


@dataclass
class LoadedModel:
    model: Union["AcousticModel", "OnnxAcousticModel"]  # the torch module, or the ONNX Runtime session's wrapper
    alphabet: Alphabet
    features: FeatureConfig
    name: str
    path: Optional[str] = None
    language_model: Optional[LanguageModelConfig] = None  # the LM shipped beside the checkpoint, if any
    lm_beam_size: Optional[int] = None  # the beam its alpha/beta were tuned with, if the settings say
    backend: str = "torch"  # torch | onnxruntime: what runs `model`

    @property
    def model_lm(self) -> Optional[ModelLanguageModel]:
        return None if self.language_model is None else ModelLanguageModel(self.language_model, self.lm_beam_size)

    @property
    def info(self) -> Dict[str, Any]:
        described = self.model.describe()
        return {"name": self.name, "architecture": described["summary"], "parameters": described["parameters"],
                "sample_rate": self.features.sample_rate, "path": self.path, "backend": self.backend}


PRETRAINED_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
LM_SETTINGS_SUFFIX = ".lm.json"  # model.pt may ship model.lm.json: its KenLM, lexicon, tuned alpha/beta and beam


def default_model_path() -> str:
    """The bundled model inside the package."""
    return os.path.join(PRETRAINED_DIR, "default.pt")


def lm_settings_path(model_path: str) -> Optional[str]:
    """The LM settings file shipped beside a model, or None: `<stem>.lm.json`; for a twin such as
    `model.int8.onnx` also the settings of the model it came from (`model.lm.json`)."""
    stem = os.path.splitext(model_path)[0]
    candidates = [stem + LM_SETTINGS_SUFFIX]
    if os.path.splitext(stem)[1]:
        candidates.append(os.path.splitext(stem)[0] + LM_SETTINGS_SUFFIX)
    return next((path for path in candidates if os.path.isfile(path)), None)


def ships_language_model(checkpoint_path: str) -> bool:
    return lm_settings_path(checkpoint_path) is not None


def _model_error(model_path: str) -> type:
    """The error for a model's files: ModelFileError for an exported model (no torch), else CheckpointError."""
    if is_onnx(model_path):
        return ModelFileError
    from deepspeech_pytorch.checkpoint import CheckpointError

    return CheckpointError


def _inside(folder: str, name: str, settings_path: str, error: type) -> str:
    """A file named by LM settings: a plain name in the model's folder, never a path elsewhere."""
    if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
        raise error(f"{settings_path}: {name!r} must be a file name in the model's folder")
    return os.path.join(folder, name)


def check_beam_size(value: Any) -> int:
    """A tuned beam size: a true positive integer (JSON's 2.5 or true would otherwise slip through)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"beam_size must be a positive integer, not {value!r}")
    return value


def read_lm_settings(checkpoint_path: str) -> Tuple[Optional[LanguageModelConfig], Optional[int]]:
    """The language model shipped beside a checkpoint (`<stem>.lm.json`, paths relative to it) and the
    beam size it was tuned with (optional in the file); (None, None) when there is none."""
    settings_path = lm_settings_path(checkpoint_path)
    if settings_path is None:
        return None, None
    error_class = _model_error(checkpoint_path)
    try:
        with open(settings_path, encoding="utf-8") as handle:
            raw = json.load(handle)
        folder = os.path.dirname(os.path.abspath(settings_path))
        settings = LanguageModelConfig(
            path=_inside(folder, raw["path"], settings_path, error_class),
            lexicon_path=_inside(folder, raw["lexicon_path"], settings_path, error_class) if raw.get("lexicon_path") else None,
            alpha=float(raw["alpha"]), beta=float(raw["beta"]))
        beam_size = None if raw.get("beam_size") is None else check_beam_size(raw["beam_size"])
    except error_class:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise error_class(f"{settings_path}: unreadable language-model settings ({error})") from error
    for file in (settings.path, settings.lexicon_path):
        if file is not None and not os.path.isfile(file):
            raise error_class(f"{settings_path} names {file}, which does not exist")
    return settings, beam_size


BUNDLED_ONNX_SUFFIXES = (".int8.onnx", ".onnx")  # a bundled model's exported twins, preferred first


def choose_backend(path: Optional[str], backend: str = "auto") -> str:
    """The backend that runs the model file `path`: auto is onnxruntime for a `.onnx` file, torch otherwise.
    Raises ValueError when the asked backend cannot run that file."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "auto":
        return "onnxruntime" if is_onnx(path) else "torch"
    if backend == "torch" and is_onnx(path):
        raise ValueError(f"backend=torch runs checkpoints, and {path} is an exported ONNX model: use "
                         "backend=onnxruntime (or auto)")
    if backend == "onnxruntime" and not is_onnx(path):
        raise ValueError(f"backend=onnxruntime runs an exported model (.onnx), and {path} is not one: export it "
                         "with export.py, or use backend=torch (or auto)")
    return backend


def resolve_model_path(path: Optional[str], backend: str = "auto") -> str:
    """A model file from `path`: a file, the name of a bundled model, or None for the bundled default; for
    backend=onnxruntime a bundled model's exported twin (`default.int8.onnx` or `default.onnx`)."""
    bundled_name = path is None or (os.path.sep not in path and not path.endswith((".pt", ".onnx")))
    if backend == "auto" and bundled_name and importlib.util.find_spec("torch") is None:
        backend = "onnxruntime"  # a torch-free install runs the bundled model's exported twin
    if backend == "onnxruntime" and bundled_name:
        for suffix in BUNDLED_ONNX_SUFFIXES:
            candidate = os.path.join(PRETRAINED_DIR, (path or "default") + suffix)
            if os.path.isfile(candidate):
                return candidate
        if path is None:
            raise ModelFileError("this installation ships no exported (.onnx) default model; pass "
                                 "model_path=<model.onnx> (export.py writes one)")
    if path is not None and bundled_name and os.path.isfile(os.path.join(PRETRAINED_DIR, path + ".pt")):
        return os.path.join(PRETRAINED_DIR, path + ".pt")
    if path is None:
        path = default_model_path()
        if not os.path.isfile(path):
            from deepspeech_pytorch.checkpoint import CheckpointError

            raise CheckpointError("no bundled default model in this installation; pass model_path=<checkpoint.pt>")
    return path


def _check_checkpoint_path(path: str) -> None:
    """Without torch, the checks checkpoint.py makes of the path (ModelFileError: missing, a folder)."""
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a folder, not a model file; give the model file in it{folder_hint(path)}")
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: checkpoint not found")


def load_model(path: Optional[str] = None, device: Union[str, "torch.device"] = "cpu",
               backend: str = "auto") -> LoadedModel:
    """Load a model for inference on `device`: `path` is a checkpoint (.pt, run by torch), a model exported by
    export.py (.onnx, run by ONNX Runtime without importing torch), the name of a bundled model
    (`deepspeech_pytorch.available_models()`), or None for the bundled default model. `backend` (auto |
    torch | onnxruntime): auto follows the file; onnxruntime with a bundled name takes its exported twin."""
    path = resolve_model_path(path, backend)
    if choose_backend(path, backend) == "onnxruntime":
        from deepspeech_pytorch.onnx_backend import load_onnx

        model, alphabet, features, name = load_onnx(path, None if device is None else str(device))
        return LoadedModel(model, alphabet, features, name, path, *read_lm_settings(path), backend="onnxruntime")
    if not available("torch"):  # say what is wrong with the path first, then that the checkpoint needs torch
        _check_checkpoint_path(path)
        require("torch", "backend=torch" if backend == "torch" else f"model_path={path} (not .onnx: a PyTorch checkpoint)",
                "or run an exported model (.onnx, export.py writes one) with backend=onnxruntime")
    from deepspeech_pytorch.checkpoint import build_model, load_checkpoint

    state = load_checkpoint(path)
    model, alphabet, features = build_model(state, path)
    model.to(resolve_device(device)).eval()
    name = state.get("name") or os.path.splitext(os.path.basename(path))[0]
    return LoadedModel(model, alphabet, features, name, path, *read_lm_settings(path))


@dataclass
class Transcription:
    text: str
    words: List[WordTiming] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def chunk_boundaries(samples: np.ndarray, sample_rate: int, chunk_seconds: float) -> List[Tuple[int, int]]:
    """Split points so each chunk is at most `chunk_seconds`, cutting at the quietest 10 ms
    in the last few seconds of each chunk so words are rarely split."""
    limit = int(chunk_seconds * sample_rate)
    if limit <= 0:
        raise ValueError("chunk_seconds must be positive")
    frame = max(1, int(ENERGY_FRAME_SECONDS * sample_rate))
    bounds, start = [], 0
    while len(samples) - start > limit:
        end = start + limit
        search_from = max(start + frame, end - int(min(QUIET_SEARCH_SECONDS, chunk_seconds / 2) * sample_rate))
        window = samples[search_from:end]
        usable = len(window) // frame * frame
        if usable >= frame:
            energy = np.square(window[:usable]).reshape(-1, frame).mean(axis=1)
            end = search_from + int(np.argmin(energy)) * frame + frame // 2
        bounds.append((start, end))
        start = end
    bounds.append((start, len(samples)))
    return bounds


class Transcriber:
    """Audio -> speech segments (VAD) -> features -> model -> decoder -> text with word timings.

    vad: transcribe only the stretches where someone speaks (Silero VAD), each with a little context;
    silence and near-silence give an empty transcript. False: the whole recording, cut at quiet points
    into chunks of at most `chunk_seconds`. The model's backend (`loaded.backend`) decides where the
    features are computed: torch (on the model's device) or numpy (onnxruntime, no torch).
    """

    def __init__(self, loaded: LoadedModel, decoder: Union[DecoderConfig, str] = "greedy", chunk_seconds: float = CHUNK_SECONDS,
                 batch_size: int = 8, device: Union[str, "torch.device", None] = None, vad: bool = True,
                 vad_config: VadConfig = VadConfig()):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer of at least 1")
        if not math.isfinite(chunk_seconds) or chunk_seconds < 1:
            raise ValueError(f"chunk_seconds={chunk_seconds!r} must be a finite number of at least 1")
        self.loaded = loaded
        self.vad = vad
        self.vad_config = vad_config
        self.backend = loaded.backend
        if self.backend == "onnxruntime":
            from deepspeech_pytorch import numpy_features

            if device is not None and str(device) not in ("auto", "cpu"):
                raise ValueError(f"device={device}: an ONNX model's device is chosen when it is loaded "
                                 "(load_model(path, device=...))")
            self.device = "cpu"
            self.extractor = numpy_features.FeatureExtractor(loaded.features)  # window, filterbank, statistics: once
        else:
            from deepspeech_pytorch.features import FeatureExtractor

            self.device = next(loaded.model.parameters()).device if device is None else resolve_device(device)
            loaded.model.to(self.device)
            self.extractor = FeatureExtractor(loaded.features).to(self.device)  # window, filterbank, statistics: once
        self.chunk_seconds = chunk_seconds
        self.batch_size = batch_size
        frame_seconds = seconds_per_frame(loaded.features) * loaded.model.time_stride
        self.decoder = build_decoder(decoder, loaded.alphabet, frame_seconds, loaded.model_lm)

    @property
    def sample_rate(self) -> int:
        return self.loaded.features.sample_rate

    def log_probs(self, features, lengths) -> Tuple[Any, Any]:
        """features (batch, freq, frames) -> log-probabilities (batch, time, classes) and lengths: tensors with
        the torch backend; with onnxruntime numpy arrays, or CPU tensors when given tensors (test.py's dataset)."""
        if self.backend == "onnxruntime":
            from deepspeech_pytorch.onnx_backend import log_softmax

            logits, output_lengths = self.loaded.model(as_numpy(features), as_lengths(lengths))
            if hasattr(features, "detach"):  # the caller works in torch, so torch is imported already
                import torch

                return torch.from_numpy(log_softmax(logits)), torch.from_numpy(output_lengths)
            return log_softmax(logits), output_lengths
        import torch

        model = self.loaded.model
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                logits, output_lengths = model(features.to(self.device), lengths.to(self.device))
                return torch.log_softmax(logits.float(), dim=-1), output_lengths
        finally:
            model.train(was_training)

    def decode(self, log_probs, lengths) -> List[Hypothesis]:
        """log_probs (batch, time, classes) and lengths (batch,), tensors or arrays -> one hypothesis each."""
        return self.decoder.decode(log_probs, lengths)

    def _features(self, padded: np.ndarray, lengths: np.ndarray) -> Tuple[Any, Any]:
        if self.backend == "onnxruntime":
            return self.extractor(padded, lengths)
        import torch

        return self.extractor(torch.from_numpy(padded).to(self.device), torch.from_numpy(lengths).to(self.device))

    def _transcribe_waveforms(self, waveforms: Sequence[np.ndarray]) -> List[Hypothesis]:
        """Batches of similar length (little padding; batching is padding-exact), answers in input order."""
        order = sorted(range(len(waveforms)), key=lambda index: len(waveforms[index]))
        hypotheses: List[Optional[Hypothesis]] = [None] * len(waveforms)
        for first in range(0, len(order), self.batch_size):
            group = order[first: first + self.batch_size]
            lengths = np.array([len(waveforms[index]) for index in group], dtype=np.int64)
            padded = np.zeros((len(group), int(lengths.max())), dtype=np.float32)
            for row, index in enumerate(group):
                padded[row, : lengths[row]] = waveforms[index]
            features, frame_lengths = self._features(padded, lengths)
            log_probs, output_lengths = self.log_probs(features, frame_lengths)
            for index, hypothesis in zip(group, self.decode(log_probs, output_lengths)):
                hypotheses[index] = hypothesis
        return hypotheses  # type: ignore[return-value]

    def transcribe(self, audio: Union[AudioSource, np.ndarray], word_timings: bool = True) -> Transcription:
        """Transcribe one file path, bytes, or array of samples at the model's rate (float or integer PCM; a
        stereo array is averaged). Raises AudioError naming the input when it cannot be used."""
        return self.transcribe_many([audio], word_timings)[0]

    def segments(self, samples: np.ndarray) -> List[Tuple[int, int]]:
        """(start, end) samples of the pieces of one recording that go to the model, each at most about
        `chunk_seconds` long: its speech segments with VAD, else quiet-point chunks of all of it."""
        if not self.vad:
            return chunk_boundaries(samples, self.sample_rate, self.chunk_seconds)
        pieces = []
        for start, end in speech_segments(samples, self.sample_rate, self.chunk_seconds, self.vad_config):
            pieces.extend((start + a, start + b) for a, b in
                          chunk_boundaries(samples[start:end], self.sample_rate, self.chunk_seconds))
        return pieces

    def transcribe_many(self, audios: Sequence[Union[AudioSource, np.ndarray]], word_timings: bool = True) -> List[Transcription]:
        """Transcribe several inputs; long ones are cut into pieces and all pieces batched together."""
        minimum = self.loaded.features.window_size  # one analysis window
        waveforms = [to_waveform(audio, self.sample_rate, min_seconds=minimum) for audio in audios]
        pieces, owners, offsets = [], [], []
        for owner, samples in enumerate(waveforms):
            for start, end in self.segments(samples):
                pieces.append(samples[start:end])
                owners.append(owner)
                offsets.append(start / self.sample_rate)
        hypotheses = self._transcribe_waveforms(pieces)
        results = [Transcription("", [], len(samples) / self.sample_rate) for samples in waveforms]
        for owner, offset, hypothesis in zip(owners, offsets, hypotheses):
            result = results[owner]
            result.text = " ".join(part for part in (result.text, hypothesis.text) if part)
            if word_timings:  # the last frame can reach a little past the audio: clip to its end
                result.words.extend(WordTiming(w.word, min(w.start, result.duration), min(w.end, result.duration))
                                    for w in move_word_times(hypothesis.words, offset))
        return results
