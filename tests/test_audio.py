import io
import os
import shutil
import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from deepspeech_pytorch.audio import (AUDIO_EXTENSIONS, AudioError, UnsupportedAudioError, as_mono_waveform,
                                      audio_duration, audio_files_in, load_audio, scan_audio_folder, to_waveform)
from deepspeech_pytorch.serving.schemas import ApiError
from deepspeech_pytorch.serving.uploads import Part, decode_upload
from conftest import speak


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
    with pytest.raises(AudioError, match="empty.wav: holds no samples"):
        load_audio(str(tmp_path / "empty.wav"))


def test_empty_and_garbage_bytes(tmp_path):
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    (tmp_path / "junk.wav").write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(UnsupportedAudioError, match="junk.wav: not a supported audio format .*looks like text"):
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


# ---- the container: recognised from its bytes, one answer for CLI, API and server ------------------

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
M4A = os.path.join(DATA, "voice_note.m4a")  # espeak-ng "please call stella", AAC in MP4 by ffmpeg, as phones export


def test_misnamed_container_names_the_real_format_without_decoder_noise(tmp_path, capfd):
    """shared/cases/misnamed-container: AAC data named .mp3 was "File does not exist ... (possibly a pipe?)" plus
    mpg123 'Note:' lines on stderr."""
    misnamed = tmp_path / "voice_note.mp3"
    shutil.copyfile(M4A, misnamed)
    with pytest.raises(UnsupportedAudioError) as caught:
        load_audio(str(misnamed))
    message = str(caught.value)
    assert message.startswith(f"{misnamed}: not a supported audio format (WAV, FLAC, OGG, MP3")
    assert "looks like MP4/AAC (M4A), although its name ends in .mp3" in message and "\n" not in message
    assert "Note:" not in capfd.readouterr().err
    with pytest.raises(UnsupportedAudioError, match=r"voice_note.m4a: .*looks like MP4/AAC \(M4A\); convert it"):
        load_audio(M4A)


def test_cli_api_and_server_refuse_the_same_bytes_with_the_same_words():
    data = open(M4A, "rb").read()
    with pytest.raises(UnsupportedAudioError, match="looks like MP4/AAC") as from_bytes:
        load_audio(data)
    assert str(from_bytes.value).startswith("<audio bytes>: not a supported audio format")
    with pytest.raises(ApiError) as from_server:
        decode_upload(Part("file", data, "voice_note.mp3", "audio/mpeg"), 16000, max_seconds=60)
    assert from_server.value.status == 415 and from_server.value.code == "unsupported_audio_type"
    assert from_server.value.detail.startswith("the uploaded file 'voice_note.mp3': not a supported audio format "
                                               "(WAV, FLAC, OGG or MP3): looks like MP4/AAC (M4A)")


@pytest.mark.parametrize("name,content,looks", [
    ("page.wav", b"<!DOCTYPE html>\n<html><body>404 Not Found</body></html>\n", "an HTML page"),
    ("lfs.flac", b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a21\nsize 52011\n", "a Git LFS pointer"),
    ("notes.wav", b"hello, this is a transcript, not audio\n" * 5, "text ('hello, this is a transcript"),
    ("blank.wav", bytes(4096), "only zero bytes"),
    ("photo.mp3", b"\x89PNG\r\n\x1a\n" + bytes(300), "a PNG image"),
    ("clip.wav", b"\x1aE\xdf\xa3" + bytes(300), "WebM/Matroska"),
])
def test_other_content_under_an_audio_name_says_what_it_is(tmp_path, capfd, name, content, looks):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnsupportedAudioError) as caught:
        load_audio(str(tmp_path / name))
    assert str(caught.value).startswith(f"{tmp_path / name}: not a supported audio format")
    assert f"looks like {looks}" in str(caught.value)
    with pytest.raises(UnsupportedAudioError):
        audio_duration(str(tmp_path / name))  # the header reader gives the same answer
    assert "Note:" not in capfd.readouterr().err


