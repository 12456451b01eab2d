import contextlib
import dataclasses
import importlib.util
import io
import os
import pickle
import subprocess
import sys

import pytest
import torch

from deepspeech_pytorch.checkpoint import (CheckpointError, average_checkpoints, build_model, check_training_state,
                                           load_checkpoint, model_state, restore_rng_state, rng_state, save_checkpoint)
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import presets
from deepspeech_pytorch.models.deepspeech2 import DeepSpeech2

PRESETS = presets()


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_checkpoint(path, seed=0, config=PRESETS["ds2_tiny"], batches=0):
    """A small model's checkpoint; `batches` training-mode passes move its BatchNorm statistics and counters."""
    torch.manual_seed(seed)
    model = DeepSpeech2(config, 161, 29)
    for _ in range(batches):
        model(torch.randn(2, 161, 40), torch.tensor([40, 30]))
    save_checkpoint(str(path), {**model_state(model, config, FeatureConfig(), Alphabet()), "epoch": 3,
                                "config": {"seed": seed}})
    return model.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.pt")
    state = load_checkpoint(str(tmp_path / "m.pt"))
    rebuilt, alphabet, features = build_model(state)
    rebuilt.eval()
    features_in = torch.randn(2, 161, 80)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(features_in, torch.tensor([80, 50]))[0], model(features_in, torch.tensor([80, 50]))[0])
    assert state["epoch"] == 3 and alphabet == Alphabet() and features == FeatureConfig()
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_code_in_a_pickle_is_never_run(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"model_state": Exploit(), "model_config": {}}, handle, protocol=2)
    with pytest.raises(CheckpointError, match="evil.pt: not a loadable checkpoint"):
        load_checkpoint(str(tmp_path / "evil.pt"))
    assert not marker.exists()


def test_corrupt_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(str(tmp_path / "none.pt"))
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a deepspeech_pytorch checkpoint"):
        load_checkpoint(str(tmp_path / "other.pt"))


def test_weights_that_do_not_match_the_config(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    state = load_checkpoint(str(tmp_path / "m.pt"))
    state["model_config"]["hidden_size"] = 64
    with pytest.raises(CheckpointError, match="do not match"):
        build_model(state, "m.pt")


def test_rng_state_round_trip():
    state = rng_state()
    first = torch.rand(3)
    restore_rng_state(state)
    torch.testing.assert_close(torch.rand(3), first)


def test_average_of_checkpoints_is_the_mean_weight_and_loads(tmp_path):
    first = tiny_checkpoint(tmp_path / "a.pt", 1, batches=1).state_dict()
    last = tiny_checkpoint(tmp_path / "b.pt", 2, batches=3).state_dict()
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "average_checkpoints.py"),
                             str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--output", str(tmp_path / "avg.pt")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(str(tmp_path / "avg.pt"))
    floats = [name for name, value in last.items() if value.is_floating_point()]
    assert floats and any(not torch.equal(first[name], last[name]) for name in floats)
    for name in floats:
        torch.testing.assert_close(state["model_state"][name], (first[name] + last[name]) / 2)
    counters = [name for name in last if name.endswith("num_batches_tracked")]
    assert counters and all(int(state["model_state"][name]) == 3 for name in counters)
    assert state["config"] == {"seed": 2} and "optimizer" not in state and "epoch" not in state
    assert state["averaged_from"] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    model, _, _ = build_model(state)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(torch.randn(1, 161, 40), torch.tensor([40]))[0]).all()


def test_averaging_refuses_checkpoints_of_different_models(tmp_path):
    tiny_checkpoint(tmp_path / "a.pt", 1)
    wider = dataclasses.replace(PRESETS["ds2_tiny"], hidden_size=PRESETS["ds2_tiny"].hidden_size * 2)
    tiny_checkpoint(tmp_path / "wide.pt", 2, config=wider)
    with pytest.raises(CheckpointError, match="a.pt: its model_config differs from .*wide.pt"):
        average_checkpoints([str(tmp_path / "a.pt"), str(tmp_path / "wide.pt")])
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([])
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "average_checkpoints.py"),
                             str(tmp_path / "a.pt"), str(tmp_path / "missing.pt"), "--output", str(tmp_path / "o.pt")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "missing.pt: checkpoint not found" in result.stderr
    assert not (tmp_path / "o.pt").exists()


