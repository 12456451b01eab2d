"""Voice-activity detection: where in a recording people speak, so silence never reaches the model.

A DeepSpeech2 model normalises its features over the whole input and has heard little silence in
training: seconds of silence or room noise around a sentence garble it, and near-silence comes out as
"ssss". Transcribing only the speech segments (each with a little context on both sides) avoids both.
The detector is Silero VAD (`silero-vad` on PyPI, MIT licence; its package ships the weights): a small
recurrent network scoring 32 ms windows at 16 kHz (https://github.com/snakers4/silero-vad).

Its ONNX files are run by ONNX Runtime, without importing torch or the silero_vad package (which imports
torch): the package's data folder is found on disk, or a copy in `deepspeech_pytorch/pretrained/`. The
"sequence" model scores a whole block of windows in one call; the streaming model (older packages) one
window per call. Without onnxruntime the package's TorchScript model scores the windows instead. The
probabilities become segments by the same rules as silero's `get_speech_timestamps` (`segments_from_probabilities`).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from deepspeech_pytorch.audio import resample

logger = logging.getLogger(__name__)

VAD_SAMPLE_RATE = 16000  # Hz, the rate Silero VAD scores (8 kHz is its only other rate)
QUIET_PEAK = 10 ** (-66 / 20)  # recordings peaking above -66 dBFS are level-normalised before detection
WINDOW = 512  # samples (32 ms at 16 kHz) per speech probability
CONTEXT = 64  # samples of the previous window the model hears before each window
STATE_SIZE = 128  # the model's recurrent state per layer
BLOCK_WINDOWS = 2048  # windows (65 s) scored per call of the sequence model: bounded memory for long files
NEGATIVE_MARGIN = 0.15  # in speech, a window counts as silence below threshold - this (silero's neg_threshold)
CUT_PAUSE_SECONDS = 0.098  # pauses longer than this are where over-long speech is cut (silero's default)
SEQUENCE_MODEL = "silero_vad_16k_sequence.onnx"  # a block of windows per call, state in and out
STREAMING_MODEL = "silero_vad.onnx"  # one window per call
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


@dataclass(frozen=True)
class VadConfig:
    """How speech is told from silence and how segments are cut.

    threshold: speech probability above which a 32 ms window counts as speech.
    min_speech_seconds: shorter bursts are dropped (clicks, breaths).
    min_silence_seconds: pauses at least this long end a segment; shorter ones stay inside it.
    pad_seconds: context kept on each side of a segment (from the recording, never invented).
    """

    threshold: float = 0.5
    min_speech_seconds: float = 0.1
    min_silence_seconds: float = 0.4
    pad_seconds: float = 0.2


_lock = threading.Lock()
_scorer: Optional[Callable[[np.ndarray], np.ndarray]] = None  # audio at 16 kHz -> a probability per window


def model_files() -> List[str]:
    """Silero VAD's ONNX files that exist, preferred first: a copy in the package's pretrained folder, then
    the silero_vad package's data folder (located without importing the package, which imports torch)."""
    folders = [PRETRAINED_DIR]
    spec = importlib.util.find_spec("silero_vad")
    if spec is not None and spec.submodule_search_locations:
        folders.extend(os.path.join(location, "data") for location in spec.submodule_search_locations)
    return [os.path.join(folder, name) for name in (SEQUENCE_MODEL, STREAMING_MODEL) for folder in folders
            if os.path.isfile(os.path.join(folder, name))]


def _windows(audio: np.ndarray) -> np.ndarray:
    """(windows, CONTEXT + WINDOW): each 32 ms window after the last CONTEXT samples of the one before (zeros
    before the first), the last window zero-padded, as the streaming model sees them."""
    count = (len(audio) + WINDOW - 1) // WINDOW
    frames = np.zeros((count, WINDOW), dtype=np.float32)
    frames.reshape(-1)[: len(audio)] = audio
    context = np.zeros((count, CONTEXT), dtype=np.float32)
    context[1:] = frames[:-1, -CONTEXT:]
    return np.concatenate([context, frames], axis=1)


