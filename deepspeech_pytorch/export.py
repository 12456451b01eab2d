"""Export a model for deployment: ONNX (self-describing, dynamic batch and time), TorchScript (a traced module
for mobile and C++), and int8 twins of each, every file checked for parity with the model it came from before
it is kept.

int8, PyTorch (`torchscript_int8`): static quantization of the convolutions (BatchNorm folded in, calibrated
on real audio with torch.ao.quantization observers) and dynamic quantization of the recurrent and linear
layers (int8 weights, activations quantized on the fly). int8, ONNX Runtime (`onnx_int8`): ONNX Runtime's
static QDQ quantization of the convolutions (the same calibration audio), its dynamic quantization of the
output MatMul, and int8 weights with a DequantizeLinear in front for the recurrent layers, since ONNX
Runtime has no int8 GRU/RNN kernel: the file is a quarter of the size, the recurrence itself runs in fp32.

The exported graph is the acoustic model alone: features (batch, freq, frames) and their lengths in, logits
(batch, time, classes) and output lengths out. What a runtime needs around it (the alphabet, the feature
settings, the time stride) is written into the ONNX file's metadata, as icefall's export scripts do, so the
file is all a deployment needs; TorchScript files carry the same JSON as an extra file.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from deepspeech_pytorch.audio import load_audio
from deepspeech_pytorch.checkpoint import check_output_folder
from deepspeech_pytorch.decoders import GreedyDecoder
from deepspeech_pytorch.features import FeatureExtractor, seconds_per_frame
from deepspeech_pytorch.inference import LoadedModel
from deepspeech_pytorch.metrics import error_counts

logger = logging.getLogger(__name__)

OPSET = 17
EXPORT_FORMAT = 1  # version of the metadata below
INPUT_NAMES = ("features", "lengths")
OUTPUT_NAMES = ("logits", "output_lengths")
PARITY_TOLERANCE = {"fp32": 1e-3, "int8": None}  # max |logit difference|; int8 is judged by its transcripts
INT8_MAX_CER = 0.02  # greedy transcripts of an int8 twin may differ from the model's by this character error rate
METADATA_FILE = "deepspeech_metadata.json"  # the extra file inside a TorchScript archive
FORMATS = {"onnx": ".onnx", "onnx_int8": ".int8.onnx", "torchscript": ".ts.pt", "torchscript_int8": ".int8.ts.pt"}


class ExportError(ValueError):
    """An export that failed or does not reproduce its model within tolerance."""


@dataclass
class ParityReport:
    """How an exported model compares with its source on the check audio."""

    max_abs_logit_difference: float
    transcripts_equal: int
    utterances: int
    mismatches: List[Tuple[str, str]]  # (source transcript, exported transcript)
    transcript_cer: float = 0.0  # character error rate of the exported transcripts against the source's

    def to_dict(self) -> Dict[str, object]:
        return dataclasses.asdict(self)


def metadata(loaded: LoadedModel, quantization: str = "none") -> Dict[str, str]:
    """What a runtime needs beside the graph, as strings (ONNX metadata_props are string pairs)."""
    described = loaded.model.describe()
    return {
        "quantization": quantization,
        "deepspeech_export_format": str(EXPORT_FORMAT),
        "model_name": loaded.name,
        "architecture": described["architecture"],
        "summary": described["summary"],
        "parameters": str(described["parameters"]),  # the source model's count (an int8 twin's too)
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
            what: str, max_cer: Optional[float] = None) -> ParityReport:
    """Run the exported model (`run(features, lengths) -> (logits, output_lengths)` as tensors) beside the
    source and compare logits and greedy transcripts. ExportError when the logits differ by more than
    `tolerance` or any transcript differs (fp32), or, with `max_cer`, when the exported greedy transcripts
    differ from the source's by a character error rate above it (int8: logits are only reported)."""
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
    counts = error_counts(source, exported)
    changed = counts.char_edits / max(1, counts.reference_chars)
    report = ParityReport(difference, len(source) - len(mismatches), len(source), mismatches, changed)
    if tolerance is not None and (difference > tolerance or mismatches):
        raise ExportError(f"{what}: does not reproduce the model (max |logit difference| {difference:.3g} > "
                          f"{tolerance:g}, or {len(mismatches)} of {len(source)} transcripts differ)")
    if max_cer is not None and changed > max_cer:
        raise ExportError(f"{what}: int8 transcripts differ from the model's by CER {changed:.2%} > {max_cer:.2%} "
                          f"({len(mismatches)} of {len(source)} differ; max |logit difference| {difference:.3g})")
    return report