# ---- files from elsewhere: one line each saying what is wrong and how to convert --------------------

def _one_line_without_ansi(error):
    message = str(error)
    assert "\n" not in message and "\x1b" not in message, message
    return message


def _same_outputs(model, other):
    features = torch.randn(2, 161, 60)
    lengths = torch.tensor([60, 45])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(features, lengths)[0], other.eval()(features, lengths)[0])


def convert(*args):
    """tools/convert_checkpoint.py run in this process: (exit status, stdout, stderr)."""
    script = os.path.join(ROOT, "tools", "convert_checkpoint.py")
    spec = importlib.util.spec_from_file_location("convert_checkpoint", script)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = tool.main([str(arg) for arg in args])
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def test_checkpoint_without_labels_says_so_and_converts_with_them(tmp_path):
    """shared/cases/checkpoint-malformed: no 'labels' was a KeyError traceback."""
    tiny_checkpoint(tmp_path / "m.pt")
    state = load_checkpoint(str(tmp_path / "m.pt"))
    state.pop("labels")
    torch.save(state, tmp_path / "no_labels.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(str(tmp_path / "no_labels.pt"))
    assert _one_line_without_ansi(caught.value) == (
        f"{tmp_path / 'no_labels.pt'}: not a deepspeech_pytorch checkpoint (no labels, the model's alphabet); add them: "
        f"python tools/convert_checkpoint.py {tmp_path / 'no_labels.pt'} --labels labels.json --output fixed.pt")
    Alphabet().to_json(str(tmp_path / "labels.json"))
    result = convert(tmp_path / "no_labels.pt", "--labels", tmp_path / "labels.json", "--output", tmp_path / "fixed.pt")
    assert result.returncode == 0, result.stderr
    fixed = load_checkpoint(str(tmp_path / "fixed.pt"))
    assert fixed["labels"] == list(Alphabet().labels)
    _same_outputs(build_model(fixed)[0], build_model({**state, "labels": fixed["labels"]})[0])


class Marked(DeepSpeech2):
    """A model class whose unpickling leaves a mark: loading a pickled model must never run it."""
    marker = None

    def __setstate__(self, state):
        open(Marked.marker, "w").close()
        super().__setstate__(state)


def test_whole_pickled_model_is_refused_unrun_and_converts_to_the_same_model(tmp_path):
    """shared/cases/checkpoint-malformed: torch.save(model) gave raw ANSI codes and 'two options' that do not apply."""
    model = tiny_checkpoint(tmp_path / "m.pt")
    Marked.marker = str(tmp_path / "ran")
    marked = Marked(PRESETS["ds2_tiny"], 161, 29)
    marked.load_state_dict(model.state_dict())
    torch.save(marked, tmp_path / "whole_model.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(str(tmp_path / "whole_model.pt"))
    message = _one_line_without_ansi(caught.value)
    assert message.startswith(f"{tmp_path / 'whole_model.pt'}: holds a whole pickled model object (")
    assert "Marked), not a checkpoint of weights" in message and "two options" not in message
    assert f"convert it: python tools/convert_checkpoint.py {tmp_path / 'whole_model.pt'} --output" in message
    result = convert(tmp_path / "whole_model.pt", "--output", tmp_path / "converted.pt")
    assert result.returncode == 0, result.stderr
    assert "DeepSpeech2 2 x bi-gru 128, linear features, 29 labels" in result.stdout
    assert not (tmp_path / "ran").exists()
    converted, alphabet, features = build_model(load_checkpoint(str(tmp_path / "converted.pt")))
    assert alphabet == Alphabet() and features == FeatureConfig()
    _same_outputs(converted, model)


def test_plain_state_dict_is_named_and_converts(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.pt")
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "weights.pt")  # saved from DDP
    with pytest.raises(CheckpointError, match=r"not a deepspeech_pytorch checkpoint: it holds only weights \(a "
                                              r"state_dict of \d+ tensors such as 'module.conv.layers.0.weight'"):
        load_checkpoint(str(tmp_path / "weights.pt"))
    assert convert(tmp_path / "weights.pt", "--output", tmp_path / "c.pt").returncode == 0
    _same_outputs(build_model(load_checkpoint(str(tmp_path / "c.pt")))[0], model)


def _original_names(weights):
    """Our DeepSpeech2's weight names -> the original deepspeech.pytorch's."""
    renamed = {}
    for name, value in weights.items():
        name = name.replace("conv.layers.", "conv.seq_module.").replace("head.module.", "fc.0.module.")
        if ".rnn_reverse." in name:  # one backward RNN module -> the bidirectional nn.RNN's *_reverse weights
            name = name.replace(".rnn_reverse.", ".rnn.") + "_reverse"
        renamed[name] = value
    return renamed


@pytest.fixture
def original_port_classes(monkeypatch):
    """The classes the original deepspeech.pytorch pickles into its Lightning checkpoints (its enums and config
    dataclasses), importable under its module names while a checkpoint is written; this project has none of them."""
    import enum
    import types
    from torch import nn

    enums = types.ModuleType("deepspeech_pytorch.enums")
    train_config = types.ModuleType("deepspeech_pytorch.configs.train_config")

    class RNNType(enum.Enum):
        lstm = nn.LSTM
        rnn = nn.RNN
        gru = nn.GRU

    class SpectrogramWindow(enum.Enum):
        hamming = "hamming"
        hann = "hann"

    @dataclasses.dataclass
    class SpectConfig:
        sample_rate: int = 16000
        window_size: float = .02
        window_stride: float = .01
        window: SpectrogramWindow = SpectrogramWindow.hamming

    @dataclasses.dataclass
    class BiDirectionalConfig:
        rnn_type: RNNType = RNNType.lstm
        hidden_size: int = 1024
        hidden_layers: int = 5

    for module, classes in ((enums, (RNNType, SpectrogramWindow)), (train_config, (SpectConfig, BiDirectionalConfig))):
        for cls in classes:
            cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
            setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return types.SimpleNamespace(RNNType=RNNType, SpectConfig=SpectConfig, BiDirectionalConfig=BiDirectionalConfig)


def test_lightning_checkpoint_of_the_original_port_is_named_and_converts(tmp_path, original_port_classes):
    from omegaconf import OmegaConf

    model = tiny_checkpoint(tmp_path / "m.pt")
    port = original_port_classes
    torch.save({
        "epoch": 12, "global_step": 3000, "pytorch-lightning_version": "1.2.4",
        "state_dict": _original_names(model.state_dict()),
        "hyper_parameters": {
            "labels": ["_", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", " "],
            "model_cfg": OmegaConf.structured(port.BiDirectionalConfig(port.RNNType.gru, 128, 2)),
            "precision": 32,
            "spect_cfg": OmegaConf.structured(port.SpectConfig()),
        },
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1.5e-4, "params": [0]}]}], "lr_schedulers": [],
    }, tmp_path / "librispeech.ckpt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(str(tmp_path / "librispeech.ckpt"))
    assert _one_line_without_ansi(caught.value).startswith(
        f"{tmp_path / 'librispeech.ckpt'}: a PyTorch Lightning checkpoint (of the original deepspeech.pytorch?), not "
        f"this project's format; convert it: python tools/convert_checkpoint.py {tmp_path / 'librispeech.ckpt'}")
    result = convert(tmp_path / "librispeech.ckpt", "--output", tmp_path / "converted.pt")
    assert result.returncode == 0, result.stderr
    state = load_checkpoint(str(tmp_path / "converted.pt"))
    converted, alphabet, features = build_model(state)
    assert alphabet == Alphabet() and features == FeatureConfig(kind="linear", window="hamming")
    _same_outputs(converted, model)


