"""Silence around and between speech: the bundled model transcribes only what VAD finds spoken.

Before VAD, 8 s of digital silence after a 3.7 s sentence turned it into nonsense, and 5 s of +-1 LSB
noise came out as "ssssssssss" (the cases in shared/cases/silence-padding).
"""

import numpy as np
import pytest
import torch

from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.inference import Transcriber, load_model
from deepspeech_pytorch.vad import speech_segments

from conftest import speak

RATE = 16000
SENTENCE = "please call stella ask her to bring these things with her from the store"


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    path = tmp_path_factory.mktemp("vad") / "speech.wav"
    speak(SENTENCE, str(path))
    return load_audio(str(path))


@pytest.fixture(scope="module")
def bundled():
    return load_model()


def silence(seconds):
    return np.zeros(int(seconds * RATE), dtype=np.float32)


def room(seconds, seed=0):
    """A quiet room's noise floor, about -70 dBFS."""
    return (3e-4 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def padded_variants(speech):
    return {
        "8 s of digital silence after": (np.concatenate([speech, silence(8)]), 0.0),
        "12 s of quiet room after": (np.concatenate([speech, room(12)]), 0.0),
        "3 s of silence before": (np.concatenate([silence(3), speech]), 3.0),
        "3 s of quiet room before and 5 s after": (np.concatenate([room(3, 1), speech, room(5, 2)]), 3.0),
    }


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_silence_around_speech_transcribes_as_the_clean_clip(bundled, speech, decoder):
    transcriber = Transcriber(bundled, decoder=decoder)
    clean = transcriber.transcribe(speech)
    assert clean.text and len(clean.words) >= 10
    for name, (audio, offset) in padded_variants(speech).items():
        result = transcriber.transcribe(audio)
        assert result.text == clean.text, name
        assert result.duration == pytest.approx(len(audio) / RATE)
        # word times stay in the file's timeline: shifted by the leading silence, within a frame or two
        assert [w.word for w in result.words] == [w.word for w in clean.words], name
        for padded_word, clean_word in zip(result.words, clean.words):
            assert padded_word.start == pytest.approx(clean_word.start + offset, abs=0.05), name
            assert padded_word.end == pytest.approx(clean_word.end + offset, abs=0.1), name


def test_a_long_pause_between_sentences_keeps_both(bundled, speech):
    transcriber = Transcriber(bundled)
    clean = transcriber.transcribe(speech).text
    both = transcriber.transcribe(np.concatenate([speech, silence(4), speech]))
    words, expected = both.text.split(), clean.split()
    assert len(words) == 2 * len(expected)
    for half in (words[:len(expected)], words[len(expected):]):  # each copy as the clean clip, a word aside
        assert sum(a != b for a, b in zip(half, expected)) <= 1
    second_half = both.words[len(expected):]
    assert all(w.start > len(speech) / RATE + 3.5 for w in second_half)


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_silence_and_near_silence_give_an_empty_transcript(bundled, decoder):
    transcriber = Transcriber(bundled, decoder=decoder)
    near_silence = np.random.default_rng(0).integers(-1, 2, 5 * RATE).astype(np.float32) / 32768  # +-1 LSB
    for audio in (silence(5), near_silence, room(5)):
        result = transcriber.transcribe(audio)
        assert result.text == "" and result.words == [] and result.duration == pytest.approx(5.0)


def test_speech_segments_are_ordered_padded_and_bounded(speech):
    threads = torch.get_num_threads()
    audio = np.concatenate([silence(2), speech, silence(3), speech, room(6)])
    segments = speech_segments(audio, RATE, max_seconds=30.0)
    assert torch.get_num_threads() == threads  # silero-vad's import sets one thread; put back
    assert len(segments) == 2
    assert all(0 <= a < b <= len(audio) for a, b in segments)
    assert segments[0][1] <= segments[1][0]
    first_start = 2 * RATE
    assert first_start - 0.4 * RATE <= segments[0][0] <= first_start
    assert segments[1][1] <= (2 + 3 + 2 * len(speech) / RATE + 0.5) * RATE  # the room noise after is left out
    # a 12 s monologue (three sentences without pauses) split under max_seconds=5 into pieces of at most ~5 s
    long = np.concatenate([speech, speech, speech])
    pieces = speech_segments(long, RATE, max_seconds=5.0)
    assert len(pieces) >= 3 and all(b - a <= 5.0 * RATE for a, b in pieces)
    assert speech_segments(silence(0.01), RATE) == [] and speech_segments(np.zeros(0, np.float32), RATE) == []


def test_segments_at_another_sample_rate_are_in_that_rate(speech):
    from deepspeech_pytorch.audio import resample
    at_8k = resample(np.concatenate([silence(2), speech, silence(2)]), RATE, 8000)
    segments = speech_segments(at_8k, 8000)
    assert len(segments) == 1 and 2 * 8000 - 0.4 * 8000 <= segments[0][0] <= 2 * 8000


def test_the_command_line_transcribes_padded_speech_as_the_clean_clip(tmp_path, speech):
    import json
    import os
    import subprocess
    import sys

    from deepspeech_pytorch.audio import write_audio

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    write_audio(tmp_path / "clean.wav", speech)
    write_audio(tmp_path / "padded.wav", np.concatenate([silence(2), speech, silence(8)]))
    write_audio(tmp_path / "near_silence.wav", np.random.default_rng(0).integers(-1, 2, 5 * RATE) / 32768)
    result = subprocess.run([sys.executable, os.path.join(root, "transcribe.py"), "clean.wav", "padded.wav",
                             "near_silence.wav", "decoder.type=beam"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    texts = {record["audio_path"]: record["transcript"] for record in map(json.loads, result.stdout.splitlines())}
    assert texts["padded.wav"] == texts["clean.wav"] != "" and texts["near_silence.wav"] == ""


def test_quiet_speech_is_still_heard(bundled, speech):
    """Speech recorded 30-50 dB below full scale (a far microphone) is detected like the loud clip."""
    transcriber = Transcriber(bundled)
    clean = transcriber.transcribe(speech).text.split()
    for gain in (0.03, 0.01, 0.003):  # the model itself hears quiet speech a little differently: a word aside
        quiet = transcriber.transcribe(np.concatenate([silence(1), gain * speech, silence(1)])).text.split()
        assert len(quiet) == len(clean) and sum(a != b for a, b in zip(quiet, clean)) <= 1, (gain, quiet)


def test_onnx_probabilities_match_silero_s_own_model(speech):
    """The ONNX Runtime scorer (no torch) gives the probabilities of the silero_vad package's TorchScript model."""
    from deepspeech_pytorch import vad

    audio = np.concatenate([silence(1), speech, room(2)])
    ours = vad.speech_probabilities(audio)
    silero = vad._torch_scorer()(audio)
    assert ours.shape == silero.shape == ((len(audio) + 511) // 512,)
    assert np.abs(ours - silero).max() < 1e-3
    assert ours[: RATE // 512 - 2].max() < 0.2 and ours[RATE // 512 + 10: RATE // 512 + 40].mean() > 0.5


def test_segments_follow_silero_s_rules(speech):
    """segments_from_probabilities against silero's own get_speech_timestamps_from_probs on real probabilities,
    with the settings used here and others, long speech cut at max_seconds included."""
    silero_utils = pytest.importorskip("silero_vad.utils_vad")
    from deepspeech_pytorch.vad import VadConfig, segments_from_probabilities, speech_probabilities

    cases = [np.concatenate([silence(2), speech, silence(1), speech, room(5)]), np.concatenate([speech] * 3),
             np.concatenate([room(1), 0.01 * speech, silence(0.3), speech])]
    compared = 0
    for audio in cases:
        probabilities = speech_probabilities(audio)
        for config in (VadConfig(), VadConfig(threshold=0.3, min_silence_seconds=0.1, pad_seconds=0.03,
                                              min_speech_seconds=0.25)):
            for longest in (float("inf"), 5.0, 3.0, 1.0):
                ours = segments_from_probabilities(probabilities, len(audio), config, longest)
                theirs = silero_utils.get_speech_timestamps_from_probs(
                    [float(p) for p in probabilities], threshold=config.threshold,
                    min_speech_duration_ms=int(1000 * config.min_speech_seconds), max_speech_duration_s=longest,
                    min_silence_duration_ms=int(1000 * config.min_silence_seconds),
                    speech_pad_ms=int(1000 * config.pad_seconds), audio_length_samples=len(audio))
                assert ours == [(s["start"], s["end"]) for s in theirs], (config, longest)
                compared += len(ours)
    assert compared > 20


def test_vad_imports_no_torch(speech, tmp_path):
    import subprocess
    import sys

    from deepspeech_pytorch.audio import write_audio

    write_audio(tmp_path / "speech.wav", np.concatenate([silence(1), speech]))
    probe = ("import sys; from deepspeech_pytorch.audio import load_audio; from deepspeech_pytorch.vad import "
             f"speech_segments; print(speech_segments(load_audio({str(tmp_path / 'speech.wav')!r}), 16000)); "
             "print('torch' in sys.modules)")
    lines = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()
    assert lines[1] == "False" and lines[0] != "[]"
