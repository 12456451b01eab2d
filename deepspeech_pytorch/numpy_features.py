"""Spectrogram features in numpy: the same numbers as `features.py` (within float32 rounding) without torch.

The ONNX Runtime backend computes its features here, so a deployment with an exported model needs no
PyTorch at all. Every function mirrors its torch twin in `features.py` (centred STFT with zero padding,
periodic window, log(1 + |STFT|) or log-mel, then utterance / global / running / no normalisation) and is
tested against it.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from deepspeech_pytorch.configs import FeatureConfig

EPSILON = 1e-5  # added to the standard deviation, as features.py does
MEL_FLOOR = 1e-6  # added to the mel energies before the log, as features.py does
RUNNING_PRIOR_FRAMES = 100  # features.RUNNING_PRIOR_FRAMES: weight of the global statistics, in frames
NORMALIZATIONS = ("utterance", "global", "running", "none")


def seconds_per_frame(config: FeatureConfig) -> float:
    """Seconds between feature frames (the hop)."""
    return config.hop_length / config.sample_rate


def window(config: FeatureConfig) -> np.ndarray:
    """The periodic analysis window torch builds (`torch.hamming_window(n, periodic=True)` etc.), (n_fft,)."""
    n = config.n_fft
    phase = 2.0 * np.pi * np.arange(n, dtype=np.float64) / n
    if config.window == "hamming":
        values = 0.54 - 0.46 * np.cos(phase)
    elif config.window == "hann":
        values = 0.5 - 0.5 * np.cos(phase)
    elif config.window == "blackman":
        values = 0.42 - 0.5 * np.cos(phase) + 0.08 * np.cos(2.0 * phase)
    elif config.window == "bartlett":
        values = 1.0 - np.abs(2.0 * np.arange(n, dtype=np.float64) / n - 1.0)
    else:
        raise ValueError(f"unknown window {config.window!r}; choose from bartlett, blackman, hamming, hann")
    return values.astype(np.float32)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> np.ndarray:
    """Triangular HTK-scale mel filters, shape (n_mels, n_fft // 2 + 1), as `features.mel_filterbank`."""
    bin_hz = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1, dtype=np.float64)
    nyquist = np.float32(sample_rate / 2.0)  # features.py takes the top edge's mel in float32
    top_mel = float(np.float32(2595.0) * np.log10(np.float32(1.0) + nyquist / np.float32(700.0)))
    edges = 700.0 * (10.0 ** (np.linspace(0.0, top_mel, n_mels + 2, dtype=np.float64) / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def normalization_of(config: FeatureConfig) -> str:
    """The config's normalisation mode (configs from before `normalization` existed say `normalize: bool`)."""
    mode = config.normalization or ("utterance" if config.normalize else "none")
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown features.normalization {mode!r}; choose from {', '.join(NORMALIZATIONS)}")
    return mode


def frame_count(num_samples: np.ndarray, hop_length: int) -> np.ndarray:
    """Frames a centred STFT makes of each length in samples."""
    return np.asarray(num_samples, dtype=np.int64) // hop_length + 1


def _frame_mask(frames: int, frame_lengths: np.ndarray) -> np.ndarray:
    """(batch, 1, frames): True on each utterance's valid frames."""
    return (np.arange(frames)[None, :] < frame_lengths[:, None])[:, None, :]


def log_spectrogram(waveforms: np.ndarray, lengths: np.ndarray, config: FeatureConfig, analysis_window: np.ndarray,
                    filterbank: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Un-normalised log features of a padded batch, as `features.log_spectrogram`.

    waveforms: (batch, samples) float; lengths: (batch,) valid samples. Returns features (batch, freq, frames)
    float32 with padded frames zero, and frame lengths (batch,) int64."""
    n_fft, hop = config.n_fft, config.hop_length
    waveforms = np.asarray(waveforms, dtype=np.float32)
    lengths = np.asarray(lengths, dtype=np.int64)
    masked = np.where(np.arange(waveforms.shape[1])[None, :] < lengths[:, None], waveforms, np.float32(0.0))
    half = n_fft // 2
    padded = np.pad(masked, ((0, 0), (half, half)))
    frames = 1 + (padded.shape[1] - n_fft) // hop
    windows = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=1)[:, ::hop][:, :frames]
    spectrum = np.fft.rfft(windows * analysis_window, axis=-1)  # (batch, frames, n_fft // 2 + 1)
    magnitude = np.abs(spectrum).astype(np.float32)
    if config.kind == "mel":
        if filterbank is None:
            raise ValueError("features.kind=mel needs its filterbank")
        energies = np.matmul(magnitude * magnitude, filterbank.T)  # (batch, frames, n_mels)
        features = np.log(energies + np.float32(MEL_FLOOR))
    else:
        features = np.log1p(magnitude)
    features = np.ascontiguousarray(features.transpose(0, 2, 1), dtype=np.float32)  # (batch, freq, frames)
    frame_lengths = frame_count(lengths, hop)
    features *= _frame_mask(features.shape[2], frame_lengths)
    return features, frame_lengths


def normalize_utterance(features: np.ndarray, frame_lengths: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance over each utterance's valid frames and all bins (unbiased variance)."""
    mask = _frame_mask(features.shape[2], frame_lengths)
    count = np.maximum(frame_lengths * features.shape[1], 1).astype(np.float32)[:, None, None]
    mean = (features * mask).sum(axis=(1, 2), keepdims=True, dtype=np.float32) / count
    centred = (features - mean) * mask
    variance = np.square(centred).sum(axis=(1, 2), keepdims=True, dtype=np.float32) / np.maximum(count - 1, 1)
    return (centred / (np.sqrt(variance) + np.float32(EPSILON))).astype(np.float32)


def normalize_global(features: np.ndarray, frame_lengths: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-bin statistics measured on training data (mean, std: (freq,)); each frame normalised on its own."""
    mask = _frame_mask(features.shape[2], frame_lengths)
    return ((features - mean[None, :, None]) / (std[None, :, None] + np.float32(EPSILON)) * mask).astype(np.float32)


def normalize_running(features: np.ndarray, frame_lengths: np.ndarray, mean: np.ndarray, std: np.ndarray,
                      prior_frames: int = RUNNING_PRIOR_FRAMES) -> np.ndarray:
    """Causal per-bin normalisation: frame t uses frames 0..t, started from the global statistics weighted as
    `prior_frames` frames (see `features.normalize_running`)."""
    mask = _frame_mask(features.shape[2], frame_lengths).astype(np.float32)
    masked = features * mask
    counts = prior_frames + np.cumsum(mask, axis=2, dtype=np.float32)
    sums = prior_frames * mean[None, :, None] + np.cumsum(masked, axis=2, dtype=np.float32)
    squares = prior_frames * (std * std + mean * mean)[None, :, None] + np.cumsum(masked * masked, axis=2,
                                                                                  dtype=np.float32)
    running_mean = sums / counts
    running_var = np.maximum(squares / counts - running_mean * running_mean, 0.0)
    return ((features - running_mean) / (np.sqrt(running_var) + np.float32(EPSILON)) * mask).astype(np.float32)


def config_statistics(config: FeatureConfig) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """The per-bin statistics a config carries (features.mean / features.std) as float32 arrays, or (None, None)."""
    if config.mean is None or config.std is None:
        return None, None
    mean = np.asarray(list(config.mean), dtype=np.float32)
    std = np.asarray(list(config.std), dtype=np.float32)
    if mean.shape != (config.num_features,) or std.shape != (config.num_features,):
        raise ValueError(f"features.mean and features.std must have {config.num_features} values (one per bin), "
                         f"not {mean.size} and {std.size}")
    return mean, std


class FeatureExtractor:
    """Waveforms (batch, samples) -> features (batch, freq, frames) float32, frame lengths (batch,) int64.

    The numpy twin of `features.FeatureExtractor`: window, filterbank and statistics are built once."""

    def __init__(self, config: FeatureConfig):
        if config.kind not in ("linear", "mel"):
            raise ValueError(f"unknown feature kind {config.kind!r}; choose 'linear' or 'mel'")
        self.config = config
        self.mode = normalization_of(config)
        self.window = window(config)
        self.filterbank = mel_filterbank(config.n_mels, config.n_fft, config.sample_rate) if config.kind == "mel" else None
        self.mean, self.std = config_statistics(config)
        if self.mode in ("global", "running") and self.mean is None:
            raise ValueError(f"features.normalization={self.mode} needs feature statistics (mean and std)")

    def __call__(self, waveforms: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if np.ndim(waveforms) != 2:
            raise ValueError(f"expected waveforms of shape (batch, samples), got {np.shape(waveforms)}")
        features, frame_lengths = log_spectrogram(waveforms, lengths, self.config, self.window, self.filterbank)
        if self.mode == "utterance":
            features = normalize_utterance(features, frame_lengths)
        elif self.mode == "global":
            features = normalize_global(features, frame_lengths, self.mean, self.std)
        elif self.mode == "running":
            features = normalize_running(features, frame_lengths, self.mean, self.std)
        return features, frame_lengths
