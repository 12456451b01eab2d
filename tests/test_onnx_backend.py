"""The onnxruntime backend: the bundled model exported to ONNX transcribes as the torch model does, through
the same features (numpy twins), VAD and decoders, and the whole path imports no torch."""

import glob
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from deepspeech_pytorch.inference import PRETRAINED_DIR, Transcriber, load_model, read_lm_settings  # noqa: E402
from deepspeech_pytorch.onnx_backend import ModelFileError  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = sorted(glob.glob(os.path.join(PRETRAINED_DIR, "samples", "*.wav")))
LM_FILES = ("default.lm.bin", "default.lexicon.txt")


def with_lm(folder, stem):
    """The bundled LM beside a model file named <stem>.*: its settings as <stem>.lm.json, files linked."""
    for name in LM_FILES:
        if not os.path.exists(os.path.join(folder, name)):
            os.symlink(os.path.join(PRETRAINED_DIR, name), os.path.join(folder, name))
    shutil.copy(os.path.join(PRETRAINED_DIR, "default.lm.json"), os.path.join(folder, stem + ".lm.json"))


@pytest.fixture(scope="module")
def bundled():
    return load_model()


@pytest.fixture(scope="module")
def exported(bundled, tmp_path_factory):
    """The bundled model as ONNX (fp32), with the bundled LM's settings beside it."""
    from deepspeech_pytorch.export import export_onnx

    folder = tmp_path_factory.mktemp("onnx")
    path = str(folder / "bundled.onnx")
    export_onnx(bundled, path, SAMPLES[:1])
    with_lm(str(folder), "bundled")
    return path


@pytest.fixture(scope="module")
def quantized(exported, tmp_path_factory):
    """An int8 twin made by ONNX Runtime's dynamic quantizer (int8 weights, no fp32 initialisers left for them)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    path = os.path.join(os.path.dirname(exported), "bundled.int8.onnx")
    quantize_dynamic(exported, path, weight_type=QuantType.QInt8)
    return path


def test_the_exported_model_describes_itself_and_runs_on_onnxruntime(exported, bundled):
    loaded = load_model(exported)
    assert loaded.backend == "onnxruntime" and bundled.backend == "torch"
    assert loaded.alphabet == bundled.alphabet and loaded.features == bundled.features
    assert loaded.model.time_stride == bundled.model.time_stride and loaded.name == bundled.name
    assert loaded.info["architecture"] == bundled.info["architecture"] and loaded.info["backend"] == "onnxruntime"
    assert loaded.language_model is not None and loaded.language_model.alpha == bundled.language_model.alpha
    assert loaded.lm_beam_size == bundled.lm_beam_size


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_same_transcripts_and_word_times_as_the_torch_backend(exported, bundled, decoder):
    torch_results = Transcriber(bundled, decoder=decoder).transcribe_many(SAMPLES)
    onnx_results = Transcriber(load_model(exported), decoder=decoder).transcribe_many(SAMPLES)
    for ours, theirs in zip(onnx_results, torch_results):
        assert ours.text == theirs.text != ""
        assert ours.duration == theirs.duration
        assert [w.word for w in ours.words] == [w.word for w in theirs.words]
        assert all(abs(a.start - b.start) < 1e-6 and abs(a.end - b.end) < 1e-6 for a, b in zip(ours.words, theirs.words))


def test_log_probabilities_match_the_torch_model(exported, bundled):
    import torch

    from deepspeech_pytorch.audio import load_audio

    samples = [load_audio(path) for path in SAMPLES]
    lengths = np.array([len(s) for s in samples])
    padded = np.zeros((len(samples), lengths.max()), np.float32)
    for row, s in enumerate(samples):
        padded[row, : len(s)] = s
    torch_side, onnx_side = Transcriber(bundled), Transcriber(load_model(exported))
    expected, expected_lengths = torch_side.log_probs(*torch_side._features(padded, lengths))
    got, got_lengths = onnx_side.log_probs(*onnx_side._features(padded, lengths))
    assert isinstance(got, np.ndarray) and np.array_equal(got_lengths, expected_lengths.numpy())
    for row, length in enumerate(got_lengths):
        difference = np.abs(got[row, :length] - expected[row, :length].numpy()).max()
        assert difference < 1e-3, difference
    assert isinstance(expected, torch.Tensor)


def test_an_int8_model_from_onnxruntimes_quantizer_runs_through_the_backend(quantized, bundled):
    from deepspeech_pytorch.metrics import error_counts

    loaded = load_model(quantized)
    assert loaded.backend == "onnxruntime"
    assert loaded.language_model is not None  # bundled.int8.onnx uses bundled.lm.json: the model it came from
    import onnx

    weights = onnx.load(quantized).graph.initializer
    assert any(w.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) for w in weights)  # int8 inside
    reference = [t.text for t in Transcriber(bundled).transcribe_many(SAMPLES)]
    for decoder in ("greedy", "beam"):
        texts = [t.text for t in Transcriber(loaded, decoder=decoder).transcribe_many(SAMPLES)]
        assert all(texts) and error_counts(reference, texts).wer < 0.15, (decoder, texts)


def test_an_lm_settings_file_of_its_own_wins_over_the_source_models(quantized, tmp_path):
    folder = os.path.dirname(quantized)
    own = os.path.join(folder, "bundled.int8.lm.json")
    settings = json.load(open(os.path.join(PRETRAINED_DIR, "default.lm.json")))
    with open(own, "w") as handle:
        json.dump({**settings, "alpha": 0.25}, handle)
    try:
        assert read_lm_settings(quantized)[0].alpha == 0.25
    finally:
        os.remove(own)
    assert read_lm_settings(quantized)[0].alpha == settings["alpha"]


TORCH_FREE_PROBE = """
import sys
from deepspeech_pytorch.inference import Transcriber, load_model
loaded = load_model(sys.argv[1])
texts = [Transcriber(loaded, decoder=d).transcribe(sys.argv[2]).text for d in ("greedy", "beam")]
print(texts[0]); print(texts[1])
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_the_onnxruntime_path_never_imports_torch(exported, bundled, tmp_path):
    """Audio -> VAD -> features -> ONNX model -> greedy and beam + KenLM decoders -> text, torch never loaded;
    and ONNX Runtime's telemetry stays off, so nothing is left in TMPDIR (it writes a .ses file there)."""
    env = {key: value for key, value in os.environ.items() if key != "ORT_DISABLE_TELEMETRY"}
    (tmp_path / "tmp").mkdir()
    result = subprocess.run([sys.executable, "-c", TORCH_FREE_PROBE, exported, SAMPLES[3]], capture_output=True,
                            text=True, cwd=ROOT, env={**env, "TMPDIR": str(tmp_path / "tmp")})
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "tmp") == []
    greedy, beam, modules = result.stdout.splitlines()
    assert modules == "[]"
    transcriber = Transcriber(bundled)
    assert greedy == transcriber.transcribe(SAMPLES[3]).text != ""
    assert beam == Transcriber(bundled, decoder="beam").transcribe(SAMPLES[3]).text


