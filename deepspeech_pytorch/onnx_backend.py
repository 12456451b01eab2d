"""The ONNX Runtime backend: an exported acoustic model (`export.py`) run without importing torch.

An exported file is self-describing: its metadata (`export.metadata()`) holds the alphabet, the feature
settings and the time stride, so the file alone (plus the `<stem>.lm.json` LM settings beside it, if any)
is all `inference.load_model` needs. The graph maps features (batch, freq, frames) and their lengths to
logits (batch, time, classes) and output lengths; fp32 and int8 (ONNX Runtime's quantizer) files alike.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.labels import Alphabet

ONNX_SUFFIX = ".onnx"
REQUIRED_METADATA = ("labels", "feature_config", "time_stride")
INPUT_NAMES = ("features", "lengths")  # export.INPUT_NAMES


class ModelFileError(ValueError):
    """An exported model file that cannot be used: missing, not ONNX, or without the metadata it needs."""


def import_onnxruntime() -> Any:
    """onnxruntime, imported with its telemetry off unless the user chose otherwise: since 1.32 its Linux wheels
    start Microsoft's 1DS telemetry at import, which writes a `.ses` file into TMPDIR (a server must leave no
    files behind) and queues usage events for upload. ORT_DISABLE_TELEMETRY=1, set before the first import,
    turns it off for the process; a value the user set is kept. ImportError when onnxruntime is missing."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def is_onnx(path: Optional[str]) -> bool:
    return path is not None and str(path).lower().endswith(ONNX_SUFFIX)


def folder_hint(folder: str) -> str:
    """`; it holds a.pt, b.onnx` for a model path that is a folder: the files in it that load_model takes
    (checkpoints and ONNX files; not TorchScript exports, which it refuses), or "" when there is none."""
    inside = sorted(name for name in os.listdir(folder)
                    if name.endswith((".pt", ".pth", ".ckpt", ONNX_SUFFIX)) and not name.endswith(".ts.pt"))
    return f"; it holds {', '.join(inside[:5])}" if inside else ""


def _providers(onnxruntime: Any, device: Optional[str], path: str) -> list:
    """ONNX Runtime execution providers for a device setting: auto takes CUDA when this onnxruntime has it."""
    device = "auto" if device is None else str(device)
    available = onnxruntime.get_available_providers()
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ModelFileError(f"{path}: device={device} was asked for, but this onnxruntime has no CUDA "
                                 f"provider (pip install onnxruntime-gpu), or use device=cpu")
        index = device.partition(":")[2] or "0"
        return [("CUDAExecutionProvider", {"device_id": int(index)}), "CPUExecutionProvider"]
    if device == "auto" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def usable_cpus() -> Optional[int]:
    """CPUs this process may run on when fewer than the machine has (taskset, a container's cpuset), else None.
    ONNX Runtime sizes its pool by the machine's cores, and threads beyond the usable CPUs only contend."""
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return allowed if allowed < (os.cpu_count() or allowed) else None


def session_options(onnxruntime: Any, threads: Optional[int] = None) -> Any:
    """One inference at a time per session: intra-op threads on the physical cores (ONNX Runtime's own
    default; the usable CPUs where the process is restricted to fewer; or `threads`), no inter-op pool,
    all graph optimisations. Idle pool threads sleep instead of spinning: measured on 2 CPUs, the bundled
    model runs a 5 s clip in the same time (0.11 s) and spinning threads only took CPU from the VAD, the
    decoder and the server's event loop."""
    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    threads = threads or usable_cpus()
    if threads:
        options.intra_op_num_threads = int(threads)
    return options


def _varint(data: bytes, position: int) -> Tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: bytes, start: int, end: int):
    """(field number, wire type, value) of the protobuf message in data[start:end]: a varint's value, or the
    (start, end) of a length-delimited field; fixed-size fields are skipped (value None)."""
    position = start
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = _varint(data, position)
        elif wire == 2:
            size, position = _varint(data, position)
            value, position = (position, position + size), position + size
        elif wire in (1, 5):
            value, position = None, position + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def initializer_elements(path: str) -> int:
    """Elements in the initializers of the ONNX file at `path` (weights, biases, an int8 file's scales and zero
    points), summed: its parameter count when the export's metadata has none. Reads the protobuf directly
    (ModelProto.graph = 7, GraphProto.initializer = 5, TensorProto.dims = 1), so the onnx package is not needed.
    Raises ModelFileError for a file that is not a readable ONNX protobuf."""
    with open(path, "rb") as handle:
        data = handle.read()
    total = 0
    try:
        for number, wire, graph in _fields(data, 0, len(data)):
            if number != 7 or wire != 2:
                continue
            for inner, inner_wire, tensor in _fields(data, *graph):
                if inner != 5 or inner_wire != 2:
                    continue
                dims: list = []
                for field, field_wire, value in _fields(data, *tensor):
                    if field == 1 and field_wire == 0:
                        dims.append(value)
                    elif field == 1 and field_wire == 2:  # packed
                        position, stop = value
                        while position < stop:
                            dim, position = _varint(data, position)
                            dims.append(dim)
                count = 1
                for dim in dims:
                    count *= dim
                total += count
    except (IndexError, ValueError) as error:
        raise ModelFileError(f"{path}: cannot count its initializers ({error or 'truncated'})") from None
    return total


