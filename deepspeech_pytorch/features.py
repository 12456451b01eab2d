"""Spectrogram features computed with torch.stft, batched, identical on CPU and GPU.

Padding is constant (zeros) rather than reflect, so an utterance's valid frames come out the same
whether it is computed alone or padded inside a batch.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor, nn

from deepspeech_pytorch.configs import FeatureConfig

_WINDOWS = {
    "hamming": torch.hamming_window,
    "hann": torch.hann_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
}


def frame_count(num_samples: Tensor, hop_length: int) -> Tensor:
    """Frames produced by a centred STFT for each length in samples."""
    return torch.div(num_samples, hop_length, rounding_mode="floor") + 1


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int) -> Tensor:
    """Triangular HTK-scale mel filters, shape (n_mels, n_fft // 2 + 1)."""

    def hz_to_mel(hz: Tensor) -> Tensor:
        return 2595.0 * torch.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: Tensor) -> Tensor:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    bin_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(0.0, float(hz_to_mel(torch.tensor(sample_rate / 2.0))), n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - lower) / (centre - lower)
    falling = (upper - bin_hz) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


NORMALIZATIONS = ("utterance", "global", "running", "none")
RUNNING_PRIOR_FRAMES = 100  # running normalisation starts from the global statistics, weighted as this many frames


def normalization_of(config: FeatureConfig) -> str:
    """The config's normalisation mode; configs from before `normalization` existed say `normalize: bool`."""
    mode = config.normalization or ("utterance" if config.normalize else "none")
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown features.normalization {mode!r}; choose from {', '.join(NORMALIZATIONS)}")
    return mode


def _check(waveforms: Tensor, config: FeatureConfig) -> None:
    if waveforms.dim() != 2:
        raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
    if config.window not in _WINDOWS:
        raise ValueError(f"unknown window {config.window!r}; choose from {sorted(_WINDOWS)}")
    if config.kind not in ("linear", "mel"):
        raise ValueError(f"unknown feature kind {config.kind!r}; choose 'linear' or 'mel'")


def window_for(config: FeatureConfig, device=None) -> Tensor:
    """The analysis window, shape (n_fft,)."""
    return _WINDOWS[config.window](config.n_fft, periodic=True, device=device)


