"""The one checkpoint format: weights plus everything needed to rebuild and resume, saved atomically.

A checkpoint is a plain dict of tensors and primitive types so it loads with
`torch.load(..., weights_only=True)`: a checkpoint from a stranger cannot run code.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import random
import re
import tempfile
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.models import ARCHITECTURES, AcousticModel, AcousticModelConfig, model_config
from deepspeech_pytorch.models import build_model as build_acoustic_model

# 1: DeepSpeech2 only, no architecture key, one bidirectional RNN module per layer (still loads unchanged);
# 2: model_config names its architecture (the registry in deepspeech_pytorch.models builds it);
# 3: weight matrices may be stored as int8 with per-row scales (`weight_scales`); only such files are written
#    as 3 (older versions refuse them by number rather than load integers as weights), all others as 2.
FORMAT_VERSION = 3
PLAIN_FORMAT_VERSION = 2
WEIGHT_SCALES = "weight_scales"  # int8-stored weight name -> fp32 scales of shape (rows,)
# What describes the model beside its weights; with "model_state", all that inference needs.
MODEL_DESCRIPTION_KEYS = ("model_config", "feature_config", "labels")
INFERENCE_KEYS = ("model_state", *MODEL_DESCRIPTION_KEYS)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint of this project."""


CONVERT = "python tools/convert_checkpoint.py"  # the converter every message about a foreign file points to
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SHOWN = 3  # weights named in a message before "(+N more)"


def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write to a temporary file in the same folder, then rename: a crash never leaves half a checkpoint."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's file is private (0600); a checkpoint is an ordinary file
        version = FORMAT_VERSION if WEIGHT_SCALES in state else PLAIN_FORMAT_VERSION
        torch.save({"format_version": version, **state}, temporary)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def check_output_folder(folder: str, setting: str, error_type: type = ValueError) -> None:
    """Create `folder` (a setting's value: checkpoint.directory, export's output_dir) before any work, so a run
    cannot end unable to save. Raises `error_type` (a ValueError) naming the setting when it is a file or cannot
    be created or written."""
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise error_type(f"{setting}={folder} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise error_type(f"{setting}={folder}: cannot create it ({error.strerror or error})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error_type(f"{setting}={folder}: the folder is not writable")


def _first_line(error: BaseException) -> str:
    text = _ANSI.sub("", str(error)).strip()
    return text.splitlines()[0].rstrip(" .") if text else type(error).__name__


def _check_file(path: str) -> bytes:
    """The first bytes of `path`, or CheckpointError saying why it is not a checkpoint file at all."""
    if os.path.isdir(path):
        from deepspeech_pytorch.onnx_backend import folder_hint

        raise CheckpointError(f"{path}: is a folder, not a model file; give the model file in it{folder_hint(path)}")
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a regular file (a pipe or a device?)")
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint ({error.strerror or error})") from None
    if not head:
        raise CheckpointError(f"{path}: empty file (0 bytes): an interrupted download or copy?")
    looks = _foreign_file(head, path)
    if looks:
        raise CheckpointError(f"{path}: not a checkpoint: it is {looks}")
    return head


def _foreign_file(head: bytes, path: str) -> Optional[str]:
    """What a file that is plainly not a PyTorch checkpoint is, from its first bytes and name."""
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (run git lfs pull)"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return ("a safetensors file, which holds weights without the model config and labels; "
                f"convert it: {CONVERT} {path} --output model.pt")
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")):
        return "an HTML page (an error page saved in place of a download?)"
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return "a compressed archive: extract the checkpoint from it first"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive: extract the checkpoint from it first"
    if path.lower().endswith(".onnx"):
        return "an ONNX model, which this library does not load; give the PyTorch checkpoint it was exported from"
    if head[:4] != b"PK\x03\x04" and head[:1] != b"\x80":  # neither torch's zip format nor a pickle
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if sum(c.isprintable() or c in "\t\r\n" for c in text) >= 0.95 * len(text):
            return f"a text file ({' '.join(text.split())[:40]!r})"
    return None