def _onnx_scorer(path: str) -> Callable[[np.ndarray], np.ndarray]:
    from deepspeech_pytorch.onnx_backend import import_onnxruntime

    onnxruntime = import_onnxruntime()  # telemetry off: no file left in TMPDIR
    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1  # a small model: more threads only add hand-over time
    session = onnxruntime.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    inputs = {entry.name for entry in session.get_inputs()}

    def sequence(audio: np.ndarray) -> np.ndarray:
        windows = _windows(audio)
        hidden = np.zeros((1, 1, STATE_SIZE), dtype=np.float32)
        cell = np.zeros_like(hidden)
        scores = []
        for first in range(0, len(windows), BLOCK_WINDOWS):
            probabilities, hidden, cell = session.run(
                ["speech_probs", "hn", "cn"], {"input": windows[first: first + BLOCK_WINDOWS], "h": hidden, "c": cell})
            scores.append(np.asarray(probabilities).reshape(-1))
        return np.concatenate(scores) if scores else np.zeros(0, dtype=np.float32)

    def streaming(audio: np.ndarray) -> np.ndarray:
        state = np.zeros((2, 1, STATE_SIZE), dtype=np.float32)
        rate = np.array(VAD_SAMPLE_RATE, dtype=np.int64)
        scores = []
        for window in _windows(audio):
            output, state = session.run(None, {"input": window[None, :], "state": state, "sr": rate})
            scores.append(float(np.asarray(output).reshape(-1)[0]))
        return np.asarray(scores, dtype=np.float32)

    return sequence if {"h", "c"} <= inputs else streaming


def _torch_scorer() -> Callable[[np.ndarray], np.ndarray]:
    """The silero_vad package's TorchScript model, where onnxruntime is not installed. Its package sets torch
    to one thread on import; the thread count is put back so the acoustic model keeps its threads."""
    import torch

    threads = torch.get_num_threads()
    try:
        from silero_vad import load_silero_vad
    except ImportError:
        raise RuntimeError("voice-activity detection needs Silero VAD: pip install onnxruntime and "
                           "pip install --no-deps silero-vad (or transcribe with vad=false)") from None
    finally:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():  # its loader's own deprecation notices (torch.jit.load, resources)
        warnings.simplefilter("ignore", DeprecationWarning)
        model = load_silero_vad()

    def score(audio: np.ndarray) -> np.ndarray:
        with _lock, torch.inference_mode():  # the model keeps state between windows: one recording at a time
            model.reset_states()
            windows = torch.from_numpy(_windows(audio)[:, CONTEXT:].copy())
            return np.asarray([model(window, VAD_SAMPLE_RATE).item() for window in windows], dtype=np.float32)

    return score


def _load_scorer() -> Callable[[np.ndarray], np.ndarray]:
    """The speech-probability function, built once per process: ONNX Runtime where it is installed."""
    global _scorer
    with _lock:
        if _scorer is None:
            files = model_files()
            if files and importlib.util.find_spec("onnxruntime") is not None:
                _scorer = _onnx_scorer(files[0])
            elif importlib.util.find_spec("torch") is not None:
                _scorer = _torch_scorer()
            else:
                raise RuntimeError("voice-activity detection needs Silero VAD's ONNX model and onnxruntime: "
                                   "pip install onnxruntime and pip install --no-deps silero-vad (or "
                                   "transcribe with vad=false)")
    return _scorer


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero VAD's speech probability for each 32 ms window of mono audio at 16 kHz, shape (windows,)."""
    return _load_scorer()(np.ascontiguousarray(audio, dtype=np.float32))


