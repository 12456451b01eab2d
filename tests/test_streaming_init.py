"""A streaming model started from a bidirectional one: `unidirectional_from` and tools/streaming_init.py."""

import json
import subprocess
import sys

import pytest
import torch

from deepspeech_pytorch.checkpoint import load_checkpoint, model_state, save_checkpoint
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.inference import load_model
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import build_model, model_config
from deepspeech_pytorch.models.deepspeech2 import unidirectional_from
from deepspeech_pytorch.streaming import StreamingTranscriber

TOOL = "tools/streaming_init.py"


def bidirectional(seed=0, features=64):
    torch.manual_seed(seed)
    config = model_config({"architecture": "deepspeech2", "rnn_type": "gru", "hidden_size": 32, "hidden_layers": 3,
                           "bidirectional": True, "conv_channels": 4})
    model = build_model(config, features, 29)
    for module in model.modules():
        if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_the_streaming_model_runs_the_forward_direction_with_an_identity_lookahead():
    """With the backward RNNs silenced (zero weights: a GRU from zero state then outputs zeros), the bidirectional
    model's layers compute the forward direction alone: the streaming model's layers must give the same, and its
    lookahead pass that through the clipped ReLU unchanged otherwise."""
    model = bidirectional()
    streaming = unidirectional_from(model, lookahead_context=4)
    assert not streaming.config.bidirectional and streaming.config.lookahead_context == 4 and streaming.can_stream
    assert model.config.bidirectional and model.rnns[0].rnn_reverse is not None  # the input is not changed
    for layer in model.rnns:
        for parameter in layer.rnn_reverse.parameters():
            parameter.data.zero_()
    captured = {}
    model.rnns[-1].register_forward_hook(lambda module, args, output: captured.__setitem__("bi", output))
    streaming.rnns[-1].register_forward_hook(lambda module, args, output: captured.__setitem__("uni", output))
    features = torch.randn(2, 64, 120)
    lengths = torch.tensor([120, 90])
    with torch.no_grad():
        model(features, lengths)
        logits, _ = streaming(features, lengths)
        expected = streaming.head(torch.nn.functional.hardtanh(captured["bi"], 0, 20)).transpose(0, 1)
    torch.testing.assert_close(captured["uni"], captured["bi"])
    torch.testing.assert_close(logits, expected)
    assert captured["bi"].abs().sum() > 0


def test_a_unidirectional_model_or_a_negative_lookahead_is_refused():
    streaming = unidirectional_from(bidirectional())
    with pytest.raises(ValueError, match="already unidirectional"):
        unidirectional_from(streaming)
    with pytest.raises(ValueError, match="lookahead_context=-1"):
        unidirectional_from(bidirectional(), lookahead_context=-1)


def _checkpoint(path, model):
    features = FeatureConfig(kind="mel", n_mels=64)
    save_checkpoint(str(path), model_state(model, model.config, features, Alphabet()))


def _run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def test_the_tool_writes_a_checkpoint_that_streams(speech_corpus, tmp_path):
    _checkpoint(tmp_path / "bi.pt", bidirectional())
    result = _run("--checkpoint", str(tmp_path / "bi.pt"), "--manifest", speech_corpus, "--output",
                  str(tmp_path / "stream.pt"), "--lookahead-context", "3")
    assert result.returncode == 0, result.stderr
    assert "model.bidirectional=false model.lookahead_context=3" in result.stdout
    state = load_checkpoint(str(tmp_path / "stream.pt"))
    assert state["feature_config"]["normalization"] == "running"
    assert len(state["feature_config"]["mean"]) == 64 and min(state["feature_config"]["std"]) > 0
    loaded = load_model(str(tmp_path / "stream.pt"))
    assert StreamingTranscriber(loaded).mode == "streaming"
    # once more on its own output: refused in one line naming the file
    again = _run("--checkpoint", str(tmp_path / "stream.pt"), "--manifest", speech_corpus, "--output",
                 str(tmp_path / "again.pt"))
    assert again.returncode == 1 and again.stderr.strip().count("\n") == 0
    assert str(tmp_path / "stream.pt") in again.stderr and "already unidirectional" in again.stderr
    assert not (tmp_path / "again.pt").exists()


def test_the_tool_names_a_missing_manifest(tmp_path):
    _checkpoint(tmp_path / "bi.pt", bidirectional())
    result = _run("--checkpoint", str(tmp_path / "bi.pt"), "--manifest", str(tmp_path / "none.jsonl"),
                  "--output", str(tmp_path / "stream.pt"))
    assert result.returncode == 1 and "none.jsonl" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "stream.pt").exists()


def test_the_tool_refuses_an_output_it_cannot_write_before_any_work(tmp_path):
    _checkpoint(tmp_path / "bi.pt", bidirectional())
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afile").write_text("x")
    for output, words in ((tmp_path / "afolder", "is a folder"), (tmp_path / "afile" / "m.pt", "is a file")):
        result = _run("--checkpoint", str(tmp_path / "bi.pt"), "--manifest", str(tmp_path / "none.jsonl"),
                      "--output", str(output))
        assert result.returncode == 1 and "--output" in result.stderr and words in result.stderr, result.stderr
        assert "none.jsonl" not in result.stderr and "Traceback" not in result.stderr  # checked first


def test_the_tool_takes_a_bundled_models_name(speech_corpus, tmp_path):
    result = _run("--checkpoint", "stream", "--manifest", speech_corpus, "--output", str(tmp_path / "s.pt"))
    assert result.returncode == 1 and "stream.pt: the model is already unidirectional" in result.stderr, result.stderr
