"""Subtitles and text from word timings (deepspeech_pytorch.subtitles) and from the command line
(transcribe.py output_format=txt|srt|vtt output_dir=...), read back by FFmpeg's own SRT and WebVTT
demuxers (PyAV), on real speech: the bundled samples, one with a long pause inserted."""

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import av
import numpy as np
import pytest

from deepspeech_pytorch.audio import load_audio, write_audio
from deepspeech_pytorch.metrics import cer
from deepspeech_pytorch.subtitles import (MAX_LINE_CHARS, Segment, format_segments, format_srt, format_text,
                                          format_vtt, output_paths, segment_words, segments_of, timestamp, wrap_lines,
                                          write_output)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "deepspeech_pytorch", "pretrained", "samples")


@dataclass
class W:
    word: str
    start: float
    end: float


def words_at(text: str, start: float = 0.0, gap: float = 0.1, length: float = 0.3):
    """Evenly timed words: each `length` s, `gap` s apart."""
    words, t = [], start
    for word in text.split():
        words.append(W(word, round(t, 3), round(t + length, 3)))
        t += length + gap
    return words


# ---- formatting units -----------------------------------------------------------------------------

@pytest.mark.parametrize("seconds, srt, vtt", [
    (1.234, "00:00:01,234", "00:00:01.234"),
    (0.0, "00:00:00,000", "00:00:00.000"),
    (59.9996, "00:01:00,000", "00:01:00.000"),  # rounding carries into the minutes
    (3723.4567, "01:02:03,457", "01:02:03.457"),
    (-0.2, "00:00:00,000", "00:00:00.000"),
    (100 * 3600 + 1.5, "100:00:01,500", "100:00:01.500"),
])
def test_timestamps_srt_comma_vtt_dot(seconds, srt, vtt):
    assert timestamp(seconds) == srt
    assert timestamp(seconds, ".") == vtt


def test_a_pause_at_the_threshold_starts_a_new_segment_a_shorter_one_does_not():
    words = [W("one", 0.0, 0.3), W("two", 0.79, 1.0), W("three", 1.5, 1.8), W("four", 2.4, 2.6)]
    segments = segment_words(words, max_pause=0.5)
    # gaps: 0.49 (kept together), 0.5 (cut), 0.6 (cut)
    assert [(s.text, s.start, s.end) for s in segments] == [("one two", 0.0, 1.0), ("three", 1.5, 1.8),
                                                             ("four", 2.4, 2.6)]
    assert [w.word for w in segments[0].words] == ["one", "two"]
    assert [s.text for s in segment_words(words, max_pause=0.7)] == ["one two three four"]


def test_words_out_of_order_and_blank_words_are_handled():
    words = [W("b", 1.0, 1.2), W(" ", 0.5, 0.6), W("a", 0.0, 0.2)]
    assert [s.text for s in segment_words(words, max_pause=0.5)] == ["a", "b"]
    # a pause is measured from the latest end heard so far, not from the previous word's end
    overlapping = [W("long", 0.0, 2.0), W("a", 0.5, 0.6), W("b", 1.5, 1.7), W("c", 2.6, 2.7)]
    assert [(s.text, s.end) for s in segment_words(overlapping, max_pause=0.5)] == [("long a b", 2.0), ("c", 2.7)]


def test_too_many_characters_are_cut_evenly_not_leaving_a_lonely_word():
    text = "the one lamb thou shalt offer in the morning and the other lamb thou shalt offer at even"
    assert len(text) == 88
    segments = segment_words(words_at(text, gap=0.05, length=0.02))  # fast speech: 88 chars in 6 s
    assert len(segments) == 2
    assert all(len(s.text) <= 84 for s in segments)
    assert abs(len(segments[0].text) - len(segments[1].text)) <= 12, [s.text for s in segments]
    assert " ".join(s.text for s in segments) == text


def test_too_long_in_time_is_cut_and_every_piece_fits():
    words = words_at(" ".join(["word"] * 30), gap=0.2, length=0.4)  # 30 words, 17.8 s, no pause of 0.5 s
    segments = segment_words(words, max_seconds=7.0)
    assert len(segments) == 3
    assert all(s.end - s.start <= 7.0 and len(s.text) <= 84 for s in segments)
    assert sum(len(s.words) for s in segments) == 30
    assert all(a.end <= b.start for a, b in zip(segments, segments[1:]))


def test_a_single_word_longer_than_the_limits_is_its_own_segment():
    words = [W("a", 0.0, 0.1), W("x" * 100, 0.2, 9.0), W("b", 9.1, 9.2)]
    segments = segment_words(words)
    assert [len(s.text) for s in segments] == [1, 100, 1]
    assert wrap_lines("x" * 100) == ["x" * 100]


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="max_pause=0"):
        segment_words([], max_pause=0)
    with pytest.raises(ValueError, match="max_chars=-1"):
        segment_words([], max_chars=-1)


