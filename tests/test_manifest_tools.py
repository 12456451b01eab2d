"""The manifest command lines: `data/merge_manifests.py` and `data/verify_manifest.py`."""

import json
import os
import re

import numpy as np
import pytest
import soundfile as sf

from deepspeech_pytorch.corpora.verify import verify_manifest
from deepspeech_pytorch.datasets import read_manifest
from conftest import load_script

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def wav(path, seconds, rate=16000):
    t = np.arange(int(round(seconds * rate))) / rate
    sf.write(path, (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), rate, subtype="PCM_16")
    return str(path)


def write_jsonl(path, records):
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    """Two small manifests in different formats sharing one utterance."""
    audio = tmp_path / "audio"
    audio.mkdir()
    first = write_jsonl(tmp_path / "first.jsonl", [
        {"audio_filepath": os.path.relpath(wav(audio / "a.wav", 1.0), tmp_path), "text": "alpha", "duration": 1.0},
        {"audio_filepath": os.path.relpath(wav(audio / "b.wav", 3.0), tmp_path), "text": "bravo", "duration": 3.0},
    ])
    (tmp_path / "c.txt").write_text("charlie\n")
    (tmp_path / "a.txt").write_text("alpha\n")
    wav(audio / "c.wav", 0.3)
    second = tmp_path / "second.csv"  # the original project's wav_path,txt_path format
    second.write_text("audio/c.wav,c.txt\naudio/a.wav,a.txt\n")
    return tmp_path, first, str(second)


def test_merge_dedupes_prunes_and_writes_jsonl(corpus, capsys):
    folder, first, second = corpus
    output = folder / "out" / "merged.jsonl"
    status = load_script("merge_manifests")([first, second, "--output", str(output),
                                             "--min-duration", "0.5", "--max-duration", "2.0"])
    assert status == 0
    entries = read_manifest(str(output))
    assert [(os.path.basename(e.audio_path), e.text) for e in entries] == [("a.wav", "alpha")]  # b too long, c too short
    record = json.loads(output.read_text().splitlines()[0])
    assert record["audio_filepath"] == os.path.join("..", "audio", "a.wav")  # relative to the merged manifest
    assert "1 utterances" in capsys.readouterr().out


def test_merge_without_limits_keeps_each_file_once(corpus):
    folder, first, second = corpus
    output = folder / "merged.jsonl"
    assert load_script("merge_manifests")([first, second, "--output", str(output), "--absolute"]) == 0
    entries = read_manifest(str(output))
    assert sorted(os.path.basename(e.audio_path) for e in entries) == ["a.wav", "b.wav", "c.wav"]
    assert all(os.path.isabs(json.loads(line)["audio_filepath"]) for line in output.read_text().splitlines())


def test_merge_reports_a_broken_input_and_writes_nothing(corpus, capsys):
    folder, first, _ = corpus
    broken = write_jsonl(folder / "broken.jsonl", [{"audio_filepath": "audio/nowhere.wav", "text": "x"}])
    output = folder / "merged.jsonl"
    assert load_script("merge_manifests")([first, broken, "--output", str(output)]) == 1
    assert "broken.jsonl line 1: audio file not found" in capsys.readouterr().err
    assert not output.exists()


def test_verify_passes_a_clean_manifest(corpus, capsys):
    _, first, second = corpus
    assert load_script("verify_manifest")([first, second, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "first.jsonl: 2 utterances, 0.001 hours, 0 problems" in out
    assert "second.csv: 2 utterances" in out


def test_verify_reports_every_problem_and_fails(tmp_path, capsys):
    audio = tmp_path / "audio"
    audio.mkdir()
    wav(audio / "good.wav", 1.0)
    wav(audio / "rate.wav", 2.0, rate=8000)
    (audio / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00not really a wave file")
    manifest = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"audio_filepath": "audio/good.wav", "text": "fine", "duration": 1.0}),
        json.dumps({"audio_filepath": "audio/missing.wav", "text": "gone", "duration": 1.0}),
        json.dumps({"audio_filepath": "audio/good.wav", "text": "twice", "duration": 1.0}),
        json.dumps({"audio_filepath": "audio/rate.wav", "text": "wrong length", "duration": 1.5}),
        json.dumps({"audio_filepath": "audio/garbage.wav", "text": "noise", "duration": 1.0}),
        json.dumps({"audio_filepath": "audio/good.wav", "text": "naïve 42 \u00a7", "duration": 1.0}),
        "{not json",
    ]
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_script("verify_manifest")([str(manifest), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "bad.jsonl line 2: audio file not found" in out
    assert "bad.jsonl line 3: " in out and "listed again (first at" in out
    assert "bad.jsonl line 4: manifest duration 1.500 s differs from the file's 2.000 s" in out
    assert "bad.jsonl line 5: " in out and "garbage.wav: cannot" in out
    assert "bad.jsonl line 6: characters outside the alphabet: '24§'" in out
    assert "bad.jsonl line 7: not valid JSON" in out
    numbers = [int(n) for n in re.findall(r"bad\.jsonl line (\d+): ", out)]
    assert numbers == sorted(numbers)  # problems come in manifest order
    assert "bad.jsonl: 6 utterances" in out and "7 problems" in out


def test_verify_library_counts_hours_and_flags_truncated_audio(tmp_path):
    audio = wav(tmp_path / "long.wav", 2.0)
    data = open(audio, "rb").read()
    with open(tmp_path / "cut.wav", "wb") as handle:  # header still claims 2 s
        handle.write(data[: len(data) // 2])
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"audio_filepath": "long.wav", "text": "one", "duration": 2.0},
                                                  {"audio_filepath": "cut.wav", "text": "two", "duration": 2.0}])
    report = verify_manifest(manifest, progress=False)
    assert report.utterances == 2
    assert report.hours == pytest.approx(4.0 / 3600, rel=0.3)
    assert any("cut.wav" in problem for problem in report.problems), report.problems


def test_verify_reads_the_original_v3_json_format(corpus):
    folder, _, _ = corpus
    (folder / "a.txt").write_text("alpha\n")
    manifest = folder / "v3.json"
    manifest.write_text(json.dumps({"root_path": str(folder), "samples": [
        {"wav_path": "audio/a.wav", "transcript_path": "a.txt"}]}, indent=2))
    report = verify_manifest(str(manifest), progress=False)
    assert (report.utterances, report.problems) == (1, [])


@pytest.mark.parametrize("line, problem", [
    ('{"audio_filepath": 3, "text": "a"}', "expected an object with string 'audio_filepath' and 'text'"),
    ('{"audio_filepath": "a.wav", "text": "a", "duration": true}', "invalid duration True"),
    ('{"audio_filepath": "a.wav", "text": "a", "duration": -1}', "invalid duration -1"),
    ('{"audio_filepath": "a.wav"', "not valid JSON"),
])
def test_reading_and_verifying_a_manifest_parse_its_lines_alike(tmp_path, line, problem):
    """One JSON-lines parser: read_manifest stops and verify_manifest reports with the same words."""
    from deepspeech_pytorch.corpora.verify import verify_manifest
    from deepspeech_pytorch.datasets import ManifestError, read_manifest

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line + "\n")
    with pytest.raises(ManifestError, match="m.jsonl line 1: " + problem.split(" (")[0].replace("(", r"\(")):
        read_manifest(str(manifest))
    report = verify_manifest(str(manifest), progress=False)
    assert any(f"m.jsonl line 1: {problem}" in p for p in report.problems), report.problems
