"""Checkpoints from elsewhere -> this project's format: a whole pickled model (`torch.save(model)`), a plain
state_dict, a checkpoint without its labels, and the original deepspeech.pytorch's files (its PyTorch
Lightning checkpoints and the older `DeepSpeech.serialize` packages).

Nothing in a foreign file is ever run. Pickles that name classes (a pickled model, Lightning's omegaconf
hyper-parameters) are read with `torch.load(weights_only=True)` in which each named class or function is
stood in for by an inert `Opaque` record of how it was called, so the tensors and plain values can be
read out of the tree. The weights are then renamed to this project's names, the model config is read
from their shapes, and the result is checked by building the model.

The original port's network is this project's DeepSpeech2 (the same convolutions, summed bidirectional
RNNs, batch-norm placement and bias-free output layer) over the same linear log(1 + |STFT|) features;
its lookahead convolution of `context` taps is ours with `lookahead_context = context - 1`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import pickletools
import re
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from deepspeech_pytorch.checkpoint import CONVERT, FORMAT_VERSION, CheckpointError, _check_file, _diagnose, build_model, check_checkpoint
from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.labels import DEFAULT_LABELS
from deepspeech_pytorch.models.deepspeech2 import CONV_LAYERS, DeepSpeech2Config as ModelConfig

logger = logging.getLogger(__name__)

MAX_GLOBALS = 200  # distinct classes and functions one pickle may name before we give up reading it


class Opaque:
    """Stands in for a class or function named in a pickle: keeps the arguments it was called with and the
    state it was given, and does nothing else."""

    name = "?"  # the pickle's "module.qualname" this stands in for

    def __new__(cls, *args: Any, **kwargs: Any) -> "Opaque":
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _stand_in(full_name: str) -> type:
    module, _, name = full_name.rpartition(".")
    return type(name, (Opaque,), {"__module__": module, "__qualname__": name, "name": full_name})


_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global")


def _named_globals(path: str) -> List[str]:
    """The classes and functions the pickle of a torch zip file names, read from its opcodes (nothing is run)."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickled = [name for name in archive.namelist() if name.endswith("/data.pkl")]
            data = archive.read(pickled[0]) if pickled else b""
        return sorted({arg.replace(" ", ".") for opcode, arg, _ in pickletools.genops(data) if opcode.name == "GLOBAL"})
    except (zipfile.BadZipFile, OSError, ValueError, IndexError):  # not a zip, or a pickle we do not follow
        return []


def inert_load(path: str, map_location: str = "cpu") -> Tuple[Any, List[str]]:
    """Load any torch.save file without running code from it: (the object tree with Opaque stand-ins, the
    names of the classes and functions stood in for). Raises CheckpointError when even that is refused
    (a pickle that names os/sys functions).

    Every global the pickle names gets a stand-in; torch's own allowed ones (tensor rebuilding, OrderedDict)
    take precedence over them. Globals the opcode scan missed are added one refusal at a time."""
    head = _check_file(path)  # missing, empty, a folder, an LFS pointer, plainly not a checkpoint
    stand_ins: Dict[str, type] = {name: _stand_in(name) for name in _named_globals(path)}
    for _ in range(MAX_GLOBALS):
        try:
            with torch.serialization.safe_globals(list(stand_ins.values())):
                return torch.load(path, map_location=map_location, weights_only=True), sorted(stand_ins)
        except (RuntimeError, EOFError, ValueError, OSError, AttributeError, TypeError, IndexError, KeyError,
                ImportError) as error:  # truncated or corrupt: one line, as load_checkpoint says it
            raise CheckpointError(_diagnose(path, head, error)) from None
        except pickle.UnpicklingError as error:
            match = _UNSUPPORTED.search(str(error))
            if not match:
                blocked = re.search(r"unsupported GLOBAL (\S+) whose module", str(error))
                what = f" such as {blocked.group(1)}" if blocked else ""
                raise CheckpointError(f"{path}: not a loadable checkpoint: its pickle calls functions{what} that are "
                                      "never loaded, for safety") from None
            name = match.group(1) if "." in match.group(1) else "builtins." + match.group(1)
            if name in stand_ins:
                raise CheckpointError(f"{path}: not a loadable checkpoint: it cannot be read even inertly "
                                      f"({name})") from None
            stand_ins[name] = _stand_in(name)
    raise CheckpointError(f"{path}: not a loadable checkpoint: its pickle names over {MAX_GLOBALS} classes")


def _is_module(value: Any) -> bool:
    return isinstance(value, Opaque) and isinstance(value.state, dict) and "_modules" in value.state


