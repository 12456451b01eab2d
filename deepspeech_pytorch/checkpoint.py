"""The one checkpoint format: weights plus everything needed to rebuild and resume, saved atomically.

A checkpoint is a plain dict of tensors and primitive types so it loads with
`torch.load(..., weights_only=True)`: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import tempfile
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from deepspeech_pytorch.configs import FeatureConfig, ModelConfig
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.model import DeepSpeech2

FORMAT_VERSION = 1
# What describes the model beside its weights; with "model_state", all that inference needs.
MODEL_DESCRIPTION_KEYS = ("model_config", "feature_config", "labels")
INFERENCE_KEYS = ("model_state", *MODEL_DESCRIPTION_KEYS)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project."""


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a checkpoint."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        torch.save({"format_version": FORMAT_VERSION, **state}, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint ({first_line})") from None
    if not isinstance(state, dict) or "model_state" not in state or "model_config" not in state:
        raise CheckpointError(f"{path}: not a deepspeech_pytorch checkpoint (no model_state/model_config)")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer version (format {state['format_version']}); upgrade the library")
    return state


def model_state(model: torch.nn.Module, model_config: ModelConfig, feature_config: FeatureConfig,
                alphabet: Alphabet) -> Dict[str, Any]:
    """The part of a checkpoint that inference needs."""
    module = model.module if hasattr(model, "module") else model
    return {
        "model_state": module.state_dict(),
        "model_config": dataclasses.asdict(model_config),
        "feature_config": dataclasses.asdict(feature_config),
        "labels": list(alphabet.labels),
    }


def _config_from_dict(cls, values: Dict[str, Any], path: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise CheckpointError(f"{path}: unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**values)


def build_model(state: Dict[str, Any], path: str = "checkpoint") -> Tuple[DeepSpeech2, Alphabet, FeatureConfig]:
    """Rebuild the model, alphabet and feature config a checkpoint was trained with."""
    model_config = _config_from_dict(ModelConfig, state["model_config"], path)
    feature_config = _config_from_dict(FeatureConfig, state.get("feature_config", {}), path)
    alphabet = Alphabet(labels=tuple(state["labels"]))
    model = DeepSpeech2(model_config, feature_config.num_features, len(alphabet))
    try:
        model.load_state_dict(state["model_state"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not match the stored model config ({str(error).splitlines()[0]})") from None
    return model, alphabet, feature_config


def average_checkpoints(paths: Sequence[str]) -> Dict[str, Any]:
    """The mean of the weights of several checkpoints of one model, e.g. the last few of an annealed run:
    the average sits nearer the middle of the region they wander over and usually decodes a little better
    than any one of them. Integer buffers (BatchNorm batch counters), the configs and the training recipe
    come from the last checkpoint. The result is an inference checkpoint (no optimizer or RNG state)."""
    if not paths:
        raise CheckpointError("no checkpoints to average")
    states = [load_checkpoint(path) for path in paths]
    last, last_path = states[-1], paths[-1]
    for state, path in zip(states, paths):
        for key in MODEL_DESCRIPTION_KEYS:
            if state.get(key) != last.get(key):
                raise CheckpointError(f"{path}: its {key} differs from {last_path}'s; "
                                      "only checkpoints of one model can be averaged")
        if set(state["model_state"]) != set(last["model_state"]):
            raise CheckpointError(f"{path}: its weights have other names than {last_path}'s")
    averaged = {}
    for name, final in last["model_state"].items():
        tensors = [state["model_state"][name] for state in states]
        if any(tensor.shape != final.shape for tensor in tensors):
            raise CheckpointError(f"{name}: shapes differ between the checkpoints")
        averaged[name] = (torch.stack(tensors).double().mean(0).to(final.dtype) if final.is_floating_point()
                          else final.clone())
    result = {"model_state": averaged, "averaged_from": [os.path.abspath(path) for path in paths]}
    for key in (*MODEL_DESCRIPTION_KEYS, "config"):
        if key in last:
            result[key] = last[key]
    return result


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch generator states, as primitive types and tensors only."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Optional[Dict[str, Any]]) -> None:
    if not state:
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