def log_spectrogram(waveforms: Tensor, lengths: Tensor, config: FeatureConfig, window: Tensor,
                    filterbank: Tensor | None = None) -> Tuple[Tensor, Tensor]:
    """Un-normalised log features of a padded batch: (batch, freq, frames) with padded frames zero, and
    frame lengths (batch,). `filterbank` (n_mels, n_fft // 2 + 1) is needed for kind=mel."""
    n_fft, hop = config.n_fft, config.hop_length
    waveforms = waveforms.float()
    mask_samples = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < lengths[:, None]
    waveforms = waveforms * mask_samples
    stft = torch.stft(waveforms, n_fft, hop_length=hop, win_length=n_fft, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    magnitude = stft.abs()  # (batch, n_fft // 2 + 1, frames)
    if config.kind == "mel":
        features = torch.log(torch.matmul(filterbank, magnitude.pow(2)) + 1e-6)
    else:
        features = torch.log1p(magnitude)
    frame_lengths = frame_count(lengths.to(features.device), hop)
    return features * _frame_mask(features, frame_lengths), frame_lengths


def _frame_mask(features: Tensor, frame_lengths: Tensor) -> Tensor:
    """(batch, 1, frames): True on each utterance's valid frames."""
    return (torch.arange(features.shape[2], device=features.device)[None, :] < frame_lengths[:, None])[:, None, :]


def normalize_utterance(features: Tensor, frame_lengths: Tensor) -> Tensor:
    """Zero mean, unit variance over each utterance's valid frames and all bins (as the original port)."""
    mask = _frame_mask(features, frame_lengths)
    count = (frame_lengths * features.shape[1]).clamp(min=1).to(features.dtype)[:, None, None]
    mean = (features * mask).sum(dim=(1, 2), keepdim=True) / count
    centred = (features - mean) * mask
    variance = centred.pow(2).sum(dim=(1, 2), keepdim=True) / (count - 1).clamp(min=1)
    return centred / (variance.sqrt() + 1e-5)


def normalize_global(features: Tensor, frame_lengths: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Per-bin statistics measured once on training data: mean and std of shape (freq,). Each frame is
    normalised on its own, so a chunk of a stream gets exactly the features of the whole recording."""
    return (features - mean[None, :, None]) / (std[None, :, None] + 1e-5) * _frame_mask(features, frame_lengths)


def normalize_running(features: Tensor, frame_lengths: Tensor, mean: Tensor, std: Tensor,
                      prior_frames: int = RUNNING_PRIOR_FRAMES) -> Tensor:
    """Causal per-bin normalisation: frame t uses the mean and variance of frames 0..t, started from the
    global statistics (mean, std of shape (freq,)) weighted as `prior_frames` frames, so the first frames
    are sensible and the statistics adapt to the channel as the recording goes on (as online CMVN in Kaldi)."""
    mask = _frame_mask(features, frame_lengths).to(features.dtype)
    masked = features * mask
    counts = prior_frames + torch.cumsum(mask, dim=2)  # (batch, 1, frames)
    sums = prior_frames * mean[None, :, None] + torch.cumsum(masked, dim=2)
    squares = prior_frames * (std.pow(2) + mean.pow(2))[None, :, None] + torch.cumsum(masked.pow(2), dim=2)
    running_mean = sums / counts
    running_var = (squares / counts - running_mean.pow(2)).clamp(min=0)
    return (features - running_mean) / (running_var.sqrt() + 1e-5) * mask


def config_statistics(config: FeatureConfig) -> Tuple[Tensor | None, Tensor | None]:
    """The statistics a config carries (features.mean / features.std, per bin) as tensors, or (None, None)."""
    if config.mean is None or config.std is None:
        return None, None
    mean, std = torch.tensor(list(config.mean), dtype=torch.float32), torch.tensor(list(config.std), dtype=torch.float32)
    if mean.shape != (config.num_features,) or std.shape != (config.num_features,):
        raise ValueError(f"features.mean and features.std must have {config.num_features} values (one per bin), "
                         f"not {mean.numel()} and {std.numel()}")
    return mean, std


def normalize(features: Tensor, frame_lengths: Tensor, mode: str, mean: Tensor | None = None,
              std: Tensor | None = None) -> Tensor:
    """Apply normalisation `mode` (one of NORMALIZATIONS); global and running need the statistics."""
    if mode == "utterance":
        return normalize_utterance(features, frame_lengths)
    if mode == "none":
        return features
    if mean is None or std is None:
        raise ValueError(f"features.normalization={mode} needs the feature statistics stored with the model")
    stats = mean.to(features), std.to(features)
    if mode == "global":
        return normalize_global(features, frame_lengths, *stats)
    return normalize_running(features, frame_lengths, *stats)


def spectrogram(waveforms: Tensor, lengths: Tensor, config: FeatureConfig, mean: Tensor | None = None,
                std: Tensor | None = None) -> Tuple[Tensor, Tensor]:
    """Features for a padded batch of waveforms (the functional form of `FeatureExtractor`).

    waveforms: (batch, samples) float; lengths: (batch,) valid samples per row; mean, std: (freq,) feature
    statistics for global or running normalisation (default: the config's own). Returns features (batch, freq, frames) with padded
    frames set to zero, and frame lengths (batch,). Raises ValueError for unknown settings.
    """
    _check(waveforms, config)
    filterbank = (mel_filterbank(config.n_mels, config.n_fft, config.sample_rate).to(waveforms.device)
                  if config.kind == "mel" else None)
    features, frame_lengths = log_spectrogram(waveforms, lengths, config, window_for(config, waveforms.device),
                                              filterbank)
    if mean is None or std is None:
        mean, std = config_statistics(config)
    return normalize(features, frame_lengths, normalization_of(config), mean, std), frame_lengths


class FeatureExtractor(nn.Module):
    """Waveforms (batch, samples) -> features (batch, freq, frames), frame lengths (batch,).

    Holds its window, mel filterbank and feature statistics (mean, std of shape (freq,): used by global and
    running normalisation; default: the config's own) as buffers, so nothing is rebuilt per call and they move with `.to(device)`.
    """

    def __init__(self, config: FeatureConfig, mean: Tensor | None = None, std: Tensor | None = None):
        super().__init__()
        self.config = config
        self.mode = normalization_of(config)
        if config.window not in _WINDOWS:
            raise ValueError(f"unknown window {config.window!r}; choose from {sorted(_WINDOWS)}")
        if config.kind not in ("linear", "mel"):
            raise ValueError(f"unknown feature kind {config.kind!r}; choose 'linear' or 'mel'")
        self.register_buffer("window", window_for(config), persistent=False)
        filterbank = mel_filterbank(config.n_mels, config.n_fft, config.sample_rate) if config.kind == "mel" else None
        self.register_buffer("filterbank", filterbank, persistent=False)
        bins = config.num_features
        if mean is None or std is None:
            mean, std = config_statistics(config)
        self.register_buffer("mean", torch.zeros(bins) if mean is None else mean.float().clone())
        self.register_buffer("std", torch.ones(bins) if std is None else std.float().clone())
        self.has_statistics = mean is not None and std is not None
        if self.mode in ("global", "running") and not self.has_statistics:
            raise ValueError(f"features.normalization={self.mode} needs feature statistics (mean and std)")

    def forward(self, waveforms: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        _check(waveforms, self.config)
        features, frame_lengths = log_spectrogram(waveforms, lengths, self.config, self.window, self.filterbank)
        return normalize(features, frame_lengths, self.mode, self.mean, self.std), frame_lengths


Spectrogram = FeatureExtractor  # the name of its earlier, config-only form


def measure_statistics(waveforms, config: FeatureConfig) -> Tuple[Tensor, Tensor]:
    """Per-bin mean and std, each of shape (freq,), of the un-normalised features of `waveforms` (an
    iterable of 1-D float tensors at the config's rate), for global and running normalisation."""
    window = window_for(config)
    filterbank = mel_filterbank(config.n_mels, config.n_fft, config.sample_rate) if config.kind == "mel" else None
    total = torch.zeros(config.num_features, dtype=torch.float64)
    squares = torch.zeros_like(total)
    frames = 0
    for samples in waveforms:
        features, lengths = log_spectrogram(samples[None, :].float(), torch.tensor([samples.shape[0]]), config,
                                            window, filterbank)
        valid = features[0, :, : int(lengths[0])].double()
        total += valid.sum(dim=1)
        squares += valid.pow(2).sum(dim=1)
        frames += valid.shape[1]
    if frames == 0:
        raise ValueError("no audio to measure feature statistics on")
    mean = total / frames
    std = (squares / frames - mean.pow(2)).clamp(min=0).sqrt()
    return mean.float(), std.float()


def utterance_features(samples: Tensor, config: FeatureConfig) -> Tensor:
    """Features for one utterance, shape (freq, frames)."""
    features, _ = spectrogram(samples[None, :], torch.tensor([samples.shape[0]]), config)
    return features[0]


def seconds_per_frame(config: FeatureConfig) -> float:
    return config.hop_length / config.sample_rate