def module_weights(module: Any, prefix: str = "") -> Dict[str, torch.Tensor]:
    """The state_dict of a pickled nn.Module read inertly: its parameters and persistent buffers, by name."""
    if not _is_module(module):
        return {}
    state = module.state
    skipped = state.get("_non_persistent_buffers_set") or ()
    if isinstance(skipped, Opaque):
        skipped = set(skipped.args[0]) if skipped.args else set()
    weights: Dict[str, torch.Tensor] = {}
    for name, value in (state.get("_parameters") or {}).items():
        if isinstance(value, torch.Tensor):
            weights[prefix + name] = value.detach()
    for name, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and name not in skipped:
            weights[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        weights.update(module_weights(child, f"{prefix}{name}."))
    return weights


def plain(value: Any) -> Any:
    """Plain Python values from an inert tree: an omegaconf DictConfig becomes its dict, an enum its value."""
    if isinstance(value, Opaque):
        state = value.state
        if isinstance(state, dict):
            for key in ("_content", "_val", "_value_"):
                if key in state:
                    return plain(state[key])
            return {k: plain(v) for k, v in state.items() if isinstance(k, str) and not k.startswith("_")}
        if len(value.args) == 1:
            return plain(value.args[0])
        return [plain(arg) for arg in value.args] if value.args else None
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def describe_pickled(path: str) -> str:
    """Why a file that torch.load(weights_only=True) refuses is not a checkpoint, and how to convert it
    (the message after "<path>: ")."""
    tree, names = inert_load(path)
    convert = f"convert it: {CONVERT} {path} --output converted.pt"
    if _is_module(tree):
        return (f"holds a whole pickled model object ({type(tree).name}), not a checkpoint of weights, and pickled "
                f"objects are never loaded (they can run code); {convert}")
    if isinstance(tree, dict) and "state_dict" in tree and ("pytorch-lightning_version" in tree or
                                                            "hyper_parameters" in tree):
        return (f"a PyTorch Lightning checkpoint (of the original deepspeech.pytorch?), not this project's "
                f"format; {convert}")
    shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    return (f"not a loadable checkpoint: besides weights it holds pickled Python objects ({shown}), which are never "
            f"loaded (they can run code); if it holds a model's weights, {convert}")


# ---- weights and what they say about the model ------------------------------------------------------

_RENAMES = (  # the original deepspeech.pytorch's names -> ours
    ("conv.seq_module.", "conv.layers."),
    ("fc.0.module.", "head.module."),
    ("lookahead.0.conv.", "lookahead.conv."),
)
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DataParallel/DDP, torch.compile, a Lightning wrapper


def our_weight_names(weights: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Weights renamed to this project's DeepSpeech2: wrapper prefixes removed, the original port's names mapped."""
    for prefix in _PREFIXES:
        if weights and all(name.startswith(prefix) for name in weights):
            weights = {name[len(prefix):]: value for name, value in weights.items()}
    renamed = {}
    for name, value in weights.items():
        for old, new in _RENAMES:
            if name.startswith(old):
                name = new + name[len(old):]
        renamed[name] = value
    return renamed


def infer_model_config(weights: Dict[str, torch.Tensor], path: str) -> Tuple[ModelConfig, int]:
    """(the ModelConfig that has exactly these weights, the RNN input size) from the weights' names and shapes."""
    try:
        layers = 1 + max(int(name.split(".")[1]) for name in weights if name.startswith("rnns."))
        hidden_hh = weights["rnns.0.rnn.weight_hh_l0"]
        hidden = hidden_hh.shape[1]
        gates = hidden_hh.shape[0] // hidden
        channels = weights["conv.layers.0.weight"].shape[0]
        rnn_input = weights["rnns.0.rnn.weight_ih_l0"].shape[1]
    except (KeyError, ValueError, IndexError, ZeroDivisionError):
        sample = ", ".join(list(weights)[:3])
        raise CheckpointError(f"{path}: its weights ({sample}, ...) are not a DeepSpeech2 model's") from None
    rnn_type = {4: "lstm", 3: "gru", 1: "rnn"}.get(gates)
    if rnn_type is None:
        raise CheckpointError(f"{path}: rnns.0.rnn.weight_hh_l0 has shape {tuple(hidden_hh.shape)}: not an LSTM, "
                              "GRU or RNN")
    bidirectional = any(name.startswith("rnns.0.") and "reverse" in name for name in weights)  # rnn.*_reverse
    lookahead = weights.get("lookahead.conv.weight")
    context = lookahead.shape[-1] - 1 if lookahead is not None else ModelConfig.lookahead_context
    return ModelConfig(rnn_type=rnn_type, hidden_size=hidden, hidden_layers=layers, bidirectional=bidirectional,
                       lookahead_context=context, conv_channels=channels), rnn_input


def _frequency_bins_out(num_features: int) -> int:
    for kernel, stride, padding in CONV_LAYERS:
        num_features = (num_features + 2 * padding[0] - kernel[0]) // stride[0] + 1
    return num_features


def infer_features(rnn_input: int, channels: int, stated: Optional[Dict[str, Any]], path: str) -> FeatureConfig:
    """The feature config: as the file states it when it does, else the common one whose size fits the weights."""
    if stated:
        return FeatureConfig(**stated)
    candidates = [FeatureConfig(), FeatureConfig(kind="mel", n_mels=64), FeatureConfig(kind="mel", n_mels=80),
                  FeatureConfig(kind="mel", n_mels=40)]
    for candidate in candidates:
        if channels * _frequency_bins_out(candidate.num_features) == rnn_input:
            return candidate
    raise CheckpointError(f"{path}: cannot tell which features the model takes (its first RNN reads {rnn_input} "
                          "values per frame); this converter knows 161-bin linear and 40/64/80-bin mel spectrograms")


def _labels(given: Optional[Sequence[str]], found: Any, classes: int, path: str) -> List[str]:
    if given is not None:
        labels = list(given)
    elif isinstance(found, (list, tuple)) and found and all(isinstance(label, str) for label in found):
        labels = list(found)
    elif classes == len(DEFAULT_LABELS):
        logger.warning("%s: no labels stored; assuming the default alphabet (%d labels); pass --labels if the "
                       "model was trained with another", path, len(DEFAULT_LABELS))
        labels = list(DEFAULT_LABELS)
    else:
        raise CheckpointError(f"{path}: no labels stored and the model has {classes} output classes, not the default "
                              f"{len(DEFAULT_LABELS)}: give its alphabet with --labels labels.json")
    cased = [label for label in labels if label.isalpha()]
    if cased and all(label.isupper() for label in cased):  # the original port's labels are upper case
        labels = [label.lower() for label in labels]
    if len(labels) != classes:
        raise CheckpointError(f"{path}: {len(labels)} labels for a model with {classes} output classes")
    return labels


def _original_features(spect: Any) -> Optional[Dict[str, Any]]:
    """The original port's spectrogram settings (SpectConfig or audio_conf) as our FeatureConfig fields."""
    if not isinstance(spect, dict):
        return None
    features = {"kind": "linear", "normalize": True}
    for key in ("sample_rate", "window_size", "window_stride", "window"):
        if spect.get(key) is not None:
            features[key] = spect[key]
    if isinstance(features.get("window"), str):
        features["window"] = features["window"].lower()
    if isinstance(features.get("sample_rate"), float) and features["sample_rate"].is_integer():
        features["sample_rate"] = int(features["sample_rate"])
    return features


def convert_checkpoint(path: str, labels: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """A checkpoint in this project's format (for `save_checkpoint`) from a file in another: a whole pickled
    DeepSpeech2, a plain state_dict (ours or the original port's names), a checkpoint lacking its labels, or a
    checkpoint of the original deepspeech.pytorch (Lightning or older). `labels` overrides the stored alphabet.

    Raises CheckpointError when the file holds no DeepSpeech2 weights or they do not fit any model."""
    tree, _ = inert_load(path)
    stated_features: Optional[Dict[str, Any]] = None
    stated_model: Optional[Dict[str, Any]] = None
    found_labels: Any = None
    name = os.path.splitext(os.path.basename(path))[0]
    if _is_module(tree):  # torch.save(model)
        weights = module_weights(tree)
        found_labels = plain(tree.state.get("labels"))
        stated_features = _original_features(plain(tree.state.get("spect_cfg")))
    elif isinstance(tree, dict) and "model_state" in tree:  # ours, perhaps missing its labels or feature config
        version = tree.get("format_version", 0)
        if isinstance(version, int) and version > FORMAT_VERSION:  # fields this version cannot know
            raise CheckpointError(f"{path}: written by a newer version (format {version}); upgrade the library "
                                  f"instead of converting it")
        weights = tree["model_state"]
        found_labels = tree.get("labels")
        stated_features = tree.get("feature_config")
        stated_model = tree.get("model_config")
        name = tree.get("name") or name
    elif isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict):  # the original port's
        weights = tree["state_dict"]
        hyper = plain(tree.get("hyper_parameters")) or {}
        found_labels = hyper.get("labels", tree.get("labels"))
        stated_features = _original_features(hyper.get("spect_cfg") or plain(tree.get("audio_conf")))
    elif isinstance(tree, dict) and tree and all(isinstance(v, torch.Tensor) for v in tree.values()):
        weights = tree  # a plain state_dict
    else:
        raise CheckpointError(f"{path}: holds no model weights this converter recognises (a {type(tree).__name__})")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(f"{path}: its weights are not a dict of tensors")
    weights = our_weight_names({str(k): v for k, v in weights.items()})
    model_config, rnn_input = infer_model_config(weights, path)
    if isinstance(stated_model, dict):  # what the file says, e.g. the lookahead of a bidirectional model
        try:
            model_config = ModelConfig(**stated_model)
        except TypeError as error:
            raise CheckpointError(f"{path}: its model_config does not fit this version ({error})") from None
    features = infer_features(rnn_input, model_config.conv_channels, stated_features, path)
    classes = weights["head.module.1.weight"].shape[0] if "head.module.1.weight" in weights else -1
    state = {
        "model_state": {key: value.detach().clone() for key, value in weights.items()},
        "model_config": dataclasses.asdict(model_config),
        "feature_config": dataclasses.asdict(features),
        "labels": _labels(labels, found_labels, classes, path),
        "name": name,
        "converted_from": os.path.abspath(path),
    }
    check_checkpoint(state, path)
    build_model(state, path)  # the weights fit the config exactly, or CheckpointError names what does not
    return state
