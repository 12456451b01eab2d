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


def _batch():
    rng = np.random.default_rng(3)
    a, b = (torch.from_numpy(0.1 * rng.standard_normal(n).astype(np.float32)) for n in (16000, 7000))
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :7000] = a, b
    return batch, torch.tensor([16000, 7000]), (a, b)


@pytest.mark.parametrize("kind", ["linear", "mel"])
@pytest.mark.parametrize("mode", ["utterance", "global", "running", "none"])
def test_feature_module_equals_the_functional_form(kind, mode):
    from deepspeech_pytorch.features import FeatureExtractor, measure_statistics

    config = FeatureConfig(kind=kind, n_mels=40)
    config.normalization = mode
    batch, lengths, pieces = _batch()
    mean, std = measure_statistics(pieces, config)
    assert mean.shape == std.shape == (config.num_features,)
    module = FeatureExtractor(config, mean, std)
    assert {"window", "mean", "std"} <= {name for name, _ in module.named_buffers()}
    got, got_lengths = module(batch, lengths)
    expected, expected_lengths = spectrogram(batch, lengths, config, mean, std)
    torch.testing.assert_close(got, expected)
    assert got_lengths.tolist() == expected_lengths.tolist() == [101, 44]
    assert torch.all(got[1, :, 44:] == 0)
    if mode == "none":
        assert float(got[0].mean()) < -1 or float(got[0].mean()) > 0.01  # raw log features, not centred


def test_global_statistics_normalise_each_frame_alone_and_running_ones_are_causal():
    from deepspeech_pytorch.features import measure_statistics

    batch, lengths, pieces = _batch()
    config = FeatureConfig(kind="mel", n_mels=40)
    mean, std = measure_statistics(pieces, config)
    config.normalization = "global"
    whole, _ = spectrogram(batch[:1], lengths[:1], config, mean, std)
    assert abs(float(whole[0].mean())) < 0.2 and abs(float(whole[0].std()) - 1) < 0.2  # the stats fit their data
    changed = batch[:1].clone()
    changed[0, 8000:] = torch.randn(8000)
    for mode in ("global", "running"):
        config.normalization = mode
        a, _ = spectrogram(batch[:1], lengths[:1], config, mean, std)
        b, _ = spectrogram(changed, lengths[:1], config, mean, std)
        torch.testing.assert_close(a[..., :45], b[..., :45])  # frames before the change (+ half a window)
        assert not torch.allclose(a[..., 60:], b[..., 60:])
    config.normalization = "utterance"  # for contrast: every frame depends on the whole utterance
    a, _ = spectrogram(batch[:1], lengths[:1], config)
    b, _ = spectrogram(changed, lengths[:1], config)
    assert not torch.allclose(a[..., :45], b[..., :45])


def test_statistics_are_required_where_the_mode_needs_them():
    from deepspeech_pytorch.features import FeatureExtractor

    config = FeatureConfig()
    config.normalization = "global"
    with pytest.raises(ValueError, match="statistics"):
        FeatureExtractor(config)
    with pytest.raises(ValueError, match="statistics"):
        spectrogram(torch.zeros(1, 1600), torch.tensor([1600]), config)
    config.normalization = "cmvn"
    with pytest.raises(ValueError, match="normalization"):
        spectrogram(torch.zeros(1, 1600), torch.tensor([1600]), config)


@pytest.mark.parametrize("window", ["hamming", "hann", "blackman", "bartlett"])
@pytest.mark.parametrize("kind", ["linear", "mel"])
@pytest.mark.parametrize("mode", ["utterance", "global", "running", "none"])
def test_numpy_features_equal_the_torch_ones(window, kind, mode):
    """The onnxruntime backend's features (numpy, no torch) against features.py, padded batch and all."""
    from deepspeech_pytorch import numpy_features
    from deepspeech_pytorch.features import FeatureExtractor, measure_statistics

    config = FeatureConfig(kind=kind, window=window, n_mels=40)
    batch, lengths, pieces = _batch()
    if mode in ("global", "running"):
        mean, std = measure_statistics(pieces, config)
        config.mean, config.std = mean.tolist(), std.tolist()
    config.normalization = mode
    expected, expected_lengths = FeatureExtractor(config)(batch, lengths)
    got, got_lengths = numpy_features.FeatureExtractor(config)(batch.numpy(), lengths.numpy())
    assert got.dtype == np.float32 and got.shape == tuple(expected.shape)
    assert got_lengths.tolist() == expected_lengths.tolist()
    np.testing.assert_allclose(got, expected.numpy(), atol=5e-5, rtol=1e-5)
    assert np.all(got[1, :, got_lengths[1]:] == 0)


def test_numpy_windows_and_filterbank_are_torchs():
    from deepspeech_pytorch import features, numpy_features

    for window in ("hamming", "hann", "blackman", "bartlett"):
        config = FeatureConfig(window=window)
        np.testing.assert_allclose(numpy_features.window(config), features.window_for(config).numpy(), atol=1e-6)
    np.testing.assert_allclose(numpy_features.mel_filterbank(64, 320, 16000), mel_filterbank(64, 320, 16000).numpy(),
                               atol=1e-5)
    assert numpy_features.seconds_per_frame(FeatureConfig()) == features.seconds_per_frame(FeatureConfig()) == 0.01


def test_numpy_features_import_no_torch():
    import subprocess
    import sys

    probe = ("import sys, numpy as np; from deepspeech_pytorch import numpy_features as f; "
             "from deepspeech_pytorch.configs import FeatureConfig; "
             "f.FeatureExtractor(FeatureConfig(kind='mel'))(np.zeros((1, 1600), np.float32), np.array([1600])); "
             "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
