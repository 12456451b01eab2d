"""Audio decoding: any file libsndfile reads -> mono float32 in [-1, 1] at the model's rate.

soundfile (libsndfile) decodes WAV, FLAC, OGG/Vorbis and, with libsndfile >= 1.1, MP3; soxr resamples.
torchaudio is deliberately not used: no build of it exists for the CPU torch we target.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000  # Hz, the rate every model in this project is trained at

AudioSource = Union[str, os.PathLike, bytes, BinaryIO]
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")  # what folder listings pick up


class AudioError(ValueError):
    """Audio that cannot be used: missing, undecodable, empty or containing NaN/inf samples."""


def _describe(source: AudioSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return "<uploaded audio>"


def load_audio(source: AudioSource, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode `source` (a path, raw bytes or a binary file object) to mono float32 at `sample_rate`.

    Returns shape (samples,). Stereo is averaged to mono, other rates are resampled; empty audio,
    undecodable data and non-finite samples raise AudioError naming the source.
    """
    name = _describe(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(source):
        raise AudioError(f"{name}: audio file not found")
    if isinstance(source, bytes):
        if not source:
            raise AudioError(f"{name}: empty audio data")
        source = io.BytesIO(source)
    try:
        samples, file_rate = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, EOFError) as error:
        raise AudioError(f"{name}: cannot decode audio ({error})") from None
    if samples.shape[0] == 0:
        raise AudioError(f"{name}: audio has zero length")
    if not np.all(np.isfinite(samples)):
        raise AudioError(f"{name}: audio contains NaN or infinite samples")
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return resample(mono, file_rate, sample_rate)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr's high-quality filter."""
    if from_rate == to_rate:
        return np.ascontiguousarray(samples, dtype=np.float32)
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def audio_duration(path: Union[str, os.PathLike]) -> float:
    """Duration in seconds from the file header, without decoding the samples."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as error:
        raise AudioError(f"{path}: cannot read audio header ({error})") from None
    if info.samplerate <= 0:
        raise AudioError(f"{path}: invalid sample rate {info.samplerate}")
    return info.frames / info.samplerate


def write_audio(path: Union[str, os.PathLike], samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples; WAV and FLAC as 16-bit PCM, other formats by their default."""
    subtype = "PCM_16" if str(path).lower().endswith((".wav", ".flac")) else None
    sf.write(str(path), np.clip(samples, -1.0, 1.0), sample_rate, subtype=subtype)


def audio_files_in(folder: Union[str, os.PathLike]) -> list:
    """Audio files directly inside `folder`, sorted by name."""
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.lower().endswith(AUDIO_EXTENSIONS) and os.path.isfile(os.path.join(folder, name))]