def _traceable(model: nn.Module) -> nn.Module:
    """`model` itself, or a shallow copy whose properties that raise read as None: the tracer reads every
    attribute of every module and stops at the first error other than AttributeError. DeepSpeech2 has no such
    property (its `latency_frames` is None for a bidirectional model, not an error), so it is traced as it is;
    this guards models added through the registry. The copy shares the model's parameters."""
    failing = {}
    for klass in type(model).__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, property) and name not in failing:
                try:
                    getattr(model, name)
                except AttributeError:
                    pass
                except Exception:  # noqa: BLE001 - any error the tracer would stop at
                    failing[name] = None
    if not failing:
        return model
    shallow = copy.copy(model)
    shallow.__class__ = type(type(model).__name__, (type(model),), {**failing, "__module__": type(model).__module__})
    return shallow


class _Wrapped(nn.Module):
    """The acoustic model with plain tensor outputs, for tracing."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = _traceable(model)

    def forward(self, features: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        return self.model(features, lengths)


def _onnx_bytes(model: nn.Module, features: Tensor, lengths: Tensor, opset: int, name: str) -> bytes:
    """The acoustic model traced to ONNX (TorchScript-based exporter, dynamic batch and frame axes)."""
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
            torch.onnx.export(_Wrapped(model.eval()), (features, lengths), buffer, dynamo=False, opset_version=opset,
                              input_names=list(INPUT_NAMES), output_names=list(OUTPUT_NAMES),
                              dynamic_axes={"features": {0: "batch", 2: "frames"}, "lengths": {0: "batch"},
                                            "logits": {0: "batch", 1: "time"}, "output_lengths": {0: "batch"}})
    except Exception as error:  # the exporter raises many kinds; the message says what it could not do
        raise ExportError(f"{name}: ONNX export failed ({str(error).splitlines()[0]})") from None
    return buffer.getvalue()


def _with_metadata(proto, values: Dict[str, str]):
    del proto.metadata_props[:]
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto


def onnx_session(path: str, threads: int = 0):
    """An ONNX Runtime CPU session for an exported file (threads 0: ONNX Runtime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _onnx_runner(path: str):
    session = onnx_session(path)

    def run(x: Tensor, n: Tensor) -> Tuple[Tensor, Tensor]:
        logits, out = session.run(None, {"features": x.numpy(), "lengths": n.numpy()})
        return torch.from_numpy(logits), torch.from_numpy(out)

    return run


def export_onnx(loaded: LoadedModel, path: str, check_paths: Sequence[str], opset: int = OPSET) -> ParityReport:
    """Write `loaded`'s acoustic model as ONNX (TorchScript-based exporter, dynamic batch and frame axes,
    metadata_props from `metadata()`), then run it in ONNX Runtime on the check audio and compare.
    Raises ExportError when it cannot be exported or does not match within PARITY_TOLERANCE["fp32"]."""
    import onnx

    features, lengths = check_features(loaded, check_audio(check_paths, loaded.features.sample_rate))
    proto = onnx.load_from_string(_onnx_bytes(loaded.model, features, lengths, opset, loaded.name))
    _atomic_write(path, _with_metadata(proto, metadata(loaded)).SerializeToString())
    return _kept_if_checked(path, lambda: compare(loaded, _onnx_runner(path), features, lengths,
                                                  PARITY_TOLERANCE["fp32"], path))


# ---- int8 ---------------------------------------------------------------------------------------------------

def fold_conv_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode where every Conv2d directly followed by a BatchNorm2d in a ModuleList or
    Sequential has the BatchNorm folded into its weights (the BatchNorm becomes an Identity): the same
    function, one layer fewer to quantize."""
    model = copy.deepcopy(model).eval()
    for container in model.modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)):
            continue
        items = list(container)
        for index in range(len(items) - 1):
            conv, norm = items[index], items[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                container[index] = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, norm)
                container[index + 1] = nn.Identity()
    return model


class StaticInt8ConvFrontEnd(nn.Module):
    """A masked conv front end (Conv2d [+ BatchNorm2d] + activation, padded steps zeroed after each layer) whose
    convolutions run in int8: quantize -> int8 conv (BatchNorm folded in) -> dequantize, then the activation
    and the mask in fp32. Calibrate with torch.ao.quantization.prepare/convert.

    x: (batch, channels, freq, time); lengths: (batch,) valid time steps. Same outputs as the front end it
    was built from, to int8 rounding.
    """

    def __init__(self, front_end: nn.Module):
        super().__init__()
        from torch.ao.quantization import DeQuantStub, QuantStub

        layers = list(fold_conv_batch_norm(front_end).layers)
        self.quantize, self.convs, self.dequantize, self.activations = (nn.ModuleList(), nn.ModuleList(),
                                                                        nn.ModuleList(), nn.ModuleList())
        self.time_arithmetic: List[Tuple[int, int, int]] = []  # (kernel, stride, padding) over time, per conv
        for layer in layers:
            if isinstance(layer, nn.Conv2d):
                self.quantize.append(QuantStub())
                self.convs.append(layer)
                self.dequantize.append(DeQuantStub())
                self.activations.append(nn.Sequential())
                self.time_arithmetic.append((layer.kernel_size[1], layer.stride[1], layer.padding[1]))
            elif not isinstance(layer, nn.Identity):
                if not self.convs:
                    raise ExportError(f"conv front end: {type(layer).__name__} before the first convolution")
                self.activations[-1].append(layer)

    def forward(self, x: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        from deepspeech_pytorch.models.deepspeech2 import conv_output_size, padding_mask

        for index, conv in enumerate(self.convs):
            x = self.activations[index](self.dequantize[index](conv(self.quantize[index](x))))
            kernel, stride, padding = self.time_arithmetic[index]
            lengths = conv_output_size(lengths, kernel, stride, padding)
            x = x.masked_fill(padding_mask(lengths, x.shape[3])[:, None, None, :], 0.0)
        return x, lengths


def calibration_features(loaded: LoadedModel, paths: Sequence[str]) -> List[Tuple[Tensor, Tensor]]:
    """Features (1, freq, frames) and lengths of each calibration file, one utterance at a time."""
    if not paths:
        raise ExportError("no calibration audio for the int8 convolutions: give at least one file")
    return [check_features(loaded, [samples]) for samples in check_audio(paths, loaded.features.sample_rate)]


def quantize_static_conv(loaded: LoadedModel, calibration: Sequence[Tuple[Tensor, Tensor]]) -> nn.Module:
    """A copy of the model whose masked conv front ends run in int8 (static quantization: activation ranges
    observed on `calibration`, (features, lengths) pairs, with the current quantized engine's default
    observers). A model without such a front end comes back as an fp32 copy (logged)."""
    from torch.ao import quantization
    from deepspeech_pytorch.models.deepspeech2 import MaskedConv

    model = copy.deepcopy(loaded.model).eval()
    fronts = [(name, module) for name, module in model.named_modules() if isinstance(module, MaskedConv)]
    if not fronts:
        logger.info("%s: no masked conv front end; its convolutions stay fp32", loaded.name)
        return model
    qconfig = quantization.get_default_qconfig(torch.backends.quantized.engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        replaced = []
        for name, front in fronts:
            static = StaticInt8ConvFrontEnd(front)
            static.qconfig = qconfig
            quantization.prepare(static, inplace=True)
            parent, _, attribute = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attribute, static)
            replaced.append(static)
        with torch.no_grad():
            for features, lengths in calibration:
                model(features, lengths)
        for static in replaced:
            quantization.convert(static, inplace=True)
    return model


def quantize_dynamic(loaded: LoadedModel, model: Optional[nn.Module] = None) -> nn.Module:
    """The model (or `model`, e.g. after `quantize_static_conv`) with its recurrent and linear layers quantized
    to int8 (weights; activations quantized on the fly), PyTorch's dynamic quantization: fp32 in and out,
    about a quarter of the weight bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        return torch.ao.quantization.quantize_dynamic((model if model is not None else loaded.model).eval(),
                                                      {nn.GRU, nn.LSTM, nn.RNN, nn.Linear}, dtype=torch.qint8)


def quantize_int8(loaded: LoadedModel, calibration: Optional[Sequence[Tuple[Tensor, Tensor]]] = None) -> nn.Module:
    """PyTorch int8: convolutions statically quantized on `calibration` (None: left fp32), recurrent and linear
    layers dynamically quantized."""
    static = quantize_static_conv(loaded, calibration) if calibration else copy.deepcopy(loaded.model).eval()
    return quantize_dynamic(loaded, static)


def export_torchscript(loaded: LoadedModel, path: str, check_paths: Sequence[str], int8: bool = False,
                       calibration_paths: Optional[Sequence[str]] = None,
                       max_cer: float = INT8_MAX_CER) -> ParityReport:
    """Trace the acoustic model (int8: `quantize_int8`, convolutions calibrated on `calibration_paths` unless
    that is empty) to a TorchScript file with the metadata as an extra file, load it back and compare. fp32
    must match within tolerance; int8 within `max_cer` of the model's greedy transcripts.
    Raises ExportError when tracing fails or parity does not hold."""
    features, lengths = check_features(loaded, check_audio(check_paths, loaded.features.sample_rate))
    quantization = "none"
    if int8:
        calibration = calibration_features(loaded, calibration_paths) if calibration_paths else None
        model = quantize_int8(loaded, calibration)
        quantization = ("torch static int8 convolutions; " if calibration else "") + \
            "torch dynamic int8 recurrent and linear layers"
    else:
        model = loaded.model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(_Wrapped(model).eval(), (features, lengths), check_trace=False)
    except Exception as error:
        raise ExportError(f"{loaded.name}: TorchScript trace failed ({str(error).splitlines()[0]})") from None
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer, _extra_files={METADATA_FILE: json.dumps(metadata(loaded, quantization))})
    _atomic_write(path, buffer.getvalue())

    def check() -> ParityReport:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reloaded = torch.jit.load(path, map_location="cpu")
        return compare(loaded, lambda x, n: reloaded(x, n), features, lengths,
                       None if int8 else PARITY_TOLERANCE["fp32"], path, max_cer if int8 else None)

    return _kept_if_checked(path, check)


