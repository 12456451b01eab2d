"""Voice-activity detection: where in a recording people speak, so silence never reaches the model.

A DeepSpeech2 model normalises its features over the whole input and has heard little silence in
training: seconds of silence or room noise around a sentence garble it, and near-silence comes out as
"ssss". Transcribing only the speech segments (each with a little context on both sides) avoids both.
The detector is Silero VAD (`silero-vad` on PyPI, MIT licence; its package ships the weights): a small
recurrent network scoring 32 ms windows at 16 kHz (https://github.com/snakers4/silero-vad).
"""

from __future__ import annotations

import logging
import threading
import warnings
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from deepspeech_pytorch.audio import resample

logger = logging.getLogger(__name__)

VAD_SAMPLE_RATE = 16000  # Hz, the rate Silero VAD scores (8 kHz is its only other rate)
QUIET_PEAK = 10 ** (-66 / 20)  # recordings peaking above -66 dBFS are level-normalised before detection


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
_silero = None  # (model, get_speech_timestamps), loaded once per process


def _load_silero():
    """Silero VAD's model and segmenter. Its package sets torch to one thread on import; the thread count
    is put back so the acoustic model keeps its threads."""
    global _silero
    if _silero is None:
        threads = torch.get_num_threads()
        try:
            from silero_vad import get_speech_timestamps, load_silero_vad
        except ImportError:
            raise RuntimeError("voice-activity detection needs the silero-vad package: pip install silero-vad "
                               "(or transcribe with vad=false)") from None
        finally:
            torch.set_num_threads(threads)
        with warnings.catch_warnings():  # its loader's own deprecation notices (torch.jit.load, resources)
            warnings.simplefilter("ignore", DeprecationWarning)
            _silero = (load_silero_vad(), get_speech_timestamps)
    return _silero


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
    pad_ms = int(1000 * config.pad_seconds)
    longest = float("inf") if max_seconds is None else max(1.0, max_seconds - 2 * config.pad_seconds)
    with _lock, torch.inference_mode():  # the model keeps state between windows: one recording at a time
        model, get_speech_timestamps = _load_silero()
        stamps = get_speech_timestamps(
            torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), model, threshold=config.threshold,
            sampling_rate=VAD_SAMPLE_RATE, min_speech_duration_ms=int(1000 * config.min_speech_seconds),
            max_speech_duration_s=longest, min_silence_duration_ms=int(1000 * config.min_silence_seconds),
            speech_pad_ms=pad_ms)
    scale = sample_rate / VAD_SAMPLE_RATE
    segments = []
    for stamp in stamps:
        start = max(0, int(round(stamp["start"] * scale)))
        end = min(len(samples), int(round(stamp["end"] * scale)))
        if segments and start < segments[-1][1]:
            start = segments[-1][1]
        if end > start:
            segments.append((start, end))
    return segments
