"""benchmarks/streaming_wer.py run as a user runs it (a subprocess, real audio): its offline row is test.py's
score, utterance-mode streaming stays close to it, a unidirectional checkpoint streams truly, errors are one line."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
from deepspeech_pytorch.datasets import read_manifest
from deepspeech_pytorch.evaluation import evaluate_manifest
from deepspeech_pytorch.inference import PRETRAINED_DIR, Transcriber, load_model
from deepspeech_pytorch.models import build_model, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "streaming_wer.py")
SAMPLES = os.path.join(PRETRAINED_DIR, "samples", "samples.jsonl")


def run_script(*args, cwd=None):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def bundled_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("swer") / "out.json"
    result = run_script("--split", f"samples={SAMPLES}", "--json", str(path))
    assert result.returncode == 0, result.stderr
    return result, path


def test_offline_row_is_what_test_py_reports_and_utterance_mode_stays_close(bundled_run):
    result, path = bundled_run
    output = last_json(result.stdout)
    with open(path) as handle:
        assert json.load(handle) == output
    assert output["mode"] == "utterance"
    split = output["splits"]["samples"]
    assert split["clips"] == 4
    expected = evaluate_manifest(Transcriber(load_model(), "greedy"), SAMPLES, progress=False).counts
    offline = split["offline"]
    assert [offline["word_edits"], offline["reference_words"], offline["char_edits"], offline["reference_chars"]] \
        == expected.as_list()
    assert offline["wer"] == pytest.approx(expected.wer) and offline["reference_words"] == 58
    streaming = split["streaming"]
    assert streaming["reference_words"] == offline["reference_words"]  # the same references, normalised alike
    assert abs(streaming["wer"] - offline["wer"]) <= 0.05 and abs(streaming["cer"] - offline["cer"]) <= 0.03
    assert split["default"] == offline  # the model is the default model
    assert split["ratio"] == pytest.approx(streaming["wer"] / split["default"]["wer"])
    table = [line for line in result.stdout.splitlines() if line.startswith("| samples |")]
    assert len(table) == 1 and f"| {100 * offline['wer']:.2f}% |" in table[0]


@pytest.fixture(scope="module")
def random_stream_checkpoint(tmp_path_factory):
    """A random-weight ds2_stream (unidirectional, lookahead) over running-normalised features, as trained."""
    bundled = load_model()
    count = bundled.features.num_features
    features = dataclasses.replace(bundled.features, normalization="running", mean=[-6.0] * count, std=[3.0] * count)
    torch.manual_seed(0)
    config = preset("ds2_stream")
    model = build_model(config, count, len(bundled.alphabet)).eval()
    assert model.can_stream
    path = str(tmp_path_factory.mktemp("stream") / "random_stream.pt")
    save_checkpoint(path, {**model_state(model, config, features, bundled.alphabet), "name": "random-stream"})
    return path


def test_a_unidirectional_checkpoint_streams_truly_and_max_clips_takes_the_first(random_stream_checkpoint, tmp_path):
    result = run_script("--model", random_stream_checkpoint, "--split", f"first={SAMPLES}", "--max-clips", "2",
                        "--no-default", "--chunk-seconds", "0.16", "--keep-clips", cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    output = last_json(result.stdout)
    assert output["mode"] == "streaming" and output["chunk_seconds"] == 0.16
    split = output["splits"]["first"]
    first_two = read_manifest(SAMPLES)[:2]
    assert split["clips"] == 2 and [row["audio_filepath"] for row in split["per_clip"]] == [e.audio_path for e in first_two]
    assert split["offline"]["reference_words"] == split["streaming"]["reference_words"] \
        == sum(len(e.text.split()) for e in first_two)
    for row in ("offline", "streaming"):
        assert split[row]["wer"] == split[row]["word_edits"] / split[row]["reference_words"] and split[row]["wer"] > 0
    assert "default" not in split and "ratio" not in split
    assert "default WER" not in result.stdout


def test_a_missing_manifest_is_one_line(tmp_path):
    missing = str(tmp_path / "nope.jsonl")
    result = run_script("--split", f"gone={missing}")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip() == f"error: manifest not found: {missing}"
    result = run_script("--split", SAMPLES)
    assert result.returncode == 2 and result.stderr.startswith("error: --split") and len(result.stderr.splitlines()) == 1
