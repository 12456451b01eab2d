"""Export: ONNX (run in ONNX Runtime), TorchScript and their int8 twins, each checked against the model."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from deepspeech_pytorch.audio import write_audio
from deepspeech_pytorch.checkpoint import model_state, save_checkpoint
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.export import (METADATA_FILE, ExportError, StaticInt8ConvFrontEnd, calibration_features,
                                       check_features, compare, export_all, export_onnx_int8, export_torchscript,
                                       quantize_static_conv)
from deepspeech_pytorch.inference import PRETRAINED_DIR, load_model
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import build_model, preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(PRETRAINED_DIR, "samples", "sample2.wav")  # 3.2 s of an unseen test voice


@pytest.fixture(scope="module")
def bundled():
    return load_model(None)


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
    results = export_all(loaded, str(tmp_path), utterances, formats=["onnx", "torchscript", "torchscript_int8"],
                         static_conv=False, int8_max_cer=1.0)
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
    # the parameter count: model info of the exported file said `parameters: null`
    parameters = sum(p.numel() for p in loaded.model.parameters())
    assert meta["parameters"] == str(parameters)
    assert load_model(results["onnx"]["path"]).info["parameters"] == parameters
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
    bound = subprocess.run([sys.executable, os.path.join(ROOT, "export.py"), "int8_max_cer=2"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert bound.returncode != 0 and bound.stderr.strip() == "error: int8_max_cer=2.0 must be at least 0 and at most 1"


def test_int8_twins_of_the_bundled_model_keep_its_transcripts_at_a_quarter_of_the_size(bundled, tmp_path):
    fp32_bytes = 4 * sum(p.numel() for p in bundled.model.parameters())
    onnx_report = export_onnx_int8(bundled, str(tmp_path / "m.int8.onnx"), [SAMPLE], [SAMPLE])
    torch_report = export_torchscript(bundled, str(tmp_path / "m.int8.ts.pt"), [SAMPLE], int8=True,
                                      calibration_paths=[SAMPLE])
    for report, name in ((onnx_report, "m.int8.onnx"), (torch_report, "m.int8.ts.pt")):
        assert report.transcripts_equal == 1 and report.transcript_cer == 0.0
        assert 0 < report.max_abs_logit_difference < 3.0  # int8 rounding: not zero, not wild
        assert os.path.getsize(tmp_path / name) < 0.3 * fp32_bytes
    # ONNX: int8 convolutions (QDQ), int8 recurrent weights, metadata saying so; any batch and length runs
    proto = onnx.load(str(tmp_path / "m.int8.onnx"))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "GRU"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.name.endswith("_int8")]
    assert len(int8_weights) == 16 and all(t.data_type == onnx.TensorProto.INT8 for t in int8_weights)
    meta = {entry.key: entry.value for entry in proto.metadata_props}
    assert "static int8 convolutions" in meta["quantization"] and json.loads(meta["labels"])[2] == "a"
    session = onnxruntime.InferenceSession(str(tmp_path / "m.int8.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    features, lengths = check_features(bundled, [0.1 * rng.standard_normal(8000).astype(np.float32),
                                                 0.1 * rng.standard_normal(12345).astype(np.float32)])
    logits, out = session.run(None, {"features": features.numpy(), "lengths": lengths.numpy()})
    assert out.tolist() == bundled.model.output_lengths(lengths).tolist() and logits.shape[:2] == (2, out.max())
    # TorchScript: the convolutions run as quantized kernels, the GRUs dynamically quantized
    extra = {METADATA_FILE: ""}
    traced = torch.jit.load(str(tmp_path / "m.int8.ts.pt"), _extra_files=extra)
    code = str(traced.inlined_graph)
    assert "quantized::conv2d" in code and "quantized_gru" in code
    assert "torch static int8 convolutions" in json.loads(extra[METADATA_FILE])["quantization"]


def test_static_int8_convolutions_match_the_fp32_front_end_and_keep_padding_exact(bundled):
    calibration = calibration_features(bundled, [SAMPLE])
    quantized = quantize_static_conv(bundled, calibration)
    assert isinstance(quantized.conv, StaticInt8ConvFrontEnd) and bundled.model.conv is not quantized.conv
    short = calibration[0][0][:, :, :150]
    features = torch.cat([calibration[0][0], torch.nn.functional.pad(short, (0, calibration[0][0].shape[2] - 150))])
    lengths = torch.tensor([calibration[0][0].shape[2], 150])
    with torch.no_grad():
        expected, expected_lengths = bundled.model.conv(features.unsqueeze(1), lengths)
        got, got_lengths = quantized.conv(features.unsqueeze(1), lengths)
    assert torch.equal(got_lengths, expected_lengths)
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) < 0.1 * scale  # within int8 rounding of the activation range
    assert float(got[1, :, :, int(got_lengths[1]):].abs().max()) == 0.0  # padded steps stay zero


def test_int8_export_calibrated_on_silence_is_refused(bundled, tmp_path):
    silence = str(tmp_path / "silence.wav")
    write_audio(silence, np.zeros(16000, np.float32))
    for export in (lambda path: export_onnx_int8(bundled, path, [SAMPLE], [silence]),
                   lambda path: export_torchscript(bundled, path, [SAMPLE], int8=True, calibration_paths=[silence])):
        with pytest.raises(ExportError, match=r"int8 transcripts differ from the model's by CER .* > 2\.00%") as error:
            export(str(tmp_path / "refused.bin"))
        assert "\n" not in str(error.value)
        assert not (tmp_path / "refused.bin").exists()  # a refused file is not left behind


def test_a_model_with_a_property_that_raises_still_exports(tiny, utterances, tmp_path):
    loaded = load_model(tiny)

    class Strict(type(loaded.model)):
        @property
        def latency_frames(self):
            raise ValueError("this model cannot stream")

    loaded.model.__class__ = Strict
    report = export_torchscript(loaded, str(tmp_path / "strict.ts.pt"), utterances[:1])
    assert report.max_abs_logit_difference < 1e-3 and isinstance(loaded.model, Strict)


def test_deepspeech2_properties_never_raise_and_both_directions_export_as_they_are(bundled, tmp_path):
    """latency_frames is None for a bidirectional model (no bounded lookahead), an int for a unidirectional one;
    neither raises, so export traces the model itself (no stand-in copy) and a streaming model exports too."""
    from deepspeech_pytorch.export import _traceable

    assert bundled.model.latency_frames is None and not bundled.model.can_stream
    assert _traceable(bundled.model) is bundled.model
    torch.manual_seed(0)
    features = FeatureConfig(kind="mel", n_mels=40, normalization="running", mean=[-6.0] * 40, std=[3.0] * 40)
    config = dataclasses.replace(preset("ds2_tiny"), bidirectional=False, lookahead_context=3)
    model = build_model(config, features.num_features, len(Alphabet()))
    assert model.can_stream and model.latency_frames == 15 + 2 * 3 and _traceable(model) is model
    path = str(tmp_path / "uni.pt")
    save_checkpoint(path, {**model_state(model, config, features, Alphabet()), "name": "uni"})
    results = export_all(load_model(path), str(tmp_path), [SAMPLE], formats=["onnx", "torchscript"])
    for name in ("onnx", "torchscript"):
        assert results[name]["parity"]["max_abs_logit_difference"] < 1e-3, results[name]
        assert results[name]["parity"]["transcripts_equal"] == 1


def test_exported_bundled_model_keeps_its_language_model(bundled, tmp_path):
    """export.py wrote the model without its LM: beam search with the exported file silently ran without one
    ("an alian menas" where the checkpoint's LM gives "an alien menace")."""
    results = export_all(bundled, str(tmp_path), [SAMPLE], ["onnx"])
    written = sorted(os.path.basename(path) for path in results["language_model"]["paths"])
    name = bundled.name
    assert written == [f"{name}.lexicon.txt", f"{name}.lm.bin", f"{name}.lm.json"]
    settings = json.load(open(tmp_path / f"{name}.lm.json"))
    assert (settings["alpha"], settings["beta"]) == (bundled.language_model.alpha, bundled.language_model.beta)
    exported = load_model(str(tmp_path / f"{name}.onnx"))
    assert exported.language_model is not None and exported.lm_beam_size == bundled.lm_beam_size
    from deepspeech_pytorch.inference import Transcriber

    same = [Transcriber(model, decoder="beam").transcribe(SAMPLE).text for model in (bundled, exported)]
    assert same[0] == same[1] and same[0]