@pytest.mark.parametrize("fmt,subtype,extension", [("OGG", "OPUS", ".opus"), ("OGG", "VORBIS", ".oga"),
                                                   ("AIFF", "PCM_16", ".aiff"), ("CAF", "PCM_16", ".caf"),
                                                   ("AU", "PCM_16", ".au"), ("W64", "PCM_16", ".w64"),
                                                   ("NIST", "PCM_16", ".sph"), ("RF64", "PCM_16", ".rf64")])
def test_every_format_libsndfile_reads_is_decoded_and_listed(tmp_path, sine, fmt, subtype, extension):
    path = tmp_path / f"tone{extension}"
    sf.write(path, sine(0.5, rate=48000 if subtype == "OPUS" else 16000), 48000 if subtype == "OPUS" else 16000,
             format=fmt, subtype=subtype)
    assert abs(len(load_audio(str(path))) - 8000) < 800
    assert audio_files_in(tmp_path) == [str(path)]


# ---- header sizes that lie ---------------------------------------------------------------------------

def _wav_with_data_size(data: bytes, size: int) -> bytes:
    index = data.find(b"data")
    return data[: index + 4] + struct.pack("<I", size) + data[index + 8:]


@pytest.fixture
def speech_wav(tmp_path):
    path = str(tmp_path / "speech.wav")
    speak("please call stella ask her to bring these things", path)
    return path


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF, 0x7FFFF000])
def test_wav_data_size_left_by_a_streaming_writer_is_read_to_the_end(tmp_path, speech_wav, size):
    """shared/cases/wav-datasize-zero: size 0 was "audio has zero length" for 3.7 s of speech (ffmpeg reads it all)."""
    whole = load_audio(speech_wav)
    streamed = tmp_path / "streamed.wav"
    streamed.write_bytes(_wav_with_data_size(open(speech_wav, "rb").read(), size))
    np.testing.assert_array_equal(load_audio(str(streamed)), whole)
    assert audio_duration(str(streamed)) == pytest.approx(len(whole) / 16000)
    np.testing.assert_array_equal(decode_upload(Part("file", streamed.read_bytes(), "s.wav"), 16000, 60), whole)


def _encoded(samples, fmt, rate=16000):
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype="PCM_16")
    return bytearray(buffer.getvalue())


def test_au_caf_and_flac_headers_without_a_length_are_read_to_the_end(tmp_path, speech_wav):
    whole = load_audio(speech_wav)
    au = _encoded(whole, "AU")
    au[8:12] = bytes(4)  # AU data size 0
    caf = _encoded(whole, "CAF")
    index = caf.find(b"data")
    caf[index + 4: index + 12] = b"\xff" * 8  # CAF data size -1: "to the end of the file", as the spec allows
    flac = _encoded(whole, "FLAC")
    streaminfo = int.from_bytes(flac[18:26], "big") & ~((1 << 36) - 1)  # total samples 0: unknown (piped)
    flac[18:26] = streaminfo.to_bytes(8, "big")
    for name, data in (("a.au", au), ("a.caf", caf), ("a.flac", flac)):
        (tmp_path / name).write_bytes(data)
        np.testing.assert_allclose(load_audio(str(tmp_path / name)), whole, atol=1e-4, err_msg=name)
        assert audio_duration(str(tmp_path / name)) == pytest.approx(len(whole) / 16000, abs=1e-3)