def test_lines_are_wrapped_in_two_balanced_lines():
    text = "the one lamb thou shalt offer in the morning and the other"
    lines = wrap_lines(text)
    assert len(lines) == 2 and all(len(line) <= MAX_LINE_CHARS for line in lines)
    assert " ".join(lines) == text
    assert abs(len(lines[0]) - len(lines[1])) <= 6
    assert wrap_lines("short  text ") == ["short text"]
    assert wrap_lines("") == []
    assert len(wrap_lines(" ".join(["abcdefghi"] * 12))) == 3  # 119 chars: more than two lines


def test_srt_and_vtt_exact_text():
    segments = [Segment(0.1, 1.234, "hello world"), Segment(2.0, 2.0, "a <b> & c")]
    assert format_srt(segments) == ("1\n00:00:00,100 --> 00:00:01,234\nhello world\n\n"
                                    "2\n00:00:02,000 --> 00:00:02,001\na <b> & c\n")
    assert format_vtt(segments) == ("WEBVTT\n\n00:00:00.100 --> 00:00:01.234\nhello world\n\n"
                                    "00:00:02.000 --> 00:00:02.001\na &lt;b&gt; &amp; c\n")
    assert format_text(segments) == "hello world\na <b> & c\n"
    assert format_srt([]) == "" and format_vtt([]) == "WEBVTT\n" and format_text([]) == ""
    with pytest.raises(ValueError, match="'ass' is not one of txt, srt, vtt"):
        format_segments(segments, "ass")


def test_without_word_times_the_transcript_is_one_segment_and_silence_none():
    assert [(s.start, s.end, s.text) for s in segments_of("hello  there", [], 3.5)] == [(0.0, 3.5, "hello there")]
    assert segments_of("", [], 3.5) == []
    assert [s.text for s in segments_of("a b", [W("a", 0, 0.1), W("b", 2, 2.1)], 3.0)] == ["a", "b"]


def parse(path):
    """(start, end, text) of each cue as FFmpeg reads the file (its srt / webvtt demuxer), or fail."""
    with av.open(str(path)) as container:
        assert container.format.name in ("srt", "webvtt")
        stream = container.streams.subtitles[0]
        unit = float(stream.time_base)
        return [(round(packet.pts * unit, 3), round((packet.pts + packet.duration) * unit, 3),
                 bytes(packet).decode("utf-8")) for packet in container.demux(stream) if packet.pts is not None]


@pytest.mark.parametrize("output_format", ["srt", "vtt"])
def test_written_subtitles_parse_back_with_ffmpeg(tmp_path, output_format):
    text = "the one lamb thou shalt offer in the morning and the other lamb thou shalt offer at even"
    words = words_at(text, start=1.0, gap=0.05, length=0.02) + words_at("how impertinent", start=70.25)
    segments = segment_words(words)
    path = tmp_path / f"x.{output_format}"
    path.write_text(format_segments(segments, output_format), encoding="utf-8")
    cues = parse(path)
    assert [(start, end) for start, end, _ in cues] == [(round(s.start, 3), round(s.end, 3)) for s in segments]
    assert [" ".join(cue.split()) for _, _, cue in cues] == [s.text for s in segments]
    assert all(len(line) <= MAX_LINE_CHARS for _, _, cue in cues for line in cue.splitlines())
    assert cues[-1][0] == 70.25  # past a minute


def test_the_module_imports_no_torch():
    probe = "import sys, deepspeech_pytorch.subtitles; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          cwd=ROOT).stdout.strip() == "False"


# ---- output files -----------------------------------------------------------------------------------

def test_output_paths_name_each_input_and_refuse_clashes(tmp_path):
    out = tmp_path / "out"
    assert output_paths(["a/x.wav", "b/y.tar.flac"], "srt", str(out)) == [str(out / "x.srt"), str(out / "y.tar.srt")]
    with pytest.raises(ValueError, match=r"a/x.wav and b/x.flac would both be written to .*x.srt"):
        output_paths(["a/x.wav", "b/x.flac"], "srt", str(out))
    audio = tmp_path / "talk.srt"  # an input whose name ends like the output
    with pytest.raises(ValueError, match="would overwrite the input"):
        output_paths([str(audio)], "srt", str(tmp_path))
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        output_paths(["x.wav"], "srt", str(tmp_path / "afile"))
    (out / "x.vtt").mkdir(parents=True)
    with pytest.raises(ValueError, match="is a folder"):
        output_paths(["x.wav"], "vtt", str(out))
    with pytest.raises(ValueError, match=r"would be named x+\.\.\. \(256 bytes\), over the file system's 255"):
        output_paths(["x" * 252], "vtt", str(out))  # no extension: the output's name grows by 4 bytes


