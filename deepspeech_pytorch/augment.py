"""Data augmentation: SpecAugment on features; noise, speed and gain on waveforms.

Pure functions do the math; `WaveformAugmenter` / `FeatureAugmenter` hold the config and run in the
data workers with a generator seeded per (seed, epoch, utterance), so augmentation is reproducible.
Disabled augmentation returns its input untouched (the same object).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import List, Sequence

import numpy as np
from torch import Tensor

from deepspeech_pytorch.audio import AUDIO_EXTENSIONS, SAMPLE_RATE, AudioError, load_audio, resample, write_audio
from deepspeech_pytorch.configs import AugmentConfig, NoiseAugmentConfig, PerturbConfig, SpecAugmentConfig

logger = logging.getLogger(__name__)

NOISE_CACHE_CLIPS = 64  # decoded noise clips kept per worker


def spec_augment(features: Tensor, rng: np.random.Generator, freq_masks: int, max_freq_width: int,
                 time_masks: int, max_time_width: int, max_time_fraction: float = 1.0) -> Tensor:
    """Zero random frequency bands and time spans of (freq, frames) features (normalised, so zero is the mean)."""
    features = features.clone()
    bins, frames = features.shape
    for _ in range(freq_masks):
        width = int(rng.integers(0, min(max_freq_width, bins) + 1))
        start = int(rng.integers(0, bins - width + 1))
        features[start:start + width, :] = 0.0
    time_limit = min(max_time_width, int(max_time_fraction * frames))
    for _ in range(time_masks):
        width = int(rng.integers(0, max(time_limit, 0) + 1))
        start = int(rng.integers(0, frames - width + 1))
        features[:, start:start + width] = 0.0
    return features


def power(samples: np.ndarray) -> float:
    return float(np.mean(np.square(samples, dtype=np.float64)))


def add_noise(signal: np.ndarray, noise: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Mix `noise` (looped or cut at a random offset to the signal's length) at `snr_db` below the signal."""
    if len(noise) == 0:
        raise ValueError("noise clip is empty")
    repeats = int(np.ceil((len(signal) + len(noise)) / len(noise)))
    looped = np.tile(noise, repeats)
    offset = int(rng.integers(0, len(noise)))
    segment = looped[offset: offset + len(signal)]
    signal_power, noise_power = power(signal), power(segment)
    if noise_power == 0.0 or signal_power == 0.0:
        return signal
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (signal + scale * segment).astype(np.float32)


def change_speed(signal: np.ndarray, factor: float, sample_rate: int) -> np.ndarray:
    """Play `factor` times faster (shorter and higher), by resampling."""
    if factor == 1.0:
        return signal
    return resample(signal, int(round(sample_rate * factor)), sample_rate)


def change_gain(signal: np.ndarray, gain_db: float) -> np.ndarray:
    return (signal * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def noise_files(config: NoiseAugmentConfig) -> List[str]:
    """Noise clip paths from the configured manifest and/or folder."""
    paths: List[str] = []
    if config.manifest:
        from deepspeech_pytorch.datasets import read_manifest

        paths += [entry.audio_path for entry in read_manifest(config.manifest)]
    if config.directory:
        if not os.path.isdir(config.directory):
            raise FileNotFoundError(f"noise directory not found: {config.directory}")
        for root, _, names in sorted(os.walk(config.directory)):
            paths += [os.path.join(root, n) for n in sorted(names) if n.lower().endswith(AUDIO_EXTENSIONS)]
    if not paths:
        raise ValueError("noise augmentation is enabled but no noise files were found (set augment.noise.manifest or .directory)")
    return paths


class WaveformAugmenter:
    """Speed, gain and noise on a waveform, in that order; each switchable."""

    def __init__(self, perturb: PerturbConfig, noise: NoiseAugmentConfig, sample_rate: int):
        self.perturb, self.noise, self.sample_rate = perturb, noise, sample_rate
        self.noise_paths: Sequence[str] = noise_files(noise) if noise.enabled else ()
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()

    @property
    def active(self) -> bool:
        return self.perturb.speed_enabled or self.perturb.gain_enabled or self.noise.enabled

    def _noise_clip(self, path: str) -> np.ndarray:
        if path not in self._cache:
            self._cache[path] = load_audio(path, self.sample_rate)
            if len(self._cache) > NOISE_CACHE_CLIPS:
                self._cache.popitem(last=False)
        return self._cache[path]

    def __call__(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.perturb.speed_enabled:
            samples = change_speed(samples, float(rng.uniform(self.perturb.min_speed, self.perturb.max_speed)), self.sample_rate)
        if self.perturb.gain_enabled:
            samples = change_gain(samples, float(rng.uniform(self.perturb.min_gain_db, self.perturb.max_gain_db)))
        if self.noise.enabled and rng.random() < self.noise.probability:
            path = self.noise_paths[int(rng.integers(0, len(self.noise_paths)))]
            try:
                clip = self._noise_clip(path)
            except AudioError as error:
                raise AudioError(f"noise clip unusable: {error}") from None
            samples = add_noise(samples, clip, float(rng.uniform(self.noise.min_snr_db, self.noise.max_snr_db)), rng)
        return samples


class FeatureAugmenter:
    """SpecAugment on (freq, frames) features."""

    def __init__(self, config: SpecAugmentConfig):
        self.config = config

    def __call__(self, features: Tensor, rng: np.random.Generator) -> Tensor:
        c = self.config
        if not c.enabled:
            return features
        return spec_augment(features, rng, c.freq_masks, c.max_freq_width, c.time_masks, c.max_time_width,
                            c.max_time_fraction)


def build_augmenters(config: AugmentConfig, sample_rate: int):
    """(waveform_augment, feature_augment) for SpeechDataset; None where nothing is enabled."""
    waveform = WaveformAugmenter(config.perturb, config.noise, sample_rate)
    return (waveform if waveform.active else None,
            FeatureAugmenter(config.spec_augment) if config.spec_augment.enabled else None)


def inject_noise_file(input_path: str, noise_path: str, output_path: str, snr_db: float, seed: int = 0,
                      sample_rate: int = SAMPLE_RATE) -> float:
    """Mix a noise file into an audio file at `snr_db` and write the result, for listening.

    Returns the measured SNR of the written mix (before 16-bit quantisation) in dB.
    """
    signal = load_audio(input_path, sample_rate)
    noise = load_audio(noise_path, sample_rate)
    mixed = add_noise(signal, noise, snr_db, np.random.default_rng(seed))
    peak = float(np.abs(mixed).max())
    scale = 0.99 / peak if peak > 0.99 else 1.0  # avoid clipping; keeps the SNR
    write_audio(output_path, mixed * scale)
    residual = mixed - signal
    return 10.0 * np.log10(power(signal) / max(power(residual), 1e-20))