def quantize_recurrent_weights(proto) -> int:
    """Store the input and recurrent weights (W, R) of every GRU/LSTM/RNN node as int8 with one scale per
    output row (symmetric, zero point 0), each behind a DequantizeLinear: ONNX Runtime has no int8 kernel
    for these ops, so this shrinks the file and leaves the arithmetic in fp32. Returns the nodes changed."""
    from onnx import helper, numpy_helper

    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    dequantize_nodes, changed = [], 0
    for node in graph.node:
        if node.op_type not in ("GRU", "LSTM", "RNN"):
            continue
        before = len(dequantize_nodes)
        for name in node.input[1:3]:  # W (directions, gates * hidden, input), R (directions, gates * hidden, hidden)
            if name not in initializers:
                continue
            weights = numpy_helper.to_array(initializers[name]).astype(np.float32)
            if weights.shape[0] != 1:  # one direction per node (the exporter's form); per-axis scales need it
                continue
            scale = np.maximum(np.abs(weights[0]).max(axis=1) / 127.0, np.finfo(np.float32).tiny).astype(np.float32)
            quantized = np.clip(np.round(weights / scale[None, :, None]), -127, 127).astype(np.int8)
            graph.initializer.remove(initializers.pop(name))
            graph.initializer.extend([numpy_helper.from_array(quantized, name + "_int8"),
                                      numpy_helper.from_array(scale, name + "_scale")])
            dequantize_nodes.append(helper.make_node("DequantizeLinear", [name + "_int8", name + "_scale"], [name],
                                                     name=name + "_DequantizeLinear", axis=1))
        changed += len(dequantize_nodes) > before
    for node in reversed(dequantize_nodes):
        graph.node.insert(0, node)
    return changed


