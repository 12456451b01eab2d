"""Export a model for deployment: ONNX (self-describing, dynamic batch and time), TorchScript (a traced module
for mobile and C++), and int8 twins (PyTorch dynamic quantization of the recurrent and linear layers), each
checked for parity with the model it came from before it is kept.

The exported graph is the acoustic model alone: features (batch, freq, frames) and their lengths in, logits
(batch, time, classes) and output lengths out. What a runtime needs around it (the alphabet, the feature
settings, the time stride) is written into the ONNX file's metadata, as icefall's export scripts do, so the
file is all a deployment needs; TorchScript files carry the same JSON as an extra file.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.decoders import GreedyDecoder
from deepspeech_pytorch.features import FeatureExtractor, seconds_per_frame
from deepspeech_pytorch.inference import LoadedModel

logger = logging.getLogger(__name__)

OPSET = 17
EXPORT_FORMAT = 1  # version of the metadata below
INPUT_NAMES = ("features", "lengths")
OUTPUT_NAMES = ("logits", "output_lengths")
PARITY_TOLERANCE = {"fp32": 1e-3, "int8": None}  # max |logit difference|; int8 is judged by its transcripts
METADATA_FILE = "deepspeech_metadata.json"  # the extra file inside a TorchScript archive


class ExportError(ValueError):
    """An export that failed or does not reproduce its model within tolerance."""


@dataclass
class ParityReport:
    """How an exported model compares with its source on the check audio."""

    max_abs_logit_difference: float
    transcripts_equal: int
    utterances: int
    mismatches: List[Tuple[str, str]]  # (source transcript, exported transcript)

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def metadata(loaded: LoadedModel) -> Dict[str, str]:
    """What a runtime needs beside the graph, as strings (ONNX metadata_props are string pairs)."""
    described = loaded.model.describe()
    return {
        "deepspeech_export_format": str(EXPORT_FORMAT),
        "model_name": loaded.name,
        "architecture": described["architecture"],
        "summary": described["summary"],
        "model_config": json.dumps(dataclasses.asdict(loaded.model.config)),
        "labels": json.dumps(list(loaded.alphabet.labels)),
        "feature_config": json.dumps(dataclasses.asdict(loaded.features)),
        "time_stride": str(loaded.model.time_stride),
        "seconds_per_frame": repr(seconds_per_frame(loaded.features) * loaded.model.time_stride),
        "blank_index": "0",
    }


def check_features(loaded: LoadedModel, waveforms: Sequence[np.ndarray]) -> Tuple[Tensor, Tensor]:
    """Features (batch, freq, frames) and lengths of the check audio, padded into one batch."""
    extractor = FeatureExtractor(loaded.features)
    lengths = torch.tensor([len(w) for w in waveforms])
    padded = torch.zeros(len(waveforms), int(lengths.max()))
    for row, samples in enumerate(waveforms):
        padded[row, : len(samples)] = torch.from_numpy(samples)
    return extractor(padded, lengths)


def check_audio(paths: Sequence[str], sample_rate: int) -> List[np.ndarray]:
    if not paths:
        raise ExportError("no audio to check the export with: give at least one file")
    return [load_audio(path, sample_rate) for path in paths]


def compare(loaded: LoadedModel, run, features: Tensor, lengths: Tensor, tolerance: Optional[float],
            what: str) -> ParityReport:
    """Run the exported model (`run(features, lengths) -> (logits, output_lengths)` as tensors) beside the
    source and compare logits and greedy transcripts; ExportError when they disagree beyond `tolerance`
    (None: only transcripts are reported)."""
    with torch.no_grad():
        expected, expected_lengths = loaded.model.eval()(features, lengths)
        got, got_lengths = run(features, lengths)
    if not torch.equal(got_lengths.long(), expected_lengths.long()):
        raise ExportError(f"{what}: output lengths differ from the model's ({got_lengths.tolist()} vs "
                          f"{expected_lengths.tolist()})")
    difference = float((got.float() - expected.float()).abs().max())
    decoder = GreedyDecoder(loaded.alphabet, seconds_per_frame(loaded.features) * loaded.model.time_stride)
    source = [h.text for h in decoder.decode(torch.log_softmax(expected.float(), -1), expected_lengths)]
    exported = [h.text for h in decoder.decode(torch.log_softmax(got.float(), -1), got_lengths)]
    mismatches = [(a, b) for a, b in zip(source, exported) if a != b]
    report = ParityReport(difference, len(source) - len(mismatches), len(source), mismatches)
    if tolerance is not None and (difference > tolerance or mismatches):
        raise ExportError(f"{what}: does not reproduce the model (max |logit difference| {difference:.3g} > "
                          f"{tolerance:g}, or {len(mismatches)} of {len(source)} transcripts differ)")
    return report


class _Wrapped(nn.Module):
    """The acoustic model with plain tensor outputs, for tracing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, features: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        return self.model(features, lengths)


