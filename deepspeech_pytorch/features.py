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


def spectrogram(waveforms: Tensor, lengths: Tensor, config: FeatureConfig) -> Tuple[Tensor, Tensor]:
    """Features for a padded batch of waveforms.

    waveforms: (batch, samples) float; lengths: (batch,) valid samples per row.
    Returns features (batch, freq, frames) with padded frames set to zero, and frame lengths (batch,).
    """
    if waveforms.dim() != 2:
        raise ValueError(f"expected waveforms of shape (batch, samples), got {tuple(waveforms.shape)}")
    if config.window not in _WINDOWS:
        raise ValueError(f"unknown window {config.window!r}; choose from {sorted(_WINDOWS)}")
    n_fft, hop = config.n_fft, config.hop_length
    waveforms = waveforms.float()
    mask_samples = torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < lengths[:, None]
    waveforms = waveforms * mask_samples
    window = _WINDOWS[config.window](n_fft, periodic=True, device=waveforms.device)
    stft = torch.stft(waveforms, n_fft, hop_length=hop, win_length=n_fft, window=window,
                      center=True, pad_mode="constant", return_complex=True)
    magnitude = stft.abs()  # (batch, n_fft // 2 + 1, frames)
    if config.kind == "mel":
        filters = mel_filterbank(config.n_mels, n_fft, config.sample_rate).to(magnitude.device)
        features = torch.log(torch.matmul(filters, magnitude.pow(2)) + 1e-6)
    elif config.kind == "linear":
        features = torch.log1p(magnitude)
    else:
        raise ValueError(f"unknown feature kind {config.kind!r}; choose 'linear' or 'mel'")
    frame_lengths = frame_count(lengths.to(features.device), hop)
    frame_mask = (torch.arange(features.shape[2], device=features.device)[None, :] < frame_lengths[:, None])
    frame_mask = frame_mask[:, None, :]  # (batch, 1, frames)
    if config.normalize:
        count = (frame_lengths * features.shape[1]).clamp(min=1).to(features.dtype)[:, None, None]
        mean = (features * frame_mask).sum(dim=(1, 2), keepdim=True) / count
        centred = (features - mean) * frame_mask
        variance = centred.pow(2).sum(dim=(1, 2), keepdim=True) / (count - 1).clamp(min=1)
        features = centred / (variance.sqrt() + 1e-5)
    return features * frame_mask, frame_lengths


class Spectrogram(nn.Module):
    """nn.Module wrapper around `spectrogram`, holding its config."""

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config

    def forward(self, waveforms: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        return spectrogram(waveforms, lengths, self.config)


def utterance_features(samples: Tensor, config: FeatureConfig) -> Tensor:
    """Features for one utterance, shape (freq, frames)."""
    features, _ = spectrogram(samples[None, :], torch.tensor([samples.shape[0]]), config)
    return features[0]


def seconds_per_frame(config: FeatureConfig) -> float:
    return config.hop_length / config.sample_rate