@pytest.mark.parametrize("fmt", ["WAV", "AIFF", "AU", "CAF"])
def test_a_file_cut_short_is_decoded_as_far_as_it_goes_with_a_warning_and_refused_by_the_server(
        tmp_path, sine, caplog, fmt):
    data = bytes(_encoded(sine(1.0), fmt))
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING", logger="deepspeech_pytorch.audio"):
        samples = load_audio(str(cut))
    np.testing.assert_allclose(samples, sine(1.0)[: len(samples)], atol=1e-4)
    assert 5000 < len(samples) < 8100 and audio_duration(str(cut)) == pytest.approx(len(samples) / 16000)
    assert f"cut.{fmt.lower()}: truncated {fmt} file: its header declares" in caplog.text
    with pytest.raises(AudioError, match=f"cut.{fmt.lower()}: truncated {fmt} file: .*incomplete copy"):
        load_audio(str(cut), refuse_truncated=True)
    with pytest.raises(ApiError, match=f"'cut.{fmt.lower()}': (truncated|not a supported)") as caught:
        decode_upload(Part("file", cut.read_bytes(), f"cut.{fmt.lower()}"), 16000, 60)
    assert caught.value.status == (422 if fmt == "WAV" else 415)


def test_a_flac_cut_short_is_named(tmp_path, speech_wav, caplog):
    data = bytes(_encoded(load_audio(speech_wav), "FLAC"))
    (tmp_path / "cut.flac").write_bytes(data[: int(len(data) * 0.7)])
    with pytest.raises(AudioError, match="cut.flac: (truncated FLAC|cannot decode FLAC audio)"):
        load_audio(str(tmp_path / "cut.flac"), refuse_truncated=True)


# ---- too short -----------------------------------------------------------------------------------

def test_a_clip_that_resamples_to_nothing_is_too_short(tmp_path):
    """shared/cases/zero-after-resample: one sample at 44.1 kHz; inference said "audio has zero length", no file."""
    sf.write(tmp_path / "one.wav", np.array([0.1], np.float32), 44100, subtype="PCM_16")
    with pytest.raises(AudioError, match=r"one.wav: too short: 1 sample at 44100 Hz \(0.0227 ms\); at least 20 ms"):
        load_audio(str(tmp_path / "one.wav"))


@pytest.mark.parametrize("seconds,rate,ok", [(0.01, 16000, False), (0.0199, 44100, False), (0.02, 16000, True),
                                             (0.02, 8000, True), (0.05, 48000, True)])
def test_less_than_one_analysis_window_is_too_short(tmp_path, sine, seconds, rate, ok):
    sf.write(tmp_path / "c.wav", sine(seconds, rate=rate), rate)
    if ok:
        assert len(load_audio(str(tmp_path / "c.wav"))) >= 320
    else:
        with pytest.raises(AudioError, match="c.wav: too short"):
            load_audio(str(tmp_path / "c.wav"))


# ---- paths that are not audio files ----------------------------------------------------------------

def test_a_folder_a_pipe_and_a_non_source_say_so(tmp_path):
    with pytest.raises(AudioError, match="is a folder, not an audio file"):
        load_audio(str(tmp_path))
    os.mkfifo(tmp_path / "pipe.wav")
    with pytest.raises(AudioError, match="pipe.wav: not a regular file"):
        load_audio(str(tmp_path / "pipe.wav"))
    with pytest.raises(AudioError, match="expected a file path, bytes or a binary file object, not ndarray"):
        load_audio(np.zeros(1600, np.float32))
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav: empty audio data"):
        load_audio(str(tmp_path / "empty.wav"))


# ---- folders -------------------------------------------------------------------------------------

