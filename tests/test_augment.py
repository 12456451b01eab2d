import subprocess
import sys
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from deepspeech_pytorch.augment import (FeatureAugmenter, WaveformAugmenter, add_noise, build_augmenters, change_gain,
                                        change_speed, power, spec_augment)
from deepspeech_pytorch.configs import AugmentConfig, NoiseAugmentConfig, PerturbConfig, SpecAugmentConfig
from deepspeech_pytorch.audio import load_audio

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rng(seed=0):
    return np.random.default_rng(seed)


def test_spec_augment_masks_within_bounds():
    features = torch.randn(161, 500) + 5.0  # offset so masked (zero) cells are recognisable
    for seed in range(20):
        out = spec_augment(features, rng(seed), 2, 27, 2, 40, 0.1)
        assert out.shape == features.shape
        masked_rows = int((out == 0).all(dim=1).sum())
        masked_cols = int((out == 0).all(dim=0).sum())
        assert masked_rows <= 2 * 27 and masked_cols <= 2 * 40
        assert float((out == 0).float().mean()) <= (2 * 27 * 500 + 2 * 40 * 161) / (161 * 500)
    masked = [float((spec_augment(features, rng(s), 2, 27, 2, 40, 0.1) == 0).float().mean()) for s in range(50)]
    assert 0.05 < np.mean(masked) < 0.4  # masks actually happen, on average a sizeable share


def test_spec_augment_respects_time_fraction_and_keeps_input():
    features = torch.randn(161, 100) + 5.0
    copy = features.clone()
    out = spec_augment(features, rng(3), 0, 0, 5, 40, 0.1)
    assert int((out == 0).all(dim=0).sum()) <= 5 * 10
    assert torch.equal(features, copy)  # pure: the input is not modified


@pytest.mark.parametrize("snr", [0.0, 10.0, 25.0])
def test_noise_at_requested_snr(snr):
    t = np.arange(32000) / 16000
    signal = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noise = rng(1).standard_normal(7000).astype(np.float32)  # shorter than the signal: looped
    mixed = add_noise(signal, noise, snr, rng(2))
    measured = 10 * np.log10(power(signal) / power(mixed - signal))
    assert abs(measured - snr) < 0.5


def test_speed_and_gain():
    signal = rng(0).standard_normal(16000).astype(np.float32) * 0.1
    assert len(change_speed(signal, 1.1, 16000)) == pytest.approx(16000 / 1.1, abs=2)
    assert len(change_speed(signal, 0.9, 16000)) == pytest.approx(16000 / 0.9, abs=2)
    louder = change_gain(signal, 6.0)
    assert 10 * np.log10(power(louder) / power(signal)) == pytest.approx(6.0, abs=1e-3)


def noise_config(tmp_path, **overrides):
    sf.write(tmp_path / "n.wav", rng(5).standard_normal(8000).astype(np.float32) * 0.2, 16000)
    values = dict(enabled=True, directory=str(tmp_path), probability=1.0, min_snr_db=5.0, max_snr_db=5.0)
    values.update(overrides)
    return NoiseAugmentConfig(**values)


def test_augmenters_are_deterministic_for_a_seed(tmp_path):
    perturb = PerturbConfig(speed_enabled=True, gain_enabled=True)
    augmenter = WaveformAugmenter(perturb, noise_config(tmp_path), 16000)
    signal = rng(0).standard_normal(16000).astype(np.float32) * 0.1
    a, b, c = augmenter(signal, rng(7)), augmenter(signal, rng(7)), augmenter(signal, rng(8))
    np.testing.assert_array_equal(a, b)
    assert len(a) != len(c) or not np.array_equal(a, c)
    features = torch.randn(161, 200)
    spec = FeatureAugmenter(SpecAugmentConfig(enabled=True))
    assert torch.equal(spec(features, rng(1)), spec(features, rng(1)))


def test_off_means_bit_identical(tmp_path):
    signal = rng(0).standard_normal(16000).astype(np.float32)
    features = torch.randn(161, 100)
    waveform, feature = build_augmenters(AugmentConfig(), 16000)
    assert waveform is None and feature is None
    off = WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(), 16000)
    assert off(signal, rng(0)) is signal
    assert FeatureAugmenter(SpecAugmentConfig(enabled=False))(features, rng(0)) is features
    zero_probability = WaveformAugmenter(PerturbConfig(), noise_config(tmp_path, probability=0.0), 16000)
    assert zero_probability(signal, rng(0)) is signal


def test_noise_without_files_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no noise files"):
        WaveformAugmenter(PerturbConfig(), NoiseAugmentConfig(enabled=True, directory=str(tmp_path)), 16000)


def test_noise_inject_script(tmp_path, speech_corpus):
    speech = os.path.join(os.path.dirname(speech_corpus), "utt0.wav")
    sf.write(tmp_path / "noise.flac", rng(4).standard_normal(44100).astype(np.float32) * 0.3, 44100)
    result = subprocess.run([sys.executable, os.path.join(ROOT, "noise_inject.py"), f"input_path={speech}",
                             f"noise_path={tmp_path}/noise.flac", f"output_path={tmp_path}/mixed.wav", "snr_db=10"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    mixed, clean = load_audio(str(tmp_path / "mixed.wav")), load_audio(speech)
    assert len(mixed) == len(clean)
    gain = np.dot(mixed, clean) / np.dot(clean, clean)  # undo any anti-clipping scale
    measured = 10 * np.log10(power(clean) / power(mixed / gain - clean))
    assert abs(measured - 10.0) < 0.5
    missing = subprocess.run([sys.executable, os.path.join(ROOT, "noise_inject.py"), f"input_path={speech}",
                              "noise_path=nope.wav", f"output_path={tmp_path}/x.wav"], capture_output=True, text=True)
    assert missing.returncode == 1 and "nope.wav" in missing.stderr and "Traceback" not in missing.stderr
