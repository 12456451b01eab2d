"""Export: ONNX (run in ONNX Runtime), TorchScript and its int8 twin, each checked against the model."""

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.export import METADATA_FILE, ExportError, check_features, compare, export_all
from deepspeech_pytorch.inference import load_model
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import build_model, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    features = FeatureConfig(kind="mel", n_mels=40)
    model = build_model(preset("ds2_tiny"), features.num_features, len(Alphabet()))
    path = str(tmp_path_factory.mktemp("tiny") / "tiny.pt")
    save_checkpoint(path, {**model_state(model, preset("ds2_tiny"), features, Alphabet()), "name": "tiny"})
    return path


@pytest.fixture(scope="module")
def utterances(speech_corpus):
    folder = os.path.dirname(speech_corpus)
    return [os.path.join(folder, json.loads(line)["audio_filepath"]) for line in open(speech_corpus)][:3]


def test_every_format_reproduces_the_model_and_describes_itself(tiny, utterances, tmp_path):
    loaded = load_model(tiny)
    results = export_all(loaded, str(tmp_path), utterances)
    assert set(results) == {"onnx", "torchscript", "torchscript_int8"}
    for name in ("onnx", "torchscript"):
        parity = results[name]["parity"]
        assert parity["max_abs_logit_difference"] < 1e-3 and parity["transcripts_equal"] == 3
    assert results["torchscript_int8"]["bytes"] < 0.6 * results["torchscript"]["bytes"]
    # the ONNX file says what a runtime needs, and runs with another batch size and length than traced
    proto = onnx.load(results["onnx"]["path"])
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(meta["labels"]) == list(Alphabet().labels) and meta["time_stride"] == "2"
    assert json.loads(meta["feature_config"])["n_mels"] == 40 and meta["architecture"] == "deepspeech2"
    session = onnxruntime.InferenceSession(results["onnx"]["path"], providers=["CPUExecutionProvider"])
    features, lengths = check_features(loaded, [np.zeros(8000, np.float32), 0.1 * np.ones(12345, np.float32)])
    logits, out = session.run(None, {"features": features.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected, expected_lengths = loaded.model(features, lengths)
    np.testing.assert_allclose(logits, expected.numpy(), atol=1e-3)
    assert out.tolist() == expected_lengths.tolist()
    extra = {METADATA_FILE: ""}
    torch.jit.load(results["torchscript"]["path"], _extra_files=extra)
    assert json.loads(extra[METADATA_FILE])["model_name"] == "tiny"


def test_an_export_that_does_not_match_is_refused(tiny, utterances, tmp_path):
    loaded = load_model(tiny)
    features, lengths = check_features(loaded, [np.random.default_rng(0).standard_normal(16000).astype(np.float32)])

    def broken(x, n):
        logits, out = loaded.model(x, n)
        return logits + 0.5, out

    with pytest.raises(ExportError, match="does not reproduce the model"):
        compare(loaded, broken, features, lengths, 1e-3, "broken.onnx")
    with pytest.raises(ExportError, match="no audio to check"):
        export_all(loaded, str(tmp_path / "unused"), [])
    assert not (tmp_path / "unused").exists()


def test_export_script_writes_the_files_and_a_summary(tiny, utterances, tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), f"model_path={tiny}", "output_dir=out",
                             "formats=[onnx]", f"check_audio=[{utterances[0]}]"], cwd=tmp_path, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert os.path.isfile(tmp_path / summary["onnx"]["path"]) and summary["onnx"]["parity"]["transcripts_equal"] == 1
    wrong = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "formats=[tflite]"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert wrong.returncode != 0 and wrong.stderr.startswith("error: formats[0]='tflite': choose from onnx")