def export_onnx(loaded: LoadedModel, path: str, check_paths: Sequence[str], opset: int = OPSET) -> ParityReport:
    """Write `loaded`'s acoustic model as ONNX (TorchScript-based exporter, dynamic batch and frame axes,
    metadata_props from `metadata()`), then run it in ONNX Runtime on the check audio and compare.
    Raises ExportError when it cannot be exported or does not match within PARITY_TOLERANCE["fp32"]."""
    import onnx
    import onnxruntime

    features, lengths = check_features(loaded, check_audio(check_paths, loaded.features.sample_rate))
    model = _Wrapped(loaded.model.eval())
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
            torch.onnx.export(model, (features, lengths), buffer, dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes={"features": {0: "batch", 2: "frames"}, "lengths": {0: "batch"},
                                            "logits": {0: "batch", 1: "time"}, "output_lengths": {0: "batch"}})
    except Exception as error:  # the exporter raises many kinds; the message says what it could not do
        raise ExportError(f"{loaded.name}: ONNX export failed ({str(error).splitlines()[0]})") from None
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in metadata(loaded).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    _atomic_write(path, proto.SerializeToString())
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])

    def run(x: Tensor, n: Tensor) -> Tuple[Tensor, Tensor]:
        logits, out = session.run(None, {"features": x.numpy(), "lengths": n.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(out)

    return compare(loaded, run, features, lengths, PARITY_TOLERANCE["fp32"], path)


def quantize_dynamic(loaded: LoadedModel) -> nn.Module:
    """The model with its recurrent and linear layers quantized to int8 (weights; activations quantized on
    the fly), PyTorch's dynamic quantization: fp32 in and out, about a quarter of the weight bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return torch.ao.quantization.quantize_dynamic(loaded.model.eval(), {nn.GRU, nn.LSTM, nn.RNN, nn.Linear},
                                                      dtype=torch.qint8)


def export_torchscript(loaded: LoadedModel, path: str, check_paths: Sequence[str], int8: bool = False) -> ParityReport:
    """Trace the acoustic model (int8: after dynamic quantization) to a TorchScript file with the metadata as
    an extra file, load it back and compare. fp32 must match within tolerance; int8 reports its transcripts.
    Raises ExportError when tracing fails or fp32 parity does not hold."""
    features, lengths = check_features(loaded, check_audio(check_paths, loaded.features.sample_rate))
    model = _Wrapped(quantize_dynamic(loaded) if int8 else loaded.model.eval()).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(model, (features, lengths), check_trace=False)
    except Exception as error:
        raise ExportError(f"{loaded.name}: TorchScript trace failed ({str(error).splitlines()[0]})") from None
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata(loaded))})
    _atomic_write(path, buffer.getvalue())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reloaded = torch.jit.load(path, map_location="cpu")
    return compare(loaded, lambda x, n: reloaded(x, n), features, lengths,
                   PARITY_TOLERANCE["int8" if int8 else "fp32"], path)


def export_all(loaded: LoadedModel, output_dir: str, check_paths: Sequence[str],
               formats: Sequence[str] = ("onnx", "torchscript", "torchscript_int8")) -> Dict[str, Dict[str, object]]:
    """Every requested format into `output_dir` as <name>.<format suffix>; returns, per format, the file, its
    size in bytes and its parity report."""
    writers = {"onnx": (".onnx", lambda p: export_onnx(loaded, p, check_paths)),
               "torchscript": (".ts.pt", lambda p: export_torchscript(loaded, p, check_paths)),
               "torchscript_int8": (".int8.ts.pt", lambda p: export_torchscript(loaded, p, check_paths, int8=True))}
    unknown = [f for f in formats if f not in writers]
    if unknown:
        raise ExportError(f"formats={unknown}: choose from {', '.join(writers)}")
    if not check_paths:
        raise ExportError("no audio to check the export with: give at least one file")
    os.makedirs(output_dir, exist_ok=True)
    results = {}
    for name in formats:
        suffix, write = writers[name]
        path = os.path.join(output_dir, loaded.name + suffix)
        report = write(path)
        results[name] = {"path": path, "bytes": os.path.getsize(path), "parity": report.to_dict()}
        logger.info("%s: %s (%.1f MB), max |logit difference| %.3g, %d/%d transcripts equal", name, path,
                    os.path.getsize(path) / 1e6, report.max_abs_logit_difference, report.transcripts_equal,
                    report.utterances)
    return results


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = path + ".tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