def test_folder_listing_takes_every_readable_format_and_says_what_it_skipped(tmp_path, sine):
    """shared/cases/folder-skips-extensions: .opus and .aiff were skipped without a word."""
    tone = sine(0.5)
    sf.write(tmp_path / "a.wav", tone, 16000)
    sf.write(tmp_path / "whatsapp_note.opus", sine(0.5, rate=48000), 48000, format="OGG", subtype="OPUS")
    sf.write(tmp_path / "recorder.aiff", tone, 16000, format="AIFF")
    sf.write(tmp_path / "memo.caf", tone, 16000, format="CAF")
    sf.write(tmp_path / "old.au", tone, 16000, format="AU")
    sf.write(tmp_path / "Loud.WAV", tone, 16000)
    shutil.copyfile(M4A, tmp_path / "voice_note.m4a")
    (tmp_path / "transcript.txt").write_text("please call stella\n")
    (tmp_path / "._a.wav").write_bytes(b"\x00\x05\x16\x07" + bytes(100))  # macOS AppleDouble, not audio
    (tmp_path / ".DS_Store").write_bytes(bytes(10))
    (tmp_path / "more").mkdir()
    files, skipped = scan_audio_folder(tmp_path)
    names = ["Loud.WAV", "a.wav", "memo.caf", "old.au", "recorder.aiff", "whatsapp_note.opus"]
    assert files == [str(tmp_path / name) for name in names] == audio_files_in(tmp_path)
    assert all(len(load_audio(path)) > 7000 for path in files)
    reasons = {os.path.basename(s.path): (s.kind, s.reason) for s in skipped}
    assert set(reasons) == {"voice_note.m4a", "transcript.txt", "._a.wav", "more"}
    assert reasons["voice_note.m4a"] == ("unsupported", "M4A (MP4/AAC) is not a supported audio format; convert it "
                                                        "to WAV or FLAC first (e.g. with ffmpeg)")
    assert reasons["transcript.txt"][0] == "other" and reasons["more"][0] == "folder"
    assert reasons["._a.wav"][0] == "hidden"
    assert {".opus", ".oga", ".mp3", ".aiff", ".caf", ".au", ".w64", ".sph", ".flac", ".ogg"} <= set(AUDIO_EXTENSIONS)


# ---- samples handed over as arrays -------------------------------------------------------------------

def test_stereo_arrays_either_way_round_are_averaged(sine):
    left = sine(0.5)
    right = np.zeros_like(left)
    for stereo in (np.stack([left, right], axis=1), np.stack([left, right], axis=0)):
        np.testing.assert_allclose(as_mono_waveform(stereo), left / 2, atol=1e-7)
    np.testing.assert_array_equal(as_mono_waveform(left[None, :]), left)
    np.testing.assert_array_equal(as_mono_waveform(left.astype(np.float64)), left)
    np.testing.assert_array_equal(as_mono_waveform(torch.from_numpy(left)), left)


def test_integer_pcm_is_scaled_to_plus_minus_one(sine):
    pcm = (sine(0.5) * 32767).astype(np.int16)
    samples = as_mono_waveform(pcm)
    assert samples.dtype == np.float32 and 0.45 < np.abs(samples).max() <= 0.5


@pytest.mark.parametrize("array,words", [
    (np.zeros((4, 16000), np.float32)[None], "shape (1, 4, 16000) is not a waveform"),
    (np.zeros((100, 16000), np.float32), "shape (100, 16000) is not a waveform"),
    (np.full(1600, np.nan, np.float32), "NaN"),
    (np.zeros(1600, bool), "not booleans"),
    (np.zeros(1600, np.complex64), "not complex numbers"),
    (np.zeros(1600, np.int64), "not int64 integers"),
    (np.zeros(0, np.float32), "zero-length"),
    (np.zeros(100, np.float32), "too short: 100 samples at 16000 Hz"),
    (np.float32(0.5), "a single number"),
])
def test_arrays_that_are_not_a_waveform_are_named(array, words):
    with pytest.raises(AudioError) as caught:
        as_mono_waveform(array, "input 2")
    assert str(caught.value).startswith("input 2: ") and words in str(caught.value)


def test_to_waveform_decodes_sources_and_checks_arrays(tmp_path, sine):
    sf.write(tmp_path / "t.wav", sine(0.5), 16000)
    from_path = to_waveform(str(tmp_path / "t.wav"))
    np.testing.assert_array_equal(to_waveform((tmp_path / "t.wav").read_bytes()), from_path)
    with open(tmp_path / "t.wav", "rb") as handle:
        np.testing.assert_array_equal(to_waveform(handle), from_path)
    np.testing.assert_array_equal(to_waveform(np.stack([from_path, from_path], axis=1)), from_path)
