"""Package a trained checkpoint as a ready-to-use model folder: inference-only weights (stored in
half precision to halve the download; they load back into fp32), its language model with the tuned
alpha/beta (`<name>.lm.json`, read by `load_model`), labels, the training recipe and sample audio.

The bundled default model in `deepspeech_pytorch/pretrained/` is made this way (tools/bundle_model.py).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
from omegaconf import OmegaConf

from deepspeech_pytorch.checkpoint import (INFERENCE_KEYS, WEIGHT_SCALES, CheckpointError, build_model,
                                           load_checkpoint, quantize_weights, save_checkpoint)
from deepspeech_pytorch.inference import LM_SETTINGS_SUFFIX, Transcriber, check_beam_size, load_model


@dataclass
class Sample:
    audio_path: str
    text: str


def inference_state(state: Dict[str, Any], name: str, half: bool = True, int8: bool = False,
                    **metadata: Any) -> Dict[str, Any]:
    """What inference needs from a training checkpoint (no optimizer, scheduler or RNG state). half: floating
    weights in fp16; int8: weight matrices and kernels as int8 with per-row scales (`quantize_weights`, about a
    quarter of fp32; loaded back to fp32), the rest (biases, BatchNorm) in fp16."""
    missing = [key for key in INFERENCE_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing}")
    weights = dict(state["model_state"])
    scales: Dict[str, Any] = {}
    if int8:
        weights, scales = quantize_weights(weights)
    weights = {key: (value.half() if (half or int8) and value.is_floating_point() else value).clone()
               for key, value in weights.items()}
    kept = {key: state[key] for key in INFERENCE_KEYS if key != "model_state"}
    return {"model_state": weights, **({WEIGHT_SCALES: scales} if scales else {}), **kept, "name": name, **metadata}


def bundle_model(checkpoint_path: str, output_dir: str, name: str = "default", lm_path: Optional[str] = None,
                 lexicon_path: Optional[str] = None, alpha: Optional[float] = None, beta: Optional[float] = None,
                 samples: Sequence[Sample] = (), half: bool = True, metadata: Optional[Dict[str, Any]] = None,
                 model_name: Optional[str] = None, beam_size: Optional[int] = None,
                 lm_of: Optional[str] = None, int8: bool = False) -> Dict[str, Any]:
    """Write `<output_dir>/<name>.pt` (+ `.lm.json`, `.lm.bin`, `.lexicon.txt` with an LM), `labels.json`,
    `config.yaml` (the training config stored in the checkpoint) and `samples/` (audio + samples.jsonl).
    `model_name` (default: `name`) is what the model reports itself as; `beam_size`, the beam alpha/beta
    were tuned with, becomes beam search's default for this model. Returns the files written
    and their total size. int8: weight matrices stored as int8 with per-row scales (`inference_state`).

    A second model beside another in the same folder (e.g. the streaming model beside the default): `lm_of`
    names the model whose LM and lexicon (already in the folder) it shares, with its own alpha/beta; its
    training config goes to `<name>.config.yaml` and the folder's `labels.json` (which must agree) and
    samples are left as they are. Raises ValueError for settings that do not go together."""
    if lm_of is not None:
        if lm_path is not None or lexicon_path is not None or samples:
            raise ValueError(f"a model sharing {lm_of}'s LM ships no LM, lexicon or samples of its own")
        return _bundle_beside(checkpoint_path, output_dir, name, lm_of, alpha, beta, half, metadata, model_name,
                              beam_size, int8)
    if lm_path is not None and (alpha is None or beta is None):
        raise ValueError("a bundled LM needs its tuned alpha and beta")
    if beam_size is not None:
        if lm_path is None:
            raise ValueError("a tuned beam size comes with an LM")
        check_beam_size(beam_size)
    if lexicon_path is not None and lm_path is None:
        raise ValueError("a lexicon without its LM")
    state = load_checkpoint(checkpoint_path)
    os.makedirs(output_dir, exist_ok=True)
    _remove_previous_bundle(output_dir, name)
    written: List[str] = []
    model_path = os.path.join(output_dir, f"{name}.pt")
    save_checkpoint(model_path, inference_state(state, model_name or name, half, int8, **(metadata or {})))
    written.append(model_path)

    if lm_path is not None:
        lm_name = f"{name}.lm{os.path.splitext(lm_path)[1] or '.bin'}"
        shutil.copyfile(lm_path, os.path.join(output_dir, lm_name))
        written.append(os.path.join(output_dir, lm_name))
        lexicon_name = None
        if lexicon_path is not None:
            lexicon_name = f"{name}.lexicon.txt"
            shutil.copyfile(lexicon_path, os.path.join(output_dir, lexicon_name))
            written.append(os.path.join(output_dir, lexicon_name))
        written.append(_write_lm_settings(output_dir, name, lm_name, lexicon_name, alpha, beta, beam_size))


    # The written folder must load, and its LM work with the model's alphabet, now rather than at a
    # user's first beam search.
    loaded = load_model(model_path)
    if lm_path is not None:
        Transcriber(loaded, decoder="beam")

    labels_path = os.path.join(output_dir, "labels.json")
    with open(labels_path, "w", encoding="utf-8") as handle:
        json.dump(list(state["labels"]), handle)
    written.append(labels_path)
    if state.get("config"):
        written.append(_write_config(state, os.path.join(output_dir, "config.yaml")))

    if samples:
        sample_dir = os.path.join(output_dir, "samples")
        os.makedirs(sample_dir, exist_ok=True)
        with open(os.path.join(sample_dir, "samples.jsonl"), "w", encoding="utf-8") as manifest:
            for number, sample in enumerate(samples, start=1):
                file_name = f"sample{number}{os.path.splitext(sample.audio_path)[1]}"
                shutil.copyfile(sample.audio_path, os.path.join(sample_dir, file_name))
                manifest.write(json.dumps({"audio_filepath": file_name, "text": sample.text}) + "\n")
                written.append(os.path.join(sample_dir, file_name))
        written.append(os.path.join(sample_dir, "samples.jsonl"))
    return _summary(written)


def _bundle_beside(checkpoint_path: str, output_dir: str, name: str, lm_of: str, alpha: Optional[float],
                   beta: Optional[float], half: bool, metadata: Optional[Dict[str, Any]], model_name: Optional[str],
                   beam_size: Optional[int], int8: bool) -> Dict[str, Any]:
    """bundle_model's `lm_of` form: `<name>.pt`, `<name>.lm.json` naming `<lm_of>`'s LM files, `<name>.config.yaml`."""
    if name == lm_of:
        raise ValueError(f"lm_of={lm_of!r} must name another model in the folder than {name!r}")
    if alpha is None or beta is None:
        raise ValueError(f"a model sharing {lm_of}'s LM needs its own tuned alpha and beta")
    shared = os.path.join(output_dir, lm_of + LM_SETTINGS_SUFFIX)
    if not os.path.isfile(shared):
        raise ValueError(f"{shared}: no such file; bundle {lm_of} with its LM first")
    with open(shared, encoding="utf-8") as handle:
        lm_settings = json.load(handle)
    if beam_size is None:
        beam_size = lm_settings.get("beam_size")
    state = load_checkpoint(checkpoint_path)
    labels_path = os.path.join(output_dir, "labels.json")
    if os.path.isfile(labels_path):
        with open(labels_path, encoding="utf-8") as handle:
            if json.load(handle) != list(state["labels"]):
                raise ValueError(f"{checkpoint_path}: its labels differ from {labels_path}; bundle it in its own folder")
    if beam_size is not None:
        check_beam_size(beam_size)
    model_path = os.path.join(output_dir, f"{name}.pt")
    save_checkpoint(model_path, inference_state(state, model_name or name, half, int8, **(metadata or {})))
    written = [model_path, _write_lm_settings(output_dir, name, lm_settings["path"], lm_settings.get("lexicon_path"),
                                              alpha, beta, beam_size)]
    Transcriber(load_model(model_path), decoder="beam")  # loads, and its LM works with it
    if state.get("config"):
        written.append(_write_config(state, os.path.join(output_dir, f"{name}.config.yaml")))
    return _summary(written)


def _write_lm_settings(output_dir: str, name: str, lm_name: str, lexicon_name: Optional[str], alpha: float,
                       beta: float, beam_size: Optional[int]) -> str:
    """`<name>.lm.json`: the LM and lexicon (file names in the folder), alpha, beta and the tuned beam."""
    settings: Dict[str, Any] = {"path": lm_name, "alpha": float(alpha), "beta": float(beta)}
    if beam_size is not None:
        settings["beam_size"] = beam_size
    if lexicon_name:
        settings["lexicon_path"] = lexicon_name
    path = os.path.join(output_dir, name + LM_SETTINGS_SUFFIX)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(settings, handle, indent=2)
    return path


def _write_config(state: Dict[str, Any], path: str) -> str:
    """The training config stored in the checkpoint, as YAML."""
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(OmegaConf.to_yaml(OmegaConf.create(state["config"])))
    return path


def _summary(written: List[str]) -> Dict[str, Any]:
    total = sum(os.path.getsize(path) for path in written)
    return {"files": written, "bytes": total, "megabytes": round(total / 2**20, 2)}


def _remove_previous_bundle(output_dir: str, name: str) -> None:
    """Files an earlier bundle of `name` left (its LM, its samples), so none outlives the new model."""
    for file in os.listdir(output_dir):
        if file.startswith(f"{name}.lm.") or file == f"{name}.lexicon.txt":
            os.remove(os.path.join(output_dir, file))
    if os.path.isdir(os.path.join(output_dir, "samples")):
        shutil.rmtree(os.path.join(output_dir, "samples"))


def folder_megabytes(folder: str) -> float:
    """Total size of every file under `folder`, in MiB (what the bundle adds to the package)."""
    total = 0
    for root, _, names in os.walk(folder):
        total += sum(os.path.getsize(os.path.join(root, n)) for n in names if "__pycache__" not in root)
    return total / 2**20


def half_precision_error(checkpoint_path: str, seconds: float = 3.0) -> float:
    """Largest absolute difference in log-probabilities between fp32 weights and their fp16 round trip."""
    state = load_checkpoint(checkpoint_path)
    model, _, features = build_model(state, checkpoint_path)
    rounded, _, _ = build_model(inference_state(state, "check", half=True), checkpoint_path)
    frames = int(seconds / features.window_stride)
    inputs = torch.randn(1, features.num_features, frames, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([frames])
    with torch.inference_mode():
        exact = model.eval()(inputs, lengths)[0].log_softmax(-1)
        approx = rounded.eval()(inputs, lengths)[0].log_softmax(-1)
    return float((exact - approx).abs().max())