def test_transcribe_py_with_an_onnx_model_imports_no_torch(exported, tmp_path):
    """The command line end to end (-X importtime lists every module imported)."""
    result = subprocess.run([sys.executable, "-X", "importtime", os.path.join(ROOT, "transcribe.py"),
                             f"model_path={exported}", SAMPLES[1], "decoder.type=beam"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout.splitlines()[0])
    assert record["transcript"] and record["model"]["backend"] == "onnxruntime"
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "onnxruntime" in imported and "torch" not in imported


def test_a_backend_that_cannot_run_the_file_is_one_line(exported, tmp_path):
    checkpoint = os.path.join(PRETRAINED_DIR, "default.pt")
    for model, backend, message in ((exported, "torch", "backend=torch runs checkpoints"),
                                    (checkpoint, "onnxruntime", "backend=onnxruntime runs an exported model")):
        result = subprocess.run([sys.executable, os.path.join(ROOT, "transcribe.py"), f"model_path={model}",
                                 SAMPLES[1], f"backend={backend}"], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    with pytest.raises(ValueError, match="backend=torch"):
        load_model(exported, backend="torch")
    assert load_model(exported, backend="onnxruntime").backend == "onnxruntime"


def test_unusable_onnx_files_name_the_file(exported, tmp_path):
    import onnx

    not_onnx = tmp_path / "text.onnx"
    not_onnx.write_text("not a model")
    with pytest.raises(ModelFileError, match="text.onnx: not a usable ONNX model"):
        load_model(str(not_onnx))
    with pytest.raises(ModelFileError, match="missing.onnx: no such model file"):
        load_model(str(tmp_path / "missing.onnx"))
    bare = onnx.load(exported)
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelFileError, match="bare.onnx: its metadata lacks labels, feature_config, time_stride"):
        load_model(str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match="device=cuda"):
        Transcriber(load_model(exported), device="cuda")


def test_the_server_serves_an_onnx_model(exported, bundled):
    """The service transcribes with the exported model as with the checkpoint; a backend that does not match
    the loaded model is refused."""
    from deepspeech_pytorch.audio import load_audio
    from deepspeech_pytorch.configs import ServerConfig
    from deepspeech_pytorch.serving.service import TranscriptionService, check_settings

    samples = [load_audio(path) for path in SAMPLES]
    service = TranscriptionService(ServerConfig(model_path=exported, backend="onnxruntime"), load_model(exported))
    assert service.decoders == ["greedy", "beam"]
    expected = Transcriber(bundled).transcribe_many(samples)
    assert [t.text for t in service._transcribe_batch("greedy", samples)] == [t.text for t in expected]
    with pytest.raises(ValueError, match="backend=torch, but the model"):
        TranscriptionService(ServerConfig(backend="torch"), load_model(exported))
    with pytest.raises(ValueError, match="backend=onnxruntime runs an exported model"):
        check_settings(ServerConfig(model_path=os.path.join(PRETRAINED_DIR, "default.pt"), backend="onnxruntime"))


def test_evaluation_with_an_onnx_model_scores_as_the_checkpoint(exported, bundled, tmp_path):
    """test.py's path: the dataset's torch features through the ONNX model, outputs kept as tensors."""
    from deepspeech_pytorch.evaluation import evaluate_manifest

    manifest = os.path.join(PRETRAINED_DIR, "samples", "samples.jsonl")
    ours = evaluate_manifest(Transcriber(load_model(exported)), manifest, batch_size=2, num_workers=0,
                             outputs_path=str(tmp_path / "outputs.pt"))
    theirs = evaluate_manifest(Transcriber(bundled), manifest, batch_size=2, num_workers=0)
    assert [u["hypothesis"] for u in ours.utterances] == [u["hypothesis"] for u in theirs.utterances]
    assert ours.counts == theirs.counts and os.path.getsize(tmp_path / "outputs.pt") > 0


def test_backend_onnxruntime_takes_a_bundled_models_exported_twin(exported, monkeypatch, tmp_path):
    """load_model(None or a bundled name, backend=onnxruntime) takes <name>.int8.onnx or <name>.onnx from the
    package's pretrained folder, and says so in one line when the installation ships none."""
    from deepspeech_pytorch import inference
    from deepspeech_pytorch.configs import ServerConfig
    from deepspeech_pytorch.serving.service import check_settings

    monkeypatch.setattr(inference, "PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match="ships no exported"):
        load_model(backend="onnxruntime")
    with pytest.raises(ModelFileError, match="ships no exported"):
        check_settings(ServerConfig(backend="onnxruntime"))
    os.symlink(exported, tmp_path / "default.onnx")
    assert load_model(backend="onnxruntime").path == str(tmp_path / "default.onnx")
    assert load_model("default", backend="onnxruntime").backend == "onnxruntime"
    check_settings(ServerConfig(backend="onnxruntime"))


def test_model_info_of_an_onnx_file_without_a_stored_count_counts_its_initializers():
    """The bundled int8 twin was exported before export.py stored the parameter count: model info said
    `parameters: null`. It is now the elements of the graph's initializers, as the onnx package counts them."""
    import math
    import onnx
    from deepspeech_pytorch.inference import PRETRAINED_DIR, load_model
    from deepspeech_pytorch.onnx_backend import initializer_elements

    path = os.path.join(PRETRAINED_DIR, "default.int8.onnx")
    expected = sum(math.prod(tensor.dims) for tensor in onnx.load(path).graph.initializer)
    assert initializer_elements(path) == expected > 11_000_000
    assert load_model(path).info["parameters"] == expected


def test_counting_initializers_of_a_file_that_is_not_onnx_is_one_line(tmp_path):
    from deepspeech_pytorch.onnx_backend import initializer_elements

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x3a\xff\xff\xff\x0f" + b"\x00" * 10)  # graph field claiming more bytes than the file has
    with pytest.raises(ModelFileError, match="model.onnx: cannot count its initializers"):
        initializer_elements(str(bad))