def segments_from_probabilities(probabilities: Sequence[float], num_samples: int, config: VadConfig,
                                max_seconds: float = float("inf")) -> List[Tuple[int, int]]:
    """Speech segments (start, end) in samples at 16 kHz from per-window probabilities, by the rules of
    silero's `get_speech_timestamps`: speech starts at a window scoring at least `threshold` and ends after
    `min_silence_seconds` below threshold - 0.15; bursts up to `min_speech_seconds` are dropped; speech
    longer than `max_seconds` (padding included) is cut at its longest pause over 98 ms, else where it
    reaches the limit; then each segment is padded by `pad_seconds`, or by half the gap to its neighbour."""
    threshold = config.threshold
    negative = max(threshold - NEGATIVE_MARGIN, 0.01)
    pad = VAD_SAMPLE_RATE * int(1000 * config.pad_seconds) / 1000
    min_speech = VAD_SAMPLE_RATE * int(1000 * config.min_speech_seconds) / 1000
    min_silence = VAD_SAMPLE_RATE * int(1000 * config.min_silence_seconds) / 1000
    max_speech = VAD_SAMPLE_RATE * max_seconds - WINDOW - 2 * pad
    cut_pause = VAD_SAMPLE_RATE * CUT_PAUSE_SECONDS
    found: List[List[float]] = []
    speaking, start, quiet_from = False, 0, 0  # quiet_from: where a pause inside speech began (0: none)
    pauses: List[Tuple[int, int]] = []  # (start, length) of the pauses inside the current speech
    for index, probability in enumerate(probabilities):
        sample = WINDOW * index
        if probability >= threshold and quiet_from:
            if sample - quiet_from > cut_pause:
                pauses.append((quiet_from, sample - quiet_from))
            quiet_from = 0
        if probability >= threshold and not speaking:
            speaking, start = True, sample
            continue
        if speaking and sample - start > max_speech:
            if pauses:  # cut at the longest pause; what follows it is speech again
                end, length = max(pauses, key=lambda pause: pause[1])
                found.append([start, end])
                if length < sample:
                    start = end + length
                else:
                    speaking = False
            else:  # no pause: cut here
                found.append([start, sample])
                speaking = False
            quiet_from, pauses = 0, []
            if not speaking:
                continue
        if probability < negative and speaking:
            if not quiet_from:
                quiet_from = sample
            if sample - quiet_from < min_silence:
                continue
            if quiet_from - start > min_speech:
                found.append([start, quiet_from])
            speaking, quiet_from, pauses = False, 0, []
    if speaking and num_samples - start > min_speech:
        found.append([start, num_samples])
    for index, segment in enumerate(found):
        if index == 0:
            segment[0] = int(max(0, segment[0] - pad))
        if index + 1 < len(found):
            following = found[index + 1]
            gap = following[0] - segment[1]
            if gap < 2 * pad:
                segment[1] += int(gap // 2)
                following[0] = int(max(0, following[0] - gap // 2))
            else:
                segment[1] = int(min(num_samples, segment[1] + pad))
                following[0] = int(max(0, following[0] - pad))
        else:
            segment[1] = int(min(num_samples, segment[1] + pad))
    return [(int(a), int(b)) for a, b in found]


def speech_segments(samples: np.ndarray, sample_rate: int, max_seconds: Optional[float] = None,
                    config: VadConfig = VadConfig()) -> List[Tuple[int, int]]:
    """Speech segments of a mono recording as (start, end) sample indices at `sample_rate`, in order and
    not overlapping, each padded by `config.pad_seconds` of context and at most about `max_seconds`
    long (longer speech is split at its longest inner pause, else cut). Silence or near-silence: [].

    samples: shape (samples,), float in [-1, 1].
    """
    if samples.ndim != 1:
        raise ValueError(f"expected mono samples of shape (samples,), got {samples.shape}")
    if len(samples) == 0:
        return []
    audio = samples if sample_rate == VAD_SAMPLE_RATE else resample(samples, sample_rate, VAD_SAMPLE_RATE)
    peak = float(np.max(np.abs(audio)))
    if peak >= QUIET_PEAK:  # quiet recordings (speech peaking at -50 dBFS) are raised to one level for the
        audio = audio * (0.5 / peak)  # detector; near-silence (a few LSB) stays as it is and stays silence
    longest = float("inf") if max_seconds is None else max(1.0, max_seconds - 2 * config.pad_seconds)
    stamps = segments_from_probabilities(speech_probabilities(audio), len(audio), config, longest)
    scale = sample_rate / VAD_SAMPLE_RATE
    segments = []
    for stamp_start, stamp_end in stamps:
        start = max(0, int(round(stamp_start * scale)))
        end = min(len(samples), int(round(stamp_end * scale)))
        if segments and start < segments[-1][1]:
            start = segments[-1][1]
        if end > start:
            segments.append((start, end))
    return segments