class OnnxAcousticModel:
    """An exported acoustic model in an ONNX Runtime session: numpy features in, numpy logits out.

    Offers what the inference API reads from a torch model: `time_stride`, `describe()`, and a call
    (features (batch, freq, frames) float32, lengths (batch,) int64) -> (logits (batch, time, classes)
    float32, output lengths (batch,) int64)."""

    def __init__(self, session: Any, path: str, metadata: Dict[str, str]):
        self.session = session
        self.path = path
        self.metadata = metadata
        try:
            self.time_stride = int(metadata["time_stride"])
        except ValueError:
            raise ModelFileError(f"{path}: metadata time_stride={metadata['time_stride']!r} is not an integer") from None
        self.providers = session.get_providers()
        self._parameters: Optional[int] = None  # describe(): the metadata's count, else the initializers'
        self._inputs = [entry.name for entry in session.get_inputs()]
        if tuple(self._inputs[:2]) != INPUT_NAMES:
            raise ModelFileError(f"{path}: expected inputs {', '.join(INPUT_NAMES)}, the graph has "
                                 f"{', '.join(self._inputs) or 'none'}")

    def describe(self) -> Dict[str, Any]:
        """As `AcousticModel.describe()`, from the export's metadata; parameters: the count the export stored, else
        the elements of the graph's initializers (files exported before export.py stored it)."""
        if self._parameters is None:
            stored = self.metadata.get("parameters")
            self._parameters = int(stored) if stored and stored.isdigit() else initializer_elements(self.path)
        return {"architecture": self.metadata.get("architecture", "unknown"),
                "summary": self.metadata.get("summary", self.metadata.get("architecture", "unknown")),
                "parameters": self._parameters}

    def __call__(self, features: np.ndarray, lengths: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        logits, output_lengths = self.session.run(None, {"features": np.ascontiguousarray(features, dtype=np.float32),
                                                          "lengths": np.asarray(lengths, dtype=np.int64)})[:2]
        return logits, output_lengths


def _feature_config(raw: str, path: str) -> FeatureConfig:
    try:
        values = json.loads(raw)
        known = {f.name for f in dataclasses.fields(FeatureConfig)}
        return FeatureConfig(**{key: value for key, value in values.items() if key in known})
    except (ValueError, TypeError, AttributeError) as error:
        raise ModelFileError(f"{path}: unreadable feature_config in its metadata ({error})") from None


def _alphabet(raw: str, path: str) -> Alphabet:
    try:
        labels = json.loads(raw)
        if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
            raise ValueError("expected a JSON list of labels")
        return Alphabet(labels=tuple(labels))
    except ValueError as error:
        raise ModelFileError(f"{path}: unreadable labels in its metadata ({error})") from None


def load_onnx(path: str, device: Optional[str] = "cpu",
              threads: Optional[int] = None) -> Tuple[OnnxAcousticModel, Alphabet, FeatureConfig, str]:
    """An exported model: (model, alphabet, feature settings, name). Raises ModelFileError naming the file
    when it is missing, not ONNX, or lacks the metadata `export.py` writes."""
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file" if not os.path.isdir(path) else f"{path}: is a folder")
    try:
        onnxruntime = import_onnxruntime()
    except ImportError:
        raise ModelFileError(f"{path}: running an ONNX model needs onnxruntime: pip install "
                             "'deepspeech-pytorch[onnx]' (or pip install onnxruntime)") from None
    onnxruntime.set_default_logger_severity(3)  # its notes on unused initialisers and the like
    try:
        session = onnxruntime.InferenceSession(path, sess_options=session_options(onnxruntime, threads),
                                               providers=_providers(onnxruntime, device, path))
    except ModelFileError:
        raise
    except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidProtobuf, ...)
        message = str(error).strip().splitlines()
        raise ModelFileError(f"{path}: not a usable ONNX model ({message[-1] if message else type(error).__name__})") from None
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise ModelFileError(f"{path}: its metadata lacks {', '.join(missing)}; export the model with export.py, "
                             "which writes them")
    features = _feature_config(metadata["feature_config"], path)
    alphabet = _alphabet(metadata["labels"], path)
    name = metadata.get("model_name") or os.path.splitext(os.path.basename(path))[0]
    return OnnxAcousticModel(session, path, metadata), alphabet, features, name


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis, in float32."""
    logits = np.asarray(logits, dtype=np.float32)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
