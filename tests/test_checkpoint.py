import dataclasses
import os
import pickle
import subprocess
import sys

import pytest
import torch

from deepspeech_pytorch.checkpoint import (CheckpointError, average_checkpoints, build_model, load_checkpoint,
                                           model_state, restore_rng_state, rng_state, save_checkpoint)
from deepspeech_pytorch.configs import PRESETS, FeatureConfig
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.model import DeepSpeech2


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
