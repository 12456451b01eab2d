"""The one transcription API: `load_model()` and `Transcriber`, used by transcribe.py, test.py,
training-time validation and the server alike, so there is a single audio -> text pipeline."""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from deepspeech_pytorch.audio import AudioSource, to_waveform
from deepspeech_pytorch.checkpoint import CheckpointError, build_model, load_checkpoint
from deepspeech_pytorch.configs import CHUNK_SECONDS, DecoderConfig, FeatureConfig, LanguageModelConfig
from deepspeech_pytorch.decoders import Hypothesis, ModelLanguageModel, WordTiming, build_decoder, move_word_times
from deepspeech_pytorch.features import FeatureExtractor, seconds_per_frame
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import AcousticModel
from deepspeech_pytorch.vad import VadConfig, speech_segments

logger = logging.getLogger(__name__)

QUIET_SEARCH_SECONDS = 3.0  # how far back from a chunk's end to look for a quiet place to cut
ENERGY_FRAME_SECONDS = 0.01


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was requested but CUDA is not available")
    return device


@dataclass
class LoadedModel:
    model: AcousticModel
    alphabet: Alphabet
    features: FeatureConfig
    name: str
    path: Optional[str] = None
    language_model: Optional[LanguageModelConfig] = None  # the LM shipped beside the checkpoint, if any
    lm_beam_size: Optional[int] = None  # the beam its alpha/beta were tuned with, if the settings say

    @property
    def model_lm(self) -> Optional[ModelLanguageModel]:
        return None if self.language_model is None else ModelLanguageModel(self.language_model, self.lm_beam_size)

    @property
    def info(self) -> Dict[str, Any]:
        described = self.model.describe()
        return {"name": self.name, "architecture": described["summary"], "parameters": described["parameters"],
                "sample_rate": self.features.sample_rate, "path": self.path}


PRETRAINED_DIR = os.path.join(os.path.dirname(__file__), "pretrained")
LM_SETTINGS_SUFFIX = ".lm.json"  # model.pt may ship model.lm.json: its KenLM, lexicon, tuned alpha/beta and beam


def default_model_path() -> str:
    """The bundled model inside the package."""
    return os.path.join(PRETRAINED_DIR, "default.pt")


def ships_language_model(checkpoint_path: str) -> bool:
    return os.path.isfile(os.path.splitext(checkpoint_path)[0] + LM_SETTINGS_SUFFIX)


def _inside(folder: str, name: str, settings_path: str) -> str:
    """A file named by LM settings: a plain name in the model's folder, never a path elsewhere."""
    if not isinstance(name, str) or not name or os.path.basename(name) != name or name in (".", ".."):
        raise CheckpointError(f"{settings_path}: {name!r} must be a file name in the model's folder")
    return os.path.join(folder, name)


def check_beam_size(value: Any) -> int:
    """A tuned beam size: a true positive integer (JSON's 2.5 or true would otherwise slip through)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"beam_size must be a positive integer, not {value!r}")
    return value


def read_lm_settings(checkpoint_path: str) -> Tuple[Optional[LanguageModelConfig], Optional[int]]:
    """The language model shipped beside a checkpoint (`<stem>.lm.json`, paths relative to it) and the
    beam size it was tuned with (optional in the file); (None, None) when there is none."""
    if not ships_language_model(checkpoint_path):
        return None, None
    settings_path = os.path.splitext(checkpoint_path)[0] + LM_SETTINGS_SUFFIX
    try:
        with open(settings_path, encoding="utf-8") as handle:
            raw = json.load(handle)
        folder = os.path.dirname(os.path.abspath(settings_path))
        settings = LanguageModelConfig(
            path=_inside(folder, raw["path"], settings_path),
            lexicon_path=_inside(folder, raw["lexicon_path"], settings_path) if raw.get("lexicon_path") else None,
            alpha=float(raw["alpha"]), beta=float(raw["beta"]))
        beam_size = None if raw.get("beam_size") is None else check_beam_size(raw["beam_size"])
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{settings_path}: unreadable language-model settings ({error})") from error
    for file in (settings.path, settings.lexicon_path):
        if file is not None and not os.path.isfile(file):
            raise CheckpointError(f"{settings_path} names {file}, which does not exist")
    return settings, beam_size


def load_model(path: Optional[str] = None, device: Union[str, torch.device] = "cpu") -> LoadedModel:
    """Load a checkpoint in eval mode on `device`: `path` is a checkpoint file, the name of a bundled model
    (`deepspeech_pytorch.available_models()`), or None for the bundled default model."""
    if path is not None and os.path.sep not in path and not path.endswith(".pt") \
            and os.path.isfile(os.path.join(PRETRAINED_DIR, path + ".pt")):
        path = os.path.join(PRETRAINED_DIR, path + ".pt")
    if path is None:
        path = default_model_path()
        if not os.path.isfile(path):
            raise CheckpointError("no bundled default model in this installation; pass model_path=<checkpoint.pt>")
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
    into chunks of at most `chunk_seconds`.
    """

    def __init__(self, loaded: LoadedModel, decoder: Union[DecoderConfig, str] = "greedy", chunk_seconds: float = CHUNK_SECONDS,
                 batch_size: int = 8, device: Union[str, torch.device, None] = None, vad: bool = True,
                 vad_config: VadConfig = VadConfig()):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an integer of at least 1")
        if not math.isfinite(chunk_seconds) or chunk_seconds < 1:
            raise ValueError(f"chunk_seconds={chunk_seconds!r} must be a finite number of at least 1")
        self.loaded = loaded
        self.vad = vad
        self.vad_config = vad_config
        self.device = next(loaded.model.parameters()).device if device is None else resolve_device(device)
        loaded.model.to(self.device)
        self.chunk_seconds = chunk_seconds
        self.batch_size = batch_size
        self.extractor = FeatureExtractor(loaded.features).to(self.device)  # window, filterbank, statistics: once
        frame_seconds = seconds_per_frame(loaded.features) * loaded.model.time_stride
        self.decoder = build_decoder(decoder, loaded.alphabet, frame_seconds, loaded.model_lm)

    @property
    def sample_rate(self) -> int:
        return self.loaded.features.sample_rate

    @torch.inference_mode()
    def log_probs(self, features: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        """features (batch, freq, frames) -> log-probabilities (batch, time, classes) and lengths."""
        model = self.loaded.model
        was_training = model.training
        model.eval()
        try:
            logits, output_lengths = model(features.to(self.device), lengths.to(self.device))
        finally:
            model.train(was_training)
        return torch.log_softmax(logits.float(), dim=-1), output_lengths

    def decode(self, log_probs: Tensor, lengths: Tensor) -> List[Hypothesis]:
        return self.decoder.decode(log_probs.cpu(), lengths.cpu())

    def _transcribe_waveforms(self, waveforms: Sequence[np.ndarray]) -> List[Hypothesis]:
        hypotheses: List[Hypothesis] = []
        for first in range(0, len(waveforms), self.batch_size):
            group = waveforms[first: first + self.batch_size]
            lengths = torch.tensor([len(w) for w in group])
            padded = torch.zeros(len(group), int(lengths.max()))
            for row, samples in enumerate(group):
                padded[row, : len(samples)] = torch.from_numpy(samples)
            features, frame_lengths = self.extractor(padded.to(self.device), lengths.to(self.device))
            log_probs, output_lengths = self.log_probs(features, frame_lengths)
            hypotheses.extend(self.decode(log_probs, output_lengths))
        return hypotheses

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