def test_write_output_takes_any_name_the_file_system_does_and_the_umask_mode(tmp_path):
    """Its temporary file was <name>.<pid>.tmp, over the 255-byte limit for a long valid name (OSError
    traceback); it is a short name beside it now, gone afterwards, and the file gets a plain open's mode."""
    path = tmp_path / ("x" * 251 + ".srt")
    write_output(str(path), "1\n")
    write_output(str(path), "2\n")  # replaces
    assert path.read_text() == "2\n" and os.listdir(tmp_path) == [path.name]
    umask = os.umask(0)
    os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o666 & ~umask


# ---- the command line on real speech ----------------------------------------------------------------

def run_transcribe(*args, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("DEEPSPEECH_DEBUG", "HYDRA_FULL_ERROR")}
    return subprocess.run([sys.executable, os.path.join(ROOT, "transcribe.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def write_paused_speech(folder):
    """Two bundled samples with 1.5 s of silence between them (the pause) as paused.wav and a third
    sample alone as alone.wav, in `folder`: (the pause's start and end seconds, reference texts by name)."""
    with open(os.path.join(SAMPLES, "samples.jsonl")) as handle:
        texts = {e["audio_filepath"]: e["text"] for e in map(json.loads, handle)}
    first, second = (load_audio(os.path.join(SAMPLES, name)) for name in ("sample2.wav", "sample4.wav"))
    paused = np.concatenate([first, np.zeros(24000, dtype=np.float32), second])
    write_audio(str(folder / "paused.wav"), paused)
    write_audio(str(folder / "alone.wav"), load_audio(os.path.join(SAMPLES, "sample3.wav")))
    pause = (len(first) / 16000, len(first) / 16000 + 1.5)
    return pause, {"paused": [texts["sample2.wav"], texts["sample4.wav"]], "alone": [texts["sample3.wav"]]}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subtitle_speech")
    return (folder, *write_paused_speech(folder))


def test_cli_writes_srt_per_file_cut_at_the_pause_and_matching_the_json(speech):
    folder, (pause_start, pause_end), references = speech
    result = run_transcribe("paused.wav", "alone.wav", "output_format=srt", "output_dir=subs", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "wrote subs/paused.srt" in result.stderr and "wrote subs/alone.srt" in result.stderr
    records = run_transcribe("paused.wav", "alone.wav", "output_dir=records", cwd=folder)  # json: <name>.json
    assert records.returncode == 0 and records.stdout == "", records.stderr
    transcripts = {name: json.loads((folder / "records" / f"{name}.json").read_text()) for name in ("paused", "alone")}
    assert transcripts["paused"]["audio_path"] == "paused.wav"
    for name in ("paused", "alone"):
        cues = parse(folder / "subs" / f"{name}.srt")
        words = transcripts[name]["words"]
        assert " ".join(" ".join(text.split()) for _, _, text in cues) == transcripts[name]["transcript"]
        assert cues[0][0] == round(words[0]["start"], 3) and cues[-1][1] == round(words[-1]["end"], 3)
        assert all(a[1] <= b[0] for a, b in zip(cues, cues[1:]))
        assert cer([" ".join(references[name])], [transcripts[name]["transcript"]]) < 0.15
    paused = parse(folder / "subs" / "paused.srt")
    # the silence separates two cues: one ends before it, the next starts after it
    assert any(end <= pause_start + 0.25 and following[0] >= pause_end - 0.25
               for (_, end, _), following in zip(paused, paused[1:])), paused


def test_cli_prints_vtt_and_txt_of_one_file_on_stdout(speech):
    folder, (pause_start, pause_end), references = speech
    result = run_transcribe("paused.wav", "output_format=vtt", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("WEBVTT\n\n")
    (folder / "stdout.vtt").write_text(result.stdout)
    cues = parse(folder / "stdout.vtt")
    assert len(cues) >= 2 and cues[0][1] <= pause_start + 0.25 and cues[1][0] >= pause_end - 0.25
    text = run_transcribe("paused.wav", "output_format=txt", "word_timings=false", cwd=folder)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert text.stdout.endswith("\n") and lines == [" ".join(cue.split()) for _, _, cue in cues]
    assert cer([" ".join(references["paused"])], [" ".join(lines)]) < 0.15


def test_cli_refuses_outputs_that_clash_before_loading_the_model(speech, tmp_path):
    folder, _, _ = speech
    (tmp_path / "other").mkdir()
    clash = tmp_path / "other" / "paused.flac"
    clash.write_bytes(b"not read")
    result = run_transcribe(str(folder / "paused.wav"), str(clash), "output_format=vtt", f"output_dir={tmp_path}",
                            cwd=tmp_path)
    # one line: refused before anything was transcribed (paused.flac is not audio and was never read)
    assert result.returncode != 0 and result.stderr.startswith("error: ") and "would both be written to" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    several = run_transcribe(str(folder / "paused.wav"), str(folder / "alone.wav"), "output_format=srt", cwd=tmp_path)
    assert several.returncode != 0 and "add output_dir=FOLDER" in several.stderr
    assert len(several.stderr.strip().splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["other"]  # nothing written
