import numpy as np
import pytest
import torch
from scipy.signal import get_window

from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.features import Spectrogram, mel_filterbank, spectrogram, utterance_features


def reference_spectrogram(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """NumPy/SciPy version: zero-padded centred frames, periodic window, rfft, log1p, normalise."""
    n_fft, hop = config.n_fft, config.hop_length
    padded = np.pad(signal.astype(np.float64), n_fft // 2)
    frames = len(signal) // hop + 1
    window = get_window(config.window, n_fft, fftbins=True)
    stack = np.stack([padded[i * hop: i * hop + n_fft] * window for i in range(frames)], axis=1)
    spec = np.log1p(np.abs(np.fft.rfft(stack, axis=0)))
    return (spec - spec.mean()) / (spec.std(ddof=1) + 1e-5)


@pytest.mark.parametrize("window", ["hamming", "hann"])
def test_matches_numpy_reference(window):
    config = FeatureConfig(window=window)
    signal = np.random.default_rng(0).standard_normal(12345).astype(np.float32) * 0.1
    ours = utterance_features(torch.from_numpy(signal), config).numpy()
    expected = reference_spectrogram(signal, config)
    assert ours.shape == expected.shape == (161, 12345 // 160 + 1)
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_batched_equals_single_and_padding_is_zero():
    config = FeatureConfig()
    rng = np.random.default_rng(1)
    a, b = (torch.from_numpy(rng.standard_normal(n).astype(np.float32)) for n in (16000, 7000))
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :7000] = a, b
    features, lengths = spectrogram(batch, torch.tensor([16000, 7000]), config)
    assert lengths.tolist() == [101, 44]
    torch.testing.assert_close(features[1, :, :44], utterance_features(b, config), atol=1e-5, rtol=1e-5)
    assert torch.all(features[1, :, 44:] == 0)
    torch.testing.assert_close(Spectrogram(config)(batch, torch.tensor([16000, 7000]))[0], features)


def test_normalised_statistics():
    signal = torch.randn(8000)
    features = utterance_features(signal, FeatureConfig())
    assert abs(float(features.mean())) < 1e-4
    assert abs(float(features.std()) - 1.0) < 1e-3


def test_log_mel_option():
    config = FeatureConfig(kind="mel", n_mels=40)
    features = utterance_features(torch.randn(16000), config)
    assert features.shape == (40, 101) and config.num_features == 40
    filters = mel_filterbank(40, 320, 16000)
    assert filters.shape == (40, 161)
    assert torch.all(filters >= 0) and torch.all(filters.max(dim=1).values > 0.5)


def test_unknown_options_are_rejected():
    with pytest.raises(ValueError, match="window"):
        utterance_features(torch.randn(1000), FeatureConfig(window="kaiser"))
    with pytest.raises(ValueError, match="kind"):
        utterance_features(torch.randn(1000), FeatureConfig(kind="mfcc"))
