import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.audio import AudioError, audio_duration, load_audio


@pytest.mark.parametrize("extension,fmt", [(".wav", "WAV"), (".flac", "FLAC"), (".ogg", "OGG"), (".mp3", "MP3")])
def test_decodes_common_formats(tmp_path, sine, extension, fmt):
    path = tmp_path / f"tone{extension}"
    sf.write(path, sine(1.0), 16000, format=fmt)
    samples = load_audio(str(path))
    assert samples.dtype == np.float32
    assert abs(len(samples) - 16000) < 1200  # lossy codecs pad a little
    assert 0.3 < np.abs(samples).max() <= 1.0


def test_stereo_is_mixed_to_mono(tmp_path, sine):
    left = sine(0.5)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)
    sf.write(tmp_path / "s.wav", stereo, 16000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(str(tmp_path / "s.wav")), left / 2, atol=1e-6)


def test_other_rates_are_resampled_keeping_pitch(tmp_path, sine):
    sf.write(tmp_path / "hi.wav", sine(1.0, rate=44100, freq=1000.0), 44100)
    samples = load_audio(str(tmp_path / "hi.wav"))
    assert abs(len(samples) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * 16000 / len(samples) - 1000.0) < 2.0


def test_bytes_input(tmp_path, sine):
    sf.write(tmp_path / "t.wav", sine(0.25), 16000)
    assert len(load_audio((tmp_path / "t.wav").read_bytes())) == 4000


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(str(tmp_path / "nope.wav"))


def test_zero_length_audio(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="zero length"):
        load_audio(str(tmp_path / "empty.wav"))


def test_empty_and_garbage_bytes(tmp_path):
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioError, match="junk.wav: cannot decode"):
        load_audio(str(tmp_path / "junk.wav"))


def test_truncated_file_is_an_error_or_shorter(tmp_path, sine):
    sf.write(tmp_path / "t.flac", sine(1.0), 16000)
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[:40])
    with pytest.raises(AudioError, match="cut.flac"):
        load_audio(str(tmp_path / "cut.flac"))


def test_nan_samples_rejected(tmp_path):
    samples = np.zeros(1600, dtype=np.float32)
    samples[100] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        load_audio(str(tmp_path / "nan.wav"))


def test_duration_from_header(tmp_path, sine):
    sf.write(tmp_path / "d.wav", sine(1.5, rate=8000), 8000)
    assert audio_duration(str(tmp_path / "d.wav")) == pytest.approx(1.5)