TORCHSCRIPT = ("a TorchScript archive (torch.jit.save, e.g. export.py's .ts.pt), not a checkpoint: it runs outside "
               "this library with torch.jit.load (README: Export); give the checkpoint it was exported from, or its .onnx")


def _is_torchscript(names: Sequence[str]) -> bool:
    return any(name.endswith("/constants.pkl") or "/code/" in name for name in names)


def _torchscript_archive(path: str, head: bytes) -> bool:
    """Whether `path` is a TorchScript zip (told before torch.load, which warns over two lines about it)."""
    if head[:4] != b"PK\x03\x04":
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return _is_torchscript(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False  # torch.load then says what is wrong with it


def _diagnose(path: str, head: bytes, error: BaseException) -> str:
    """One line saying why torch.load(weights_only=True) refused `path`, and what to do about it."""
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return f"{path}: truncated or corrupt (an incomplete zip archive): an interrupted download or copy?"
        if _is_torchscript(names):
            return f"{path}: {TORCHSCRIPT}"
    if isinstance(error, EOFError) or "truncated" in str(error) or "unexpected EOF" in str(error):
        return f"{path}: truncated or corrupt (the data ends early): an interrupted download or copy?"
    if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in str(error):
        from deepspeech_pytorch.conversion import describe_pickled  # late: conversion imports this module
        return f"{path}: {describe_pickled(path)}"
    return f"{path}: not a loadable checkpoint ({_first_line(error)})"


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> Dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`) and check everything that `build_model` reads.

    Raises CheckpointError with one line naming the file, what is wrong and, for a file from elsewhere
    (a whole pickled model, a plain state_dict, a PyTorch Lightning checkpoint), how to convert it."""
    path = os.fspath(path)
    head = _check_file(path)
    if _torchscript_archive(path, head):
        raise CheckpointError(f"{path}: {TORCHSCRIPT}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError,
            IndexError, KeyError, ImportError) as error:
        raise CheckpointError(_diagnose(path, head, error)) from None
    state = dequantize_weights(state, path)
    check_checkpoint(state, path)
    return state


def quantize_weights(weights: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """Weight matrices and kernels (floating tensors of 2 or more dimensions) -> int8 with one symmetric scale per
    output row (dim 0): w ~ q * scale, |q| <= 127, an error of at most scale / 2 per weight. Returns the weights
    (others unchanged) and name -> scales (rows,) in fp32, for a checkpoint's `model_state` and `weight_scales`."""
    stored, scales = {}, {}
    for name, value in weights.items():
        if not value.is_floating_point() or value.dim() < 2:
            stored[name] = value
            continue
        rows = value.detach().float().reshape(value.shape[0], -1)
        scale = (rows.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
        stored[name] = torch.round(rows / scale[:, None]).clamp(-127, 127).to(torch.int8).reshape(value.shape)
        scales[name] = scale
    return stored, scales


def dequantize_weights(state: Any, path: str = "checkpoint") -> Any:
    """A checkpoint whose `weight_scales` name int8-stored weights -> the same with those weights in fp32 (and no
    `weight_scales`); any other state is returned as it is. CheckpointError when scales and weights disagree."""
    if not isinstance(state, dict) or not isinstance(state.get("model_state"), dict):
        return state
    weights, scales = state["model_state"], state.get(WEIGHT_SCALES, {})
    if not isinstance(scales, dict):
        raise CheckpointError(f"{path}: {WEIGHT_SCALES} must be a dict of weight name -> scales, not {_kind(scales)}")
    restored = dict(weights)
    for name, scale in scales.items():
        value = weights.get(name)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.int8:
            raise CheckpointError(f"{path}: {WEIGHT_SCALES} names {name!r}, which is not an int8 weight")
        if not isinstance(scale, torch.Tensor) or scale.shape != (value.shape[0],) or not torch.isfinite(scale).all():
            raise CheckpointError(f"{path}: the scales of {name!r} must be {value.shape[0]} finite numbers, one per row")
        restored[name] = value.float() * scale.float().reshape(-1, *([1] * (value.dim() - 1)))
    stray = [name for name, value in restored.items() if isinstance(value, torch.Tensor) and value.dtype == torch.int8]
    if stray:
        raise CheckpointError(f"{path}: int8 weights without their scales ({WEIGHT_SCALES}): {_few(stray)}")
    if WEIGHT_SCALES not in state:
        return state
    return {**{key: value for key, value in state.items() if key != WEIGHT_SCALES}, "model_state": restored}


# ---- what a checkpoint must hold -------------------------------------------------------------------

def _foreign_layout(state: Dict[Any, Any], path: str) -> Optional[str]:
    """Why a loaded dict is not this project's checkpoint, when it is a known other kind."""
    convert = f"convert it: {CONVERT} {path} --output converted.pt"
    if "state_dict" in state and ("pytorch-lightning_version" in state or "hyper_parameters" in state):
        return (f"a PyTorch Lightning checkpoint (of the original deepspeech.pytorch?), not this project's "
                f"format; {convert}")
    if "state_dict" in state and ("audio_conf" in state or "hidden_size" in state):
        return f"a checkpoint of the original deepspeech.pytorch (before version 3); {convert}"
    if state and all(isinstance(value, torch.Tensor) for value in state.values()):
        example = ", ".join(repr(key) for key in list(state)[:2])
        return (f"it holds only weights (a state_dict of {len(state)} tensors such as {example}), without the model "
                f"config and labels; {convert} (add --labels labels.json unless the model uses the default alphabet)")
    return None


def check_checkpoint(state: Any, path: str = "checkpoint") -> None:
    """Check the keys and types that `load_model` / `build_model` read: model_state (name -> finite tensor),
    model_config and feature_config (dicts of the dataclass fields, right types and values), labels (the
    alphabet), name and format_version. CheckpointError names the first problem."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a deepspeech_pytorch checkpoint: it holds a {type(state).__name__}, "
                              "not a dict of weights and settings")
    foreign = _foreign_layout(state, path) if "model_state" not in state else None
    if foreign:
        raise CheckpointError(f"{path}: not a deepspeech_pytorch checkpoint: {foreign}")
    missing = [key for key in ("model_state", "model_config", "labels") if key not in state]
    if missing:
        what = {"model_state": "the weights", "model_config": "the model's shape", "labels": "the model's alphabet"}
        listed = "; no ".join(f"{key}, {what[key]}" for key in missing)
        fix = (f"; add them: {CONVERT} {path} --labels labels.json --output fixed.pt" if missing == ["labels"]
               else "")
        raise CheckpointError(f"{path}: not a deepspeech_pytorch checkpoint (no {listed}){fix}")
    version = state.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format_version must be an integer, not {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer version (format {version}); upgrade the library")
    weights = state["model_state"]
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"{path}: model_state must be a non-empty dict of weight name -> tensor, not "
                              f"{_kind(weights)}")
    wrong = [str(name) for name, value in weights.items()
             if not isinstance(name, str) or not isinstance(value, torch.Tensor)]
    if wrong:
        raise CheckpointError(f"{path}: model_state entries that are not tensors: {_few(wrong)}")
    broken = [name for name, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise CheckpointError(f"{path}: weights with NaN or infinite values: {_few(broken)} (saved after training "
                              "diverged?)")
    _check_model_config(state["model_config"], path)
    if state.get("feature_config") is not None:
        _check_fields(FeatureConfig, state["feature_config"], "feature_config", path)
    labels = state["labels"]
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        raise CheckpointError(f"{path}: labels must be a list of single characters, not {_kind(labels)}")
    try:
        Alphabet(labels=tuple(labels))
    except ValueError as error:
        raise CheckpointError(f"{path}: invalid labels ({error})") from None
    if state.get("name") is not None and not isinstance(state["name"], str):
        raise CheckpointError(f"{path}: name must be a string, not {_kind(state['name'])}")


# What resuming training reads besides the model: (type, what it is).
TRAINING_KEYS = {"optimizer_state": (dict, "the optimiser's state"), "epoch": (int, "epochs completed"),
                 "batch_in_epoch": (int, "the position in the epoch"), "step": (int, "optimiser steps taken")}


def check_training_state(state: Dict[str, Any], path: str = "checkpoint") -> None:
    """Check the keys that resuming a run reads (TRAINING_KEYS, and scheduler_state when present), after
    `check_checkpoint`; an inference checkpoint (bundled, averaged or converted) cannot be resumed, only
    fine-tuned from, and CheckpointError says so."""
    missing = [key for key in TRAINING_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path}: cannot resume training from it: it has no {', '.join(missing)} (an inference "
                              f"checkpoint: bundled, averaged or converted?); start from its weights instead with "
                              f"checkpoint.finetune_from={path} in a new checkpoint.directory")
    for key, (kind, what) in TRAINING_KEYS.items():
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (kind is int and value < 0):
            raise CheckpointError(f"{path}: {key} ({what}) must be {'a dict' if kind is dict else 'a count'}, "
                                  f"not {_kind(value)}")
    if state.get("scheduler_state") is not None and not isinstance(state["scheduler_state"], dict):
        raise CheckpointError(f"{path}: scheduler_state must be a dict, not {_kind(state['scheduler_state'])}")


def _kind(value: Any) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown[:40]}{'...' if len(shown) > 40 else ''}"


def _few(names: Sequence[str]) -> str:
    names = list(names)
    more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


# The values a stored config field may take, beyond its type.
_FIELD_RULES = {
    ("FeatureConfig", "sample_rate"): (lambda v: v > 0, "positive"),
    ("FeatureConfig", "window_size"): (lambda v: math.isfinite(v) and v > 0, "positive"),
    ("FeatureConfig", "window_stride"): (lambda v: math.isfinite(v) and v > 0, "positive"),
    ("FeatureConfig", "window"): (lambda v: v in ("hamming", "hann", "blackman", "bartlett"),
                                  "one of 'hamming', 'hann', 'blackman', 'bartlett'"),
    ("FeatureConfig", "kind"): (lambda v: v in ("linear", "mel"), "'linear' or 'mel'"),
    ("FeatureConfig", "n_mels"): (lambda v: v > 0, "positive"),
}


def _type_ok(annotation: Any, value: Any) -> bool:
    name = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "str":
        return isinstance(value, str)
    return True


def _check_model_config(values: Any, path: str) -> None:
    """The stored model config must build a registered architecture (format 1: DeepSpeech2), each field of
    its type (a checkpoint is not a command line: nothing is converted)."""
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: model_config must be a dict of model settings, not {_kind(values)}")
    architecture = values.get("architecture", "deepspeech2")
    if not isinstance(architecture, str):
        raise CheckpointError(f"{path}: model_config.architecture must be a string, not {_kind(architecture)}")
    if architecture not in ARCHITECTURES:
        raise CheckpointError(f"{path}: model_config.architecture {architecture!r} is not one this library knows "
                              f"({', '.join(sorted(ARCHITECTURES))}); written by a newer version?")
    _check_fields(ARCHITECTURES[architecture].config_class, values, "model_config", path)
    try:
        model_config(values)
    except ValueError as error:
        message = str(error).replace("model.", "model_config.", 1)
        raise CheckpointError(f"{path}: {message}") from None


def _check_fields(cls, values: Any, key: str, path: str) -> None:
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: {key} must be a dict of {cls.__name__} fields, not {_kind(values)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(str(name) for name in set(values) - set(fields))
    if unknown:
        raise CheckpointError(f"{path}: unknown {key} fields {unknown} (written by another version of the library?)")
    for name, value in values.items():
        annotation = fields[name].type
        if not _type_ok(annotation, value):
            wanted = annotation if isinstance(annotation, str) else annotation.__name__
            raise CheckpointError(f"{path}: {key}.{name} must be {wanted}, not {_kind(value)}")
        rule = _FIELD_RULES.get((cls.__name__, name))
        if rule and not rule[0](value):
            raise CheckpointError(f"{path}: {key}.{name} must be {rule[1]}, not {value!r}")


def model_state(model: torch.nn.Module, config: AcousticModelConfig, feature_config: FeatureConfig,
                alphabet: Alphabet) -> Dict[str, Any]:
    """The part of a checkpoint that inference needs; the model config with its architecture's name."""
    module = model.module if hasattr(model, "module") else model
    return {
        "model_state": module.state_dict(),
        "model_config": dataclasses.asdict(model_config(config)),
        "feature_config": dataclasses.asdict(feature_config),
        "labels": list(alphabet.labels),
    }


_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP and torch.compile wrap a model's weight names


def _unwrapped(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if weights and all(name.startswith(prefix) for name in weights):
            weights = {name[len(prefix):]: value for name, value in weights.items()}
    return weights


_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch.Size\(\[([\d, ]*)\]\) from "
                            r"checkpoint, the shape in current model is torch.Size\(\[([\d, ]*)\]\)")


def _load_weights(model: torch.nn.Module, weights: Dict[str, torch.Tensor], state: Dict[str, Any], path: str) -> None:
    """Load `weights` into `model` (through its own load hooks, which may rename old formats' weights), or raise
    CheckpointError naming the missing, unexpected and mis-shaped weights, the first few of each."""
    misshaped: List[str] = []
    try:
        result = model.load_state_dict(weights, strict=False)
        missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    except RuntimeError as error:
        found = _SIZE_MISMATCH.findall(str(error))
        if not found:
            raise CheckpointError(f"{path}: weights do not fit the model ({_first_line(error)})") from None
        misshaped = [f"{name} ({stored}) where the config needs ({needed})" for name, stored, needed in found]
        missing, unexpected = [], []
        heads = [needed for name, _, needed in found if name == "head.module.1.weight"]
        if heads:
            classes = weights["head.module.1.weight"].shape[0] if "head.module.1.weight" in weights else "?"
            misshaped.insert(0, f"its labels have {len(state['labels'])} entries but its output layer has "
                                f"{classes} classes:")
    if not (missing or unexpected or misshaped):
        return
    parts = []
    if any(name.startswith(("conv.seq_module.", "fc.0.module.")) for name in unexpected):
        parts.append(f"these are the original deepspeech.pytorch's weight names; convert it: {CONVERT} {path} "
                     "--output converted.pt")
    if missing:
        parts.append(f"missing {_few(missing)}")
    if unexpected:
        parts.append(f"unexpected {_few(unexpected)}")
    if misshaped:
        shown = misshaped[:_SHOWN + 1] if misshaped[0].endswith(":") else misshaped[:_SHOWN]
        hidden = len(misshaped) - len(shown)
        parts.append("wrong shape: " + ", ".join(shown).replace(":,", ":") + (f" (+{hidden} more)" if hidden else ""))
    config = state["model_config"]
    shape = ", ".join(f"{key}={config[key]}" for key in ("rnn_type", "hidden_size", "hidden_layers", "bidirectional",
                                                          "conv_channels") if key in config)
    raise CheckpointError(f"{path}: weights do not match the stored model config ({shape}): " + "; ".join(parts))


def build_model(state: Dict[str, Any], path: str = "checkpoint") -> Tuple[AcousticModel, Alphabet, FeatureConfig]:
    """Rebuild the model, alphabet and feature config a checkpoint was trained with.

    Checks the state first (`check_checkpoint`); weights that do not fit the stored config raise
    CheckpointError naming the missing, unexpected and mis-shaped ones."""
    check_checkpoint(state, path)
    config = model_config(state["model_config"])  # format 1 has no architecture: DeepSpeech2
    feature_config = FeatureConfig(**(state.get("feature_config") or {}))
    alphabet = Alphabet(labels=tuple(state["labels"]))
    try:
        model = build_acoustic_model(config, feature_config.num_features, len(alphabet))
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: cannot build the model its config describes ({_first_line(error)})") from None
    _load_weights(model, _unwrapped(state["model_state"]), state, path)
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