class _CalibrationReader:
    """ONNX Runtime's CalibrationDataReader protocol over (features, lengths) pairs."""

    def __init__(self, calibration: Sequence[Tuple[Tensor, Tensor]]):
        self.feeds = iter([{"features": x.numpy(), "lengths": n.numpy()} for x, n in calibration])

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        return next(self.feeds, None)


def export_onnx_int8(loaded: LoadedModel, path: str, check_paths: Sequence[str],
                     calibration_paths: Optional[Sequence[str]] = None, per_channel: bool = True,
                     max_cer: float = INT8_MAX_CER, opset: int = OPSET, conv: str = "static",
                     matmul: bool = True, recurrent: bool = True, reduce_range: bool = False) -> ParityReport:
    """Write an int8 ONNX file: BatchNorm folded into the convolutions, which ONNX Runtime quantizes
    (`conv`: "static" QDQ with activation ranges calibrated on `calibration_paths`, fused to QLinearConv at
    load; without calibration audio they stay fp32; "dynamic": ConvInteger; "fp32"), the output MatMul
    dynamically quantized (`matmul`), and the recurrent layers' weights stored in int8 (`recurrent`, see
    `quantize_recurrent_weights`). `per_channel` and `reduce_range` (7-bit weights) are ONNX Runtime's options.
    Then run it in ONNX Runtime on the check audio: ExportError when its greedy transcripts differ from the
    model's by a CER above `max_cer`."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic as ort_quantize_dynamic, \
        quantize_static as ort_quantize_static

    if conv not in ("static", "dynamic", "fp32"):
        raise ExportError(f"conv={conv!r}: choose static, dynamic or fp32")
    features, lengths = check_features(loaded, check_audio(check_paths, loaded.features.sample_rate))
    calibration = calibration_features(loaded, calibration_paths) if calibration_paths and conv == "static" else None
    folded = fold_conv_batch_norm(loaded.model)
    options = ", ".join(name for name, on in (("per channel", per_channel), ("reduced range", reduce_range)) if on)
    steps = []
    with tempfile.TemporaryDirectory() as work:
        current = os.path.join(work, "fp32.onnx")
        with open(current, "wb") as handle:
            handle.write(_onnx_bytes(folded, features, lengths, opset, loaded.name))
        quiet = logging.getLogger()  # the quantizer warns on the root logger about pre-processing and bool tensors
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            if calibration:
                target = os.path.join(work, "conv.onnx")
                ort_quantize_static(current, target, _CalibrationReader(calibration), quant_format=QuantFormat.QDQ,
                                    op_types_to_quantize=["Conv"], per_channel=per_channel, reduce_range=reduce_range,
                                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
                current = target
                steps.append(f"static int8 convolutions (QDQ{', ' + options if options else ''})")
            dynamic = (["Conv"] if conv == "dynamic" else []) + (["MatMul"] if matmul else [])
            if dynamic:
                target = os.path.join(work, "dynamic.onnx")
                ort_quantize_dynamic(current, target, op_types_to_quantize=dynamic, per_channel=per_channel,
                                     reduce_range=reduce_range, weight_type=QuantType.QInt8)
                current = target
                steps.append(f"dynamic int8 {' and '.join(dynamic)}{' (' + options + ')' if options else ''}")
        except Exception as error:
            raise ExportError(f"{loaded.name}: ONNX Runtime quantization failed ({str(error).splitlines()[0]})") \
                from None
        finally:
            quiet.setLevel(level)
        proto = onnx.load(current)
    if recurrent and quantize_recurrent_weights(proto):
        steps.append("int8 recurrent weights (fp32 arithmetic)")
    _atomic_write(path, _with_metadata(proto, metadata(loaded, "onnxruntime " + "; ".join(steps))).SerializeToString())
    return _kept_if_checked(path, lambda: compare(loaded, _onnx_runner(path), features, lengths, None, path, max_cer))


def export_all(loaded: LoadedModel, output_dir: str, check_paths: Sequence[str],
               formats: Sequence[str] = tuple(FORMATS),
               calibration_paths: Optional[Sequence[str]] = None, static_conv: bool = True,
               int8_max_cer: float = INT8_MAX_CER) -> Dict[str, Dict[str, object]]:
    """Every requested format (FORMATS) into `output_dir` as <name><suffix>; returns, per format, the file,
    its size in bytes and its parity report. int8 formats calibrate their convolutions on `calibration_paths`
    (None: the check audio) unless `static_conv` is false."""
    calibration = (list(calibration_paths) if calibration_paths else list(check_paths)) if static_conv else None
    writers = {"onnx": lambda p: export_onnx(loaded, p, check_paths),
               "onnx_int8": lambda p: export_onnx_int8(loaded, p, check_paths, calibration, max_cer=int8_max_cer),
               "torchscript": lambda p: export_torchscript(loaded, p, check_paths),
               "torchscript_int8": lambda p: export_torchscript(loaded, p, check_paths, int8=True,
                                                                calibration_paths=calibration, max_cer=int8_max_cer)}
    unknown = [f for f in formats if f not in writers]
    if unknown:
        raise ExportError(f"formats={unknown}: choose from {', '.join(writers)}")
    if not check_paths:
        raise ExportError("no audio to check the export with: give at least one file")
    check_output_folder(output_dir, "output_dir", ExportError)
    results = {}
    lm_files = copy_language_model(loaded, output_dir)
    if lm_files:
        results["language_model"] = {"paths": lm_files}
    for name in formats:
        path = os.path.join(output_dir, loaded.name + FORMATS[name])
        report = writers[name](path)
        results[name] = {"path": path, "bytes": os.path.getsize(path), "parity": report.to_dict()}
        logger.info("%s: %s (%.1f MB), max |logit difference| %.3g, %d/%d transcripts equal (CER %.2f%%)", name, path,
                    os.path.getsize(path) / 1e6, report.max_abs_logit_difference, report.transcripts_equal,
                    report.utterances, 100 * report.transcript_cer)
    return results


def copy_language_model(loaded: LoadedModel, output_dir: str) -> List[str]:
    """The KenLM, lexicon and tuned alpha/beta/beam the model ships (its `<name>.lm.json`), copied beside the
    exported files as `<name>.lm.bin`, `<name>.lexicon.txt` and `<name>.lm.json`, so beam search with an
    exported model (`<name>.onnx`, `<name>.int8.onnx`) uses the same LM. Returns the files written (none when
    the model ships no LM)."""
    lm = loaded.language_model
    if lm is None or not lm.path:
        return []
    written = []
    settings = {"path": f"{loaded.name}.lm.bin", "alpha": lm.alpha, "beta": lm.beta}
    shutil.copyfile(lm.path, os.path.join(output_dir, settings["path"]))
    written.append(os.path.join(output_dir, settings["path"]))
    if lm.lexicon_path:
        settings["lexicon_path"] = f"{loaded.name}.lexicon.txt"
        shutil.copyfile(lm.lexicon_path, os.path.join(output_dir, settings["lexicon_path"]))
        written.append(os.path.join(output_dir, settings["lexicon_path"]))
    if loaded.lm_beam_size is not None:
        settings["beam_size"] = loaded.lm_beam_size
    path = os.path.join(output_dir, f"{loaded.name}.lm.json")
    _atomic_write(path, (json.dumps(settings, indent=2) + "\n").encode())
    written.append(path)
    return written


def _kept_if_checked(path: str, check) -> ParityReport:
    """Run the parity `check()` on the file just written at `path`; remove the file when it fails."""
    try:
        return check()
    except Exception:
        if os.path.exists(path):
            os.remove(path)
        raise


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
