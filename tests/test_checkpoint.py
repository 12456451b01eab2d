import os
import pickle

import pytest
import torch

from deepspeech_pytorch.checkpoint import (CheckpointError, build_model, load_checkpoint, model_state,
                                           restore_rng_state, rng_state, save_checkpoint)
from deepspeech_pytorch.configs import PRESETS, FeatureConfig
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.model import DeepSpeech2


def tiny_checkpoint(path):
    torch.manual_seed(0)
    model = DeepSpeech2(PRESETS["ds2_tiny"], 161, 29).eval()
    save_checkpoint(str(path), {**model_state(model, PRESETS["ds2_tiny"], FeatureConfig(), Alphabet()), "epoch": 3})
    return model


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