def test_older_checkpoint_of_the_original_port_converts(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.pt")
    torch.save({"version": "0.0.1", "hidden_size": 128, "hidden_layers": 2, "rnn_type": "gru", "bidirectional": True,
                "audio_conf": {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01, "window": "hamming"},
                "labels": list(Alphabet().labels), "state_dict": _original_names(model.state_dict())},
               tmp_path / "an4_pretrained.pth")
    with pytest.raises(CheckpointError, match="a checkpoint of the original deepspeech.pytorch .* convert it"):
        load_checkpoint(str(tmp_path / "an4_pretrained.pth"))
    assert convert(tmp_path / "an4_pretrained.pth", "--output", tmp_path / "c.pt").returncode == 0
    _same_outputs(build_model(load_checkpoint(str(tmp_path / "c.pt")))[0], model)


def test_weight_mismatches_name_the_weights(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    state = load_checkpoint(str(tmp_path / "m.pt"))
    deeper = {**state, "model_config": {**state["model_config"], "hidden_layers": 3}}
    with pytest.raises(CheckpointError) as caught:
        build_model(deeper, "m.pt")
    message = _one_line_without_ansi(caught.value)
    assert message.startswith("m.pt: weights do not match the stored model config (rnn_type=gru, hidden_size=128, "
                              "hidden_layers=3") and "missing rnns.2." in message and "more)" in message
    wider = {**state, "model_config": {**state["model_config"], "hidden_size": 64}}
    with pytest.raises(CheckpointError, match=r"wrong shape: .*rnns.0.rnn.weight_ih_l0 \(384, \d+\) where the config "
                                              r"needs \(192, \d+\)"):
        build_model(wider, "m.pt")
    more_labels = {**state, "labels": [*state["labels"], "-"]}
    with pytest.raises(CheckpointError, match="its labels have 30 entries but its output layer has 29 classes"):
        build_model(more_labels, "m.pt")
    renamed = {**state, "model_state": _original_names(state["model_state"])}
    with pytest.raises(CheckpointError, match="the original deepspeech.pytorch's weight names; convert it"):
        build_model(renamed, "m.pt")


@pytest.mark.parametrize("change,words", [
    (lambda s: s["model_config"].update(hidden_size="128"), "model_config.hidden_size must be int, not str '128'"),
    (lambda s: s["model_config"].update(rnn_type="transformer"), "model_config.rnn_type='transformer': choose from gru, lstm, rnn"),
    (lambda s: s["model_config"].update(bidirectional=1), "model_config.bidirectional must be bool"),
    (lambda s: s["model_config"].update(dropout=0.1), "unknown model_config fields ['dropout']"),
    (lambda s: s.update(model_config=[128, 2]), "model_config must be a dict"),
    (lambda s: s["feature_config"].update(window="kaiser"), "feature_config.window must be one of"),
    (lambda s: s["feature_config"].update(sample_rate=0), "feature_config.sample_rate must be positive"),
    (lambda s: s.update(labels="_'abcdefghijklmnopqrstuvwxyz "), "labels must be a list of single characters"),
    (lambda s: s.update(labels=["a", "b"]), "invalid labels (the alphabet must start with the blank"),
    (lambda s: s.update(name=7), "name must be a string"),
    (lambda s: s.update(format_version="1"), "format_version must be an integer"),
    (lambda s: s.update(format_version=99), "written by a newer version (format 99)"),
    (lambda s: s.update(model_state=[]), "model_state must be a non-empty dict"),
    (lambda s: s["model_state"].update({"head.module.1.weight": "weights"}), "model_state entries that are not "
                                                                             "tensors: head.module.1.weight"),
    (lambda s: s["model_state"]["head.module.1.weight"].fill_(float("nan")), "weights with NaN or infinite values: "
                                                                             "head.module.1.weight"),
    (lambda s: s.pop("model_config"), "not a deepspeech_pytorch checkpoint (no model_config, the model's shape)"),
])
def test_every_key_inference_reads_is_checked_with_its_type(tmp_path, change, words):
    tiny_checkpoint(tmp_path / "m.pt")
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    change(state)
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(str(tmp_path / "bad.pt"))
    assert str(caught.value).startswith(f"{tmp_path / 'bad.pt'}: ") and words in _one_line_without_ansi(caught.value)


def test_truncated_empty_and_wrong_files_say_what_they_are(tmp_path):
    tiny_checkpoint(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "lfs.pt").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:1234\nsize 48000000\n")
    (tmp_path / "page.pt").write_text("<!DOCTYPE html><html><body>Rate limit exceeded</body></html>")
    cases = {"cut.pt": "truncated or corrupt", "empty.pt": "empty file (0 bytes)", "lfs.pt": "a Git LFS pointer",
             "page.pt": "an HTML page"}
    for name, words in cases.items():
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(str(tmp_path / name))
        assert str(caught.value).startswith(f"{tmp_path / name}: ") and words in _one_line_without_ansi(caught.value)
    (tmp_path / "m.ts.pt").write_bytes(b"")  # TorchScript exports are not listed: they would be refused next
    (tmp_path / "m.int8.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is a folder, not a model file; give the model file in it; it holds "
                                              r"cut.pt, empty.pt, lfs.pt, m.int8.onnx, m.pt$"):
        load_checkpoint(str(tmp_path))


def test_a_torchscript_export_is_told_apart_before_torch_load_warns(tmp_path, capfd):
    """torch.load printed two lines of UserWarning about a TorchScript zip before our one-line error."""
    traced = torch.jit.trace(torch.nn.Linear(3, 2).eval(), torch.zeros(1, 3))
    path = str(tmp_path / "model.ts.pt")
    torch.jit.save(traced, path)
    capfd.readouterr()
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: a TorchScript archive") and "torch.jit.load" in message and "\n" not in message
    assert "UserWarning" not in capfd.readouterr().err


def test_cli_reports_a_pickled_model_in_one_line(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.pt")
    torch.save(model, tmp_path / "whole_model.pt")
    (tmp_path / "a.wav").write_bytes(b"")
    result = subprocess.run([sys.executable, os.path.join(ROOT, "transcribe.py"), f"model_path={tmp_path}/whole_model.pt",
                             f"audio_path={tmp_path}/a.wav"], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'whole_model.pt'}: holds a whole pickled model object")
    assert len(result.stderr.strip().splitlines()) == 1 and "\x1b" not in result.stderr


def test_an_inference_checkpoint_cannot_be_resumed_and_says_how_to_start_from_it(tmp_path):
    model = tiny_checkpoint(tmp_path / "m.pt")
    state = load_checkpoint(str(tmp_path / "m.pt"))
    with pytest.raises(CheckpointError, match=r"m.pt: cannot resume training from it: it has no optimizer_state, "
                                              r"batch_in_epoch, step .*checkpoint.finetune_from="):
        check_training_state(state, "m.pt")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    training = {**state, "optimizer_state": optimizer.state_dict(), "batch_in_epoch": 0, "step": 30}
    check_training_state(training, "m.pt")
    with pytest.raises(CheckpointError, match="m.pt: step .* must be a count, not float 30.0"):
        check_training_state({**training, "step": 30.0}, "m.pt")


def test_converter_faults_are_one_line_and_lose_nothing(tmp_path):
    """tools/convert_checkpoint.py printed tracebacks for empty and truncated files, wrote its temporary file
    over a folder named by --output, could overwrite the file it converts, and turned a newer format into format 2."""
    tiny_checkpoint(tmp_path / "m.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "m.pt").read_bytes()[:4000])
    state = load_checkpoint(str(tmp_path / "m.pt"))
    torch.save({**state, "format_version": 99}, tmp_path / "future.pt")
    (tmp_path / "folder").mkdir()
    before = (tmp_path / "future.pt").read_bytes()
    for args, message in [
        (["empty.pt", "--output", "o.pt"], "error: empty.pt: empty file (0 bytes): an interrupted download or copy?"),
        (["cut.pt", "--output", "o.pt"], "error: cut.pt: truncated or corrupt (an incomplete zip archive): "
                                         "an interrupted download or copy?"),
        (["m.pt", "--output", "folder"], "error: --output folder is a folder; give the file to write, e.g. "
                                         f"{os.path.join('folder', 'converted.pt')}"),
        (["future.pt", "--output", "future.pt"], "error: --output future.pt is the file being converted; write "
                                                 "the result to a new file"),
        (["future.pt", "--output", "o.pt"], "error: future.pt: written by a newer version (format 99); upgrade "
                                            "the library instead of converting it"),
    ]:
        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            result = convert(*args)
        finally:
            os.chdir(cwd)
        assert result.returncode == 1 and result.stderr.strip() == message, (args, result.stderr)
    assert not (tmp_path / "o.pt").exists() and os.listdir(tmp_path / "folder") == []
    assert (tmp_path / "future.pt").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["cut.pt", "empty.pt", "folder", "future.pt", "m.pt"]  # no temporary left


# ---- int8-stored weights (format 3) ----------------------------------------------------------------------

def test_int8_storage_loads_back_close_to_the_weights_at_about_a_quarter_of_fp32(tmp_path):
    from deepspeech_pytorch.bundle import inference_state

    model = tiny_checkpoint(tmp_path / "m.pt", batches=2)
    state = load_checkpoint(str(tmp_path / "m.pt"))
    save_checkpoint(str(tmp_path / "q.pt"), inference_state(state, "q", int8=True))
    save_checkpoint(str(tmp_path / "f.pt"), inference_state(state, "f", half=False))
    stored = torch.load(str(tmp_path / "q.pt"), weights_only=True)
    assert stored["format_version"] == 3
    assert stored["model_state"]["rnns.0.rnn.weight_ih_l0"].dtype == torch.int8
    assert stored["model_state"]["rnns.1.batch_norm.module.weight"].dtype == torch.float16
    assert os.path.getsize(tmp_path / "q.pt") < 0.35 * os.path.getsize(tmp_path / "f.pt")
    loaded = load_checkpoint(str(tmp_path / "q.pt"))
    assert "weight_scales" not in loaded
    for name, value in model.state_dict().items():
        restored = loaded["model_state"][name]
        if value.is_floating_point() and value.dim() >= 2:
            assert restored.dtype == torch.float32
            step = value.abs().reshape(value.shape[0], -1).amax(dim=1) / 127
            assert ((restored - value).abs().reshape(value.shape[0], -1) <= step[:, None] / 2 + 1e-6).all(), name
    rebuilt, _, _ = build_model(loaded)
    features, lengths = torch.randn(2, 161, 60), torch.tensor([60, 45])
    with torch.no_grad():
        exact, _ = model(features, lengths)
        approximate, _ = rebuilt.eval()(features, lengths)
    assert (approximate.argmax(-1) == exact.argmax(-1)).float().mean() > 0.9
    assert not torch.equal(approximate, exact)  # really quantized


@pytest.mark.parametrize("spoil, message", [
    (lambda s: s.pop("weight_scales"), "int8 weights without their scales"),
    (lambda s: s["weight_scales"].pop("head.module.1.weight"), "int8 weights without their scales"),
    (lambda s: s["weight_scales"].update({"head.module.1.weight": torch.ones(3)}), "must be 29 finite numbers"),
    (lambda s: s["weight_scales"].update({"head.module.0.weight": torch.ones(3)}), "not an int8 weight"),
    (lambda s: s.update(weight_scales=[1, 2]), "must be a dict"),
])
def test_int8_storage_that_does_not_add_up_is_refused_in_one_line(tmp_path, spoil, message):
    from deepspeech_pytorch.bundle import inference_state

    tiny_checkpoint(tmp_path / "m.pt")
    state = inference_state(load_checkpoint(str(tmp_path / "m.pt")), "q", int8=True)
    spoil(state)
    torch.save({**state, "format_version": 3}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=message) as caught:
        load_checkpoint(str(tmp_path / "bad.pt"))
    assert str(tmp_path / "bad.pt") in str(caught.value) and "\n" not in str(caught.value)


def test_a_saved_checkpoint_has_an_ordinary_files_permissions(tmp_path):
    """Written through a private temporary file, it still ends up as the umask says (not 0600): a model folder
    installed for every user must be readable by them."""
    old = os.umask(0o022)
    try:
        tiny_checkpoint(tmp_path / "m.pt")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "m.pt").st_mode & 0o777 == 0o644
