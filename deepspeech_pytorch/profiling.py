"""Where the time goes: parameters, MACs and FLOPs per second of audio for every layer of a model, the time
of each stage of the transcription path (features, each layer, greedy and beam decoding) at a few batch
sizes, and how close each layer comes to the CPU's peak fp32 FLOP/s, measured in the same run (`peak_flops`).

The peak is the fastest fp32 matrix product this PyTorch has: the BLAS behind `torch.mm` (MKL) and oneDNN's,
which PyTorch's convolutions and mkldnn linear layers use. They can differ twofold: on AMD CPUs MKL runs its
AVX2 code while oneDNN uses AVX-512, so a convolution ran at 137% of a peak measured with `torch.mm` alone.
Each is measured with the profile's threads and on one thread; the peak is the larger of the first and
threads x the second (what that many cores can do at most, so a neighbour's load during the measurement
does not lower it). Every stage's achieved FLOP/s is then at most the peak (`fraction_of_matmul_peak` <= 1).

Operations are counted by PyTorch's `torch.utils.flop_counter.FlopCounterMode`, never by hand. It counts
matrix products and convolutions (one multiply-add = 2 FLOPs). On the CPU a GRU/LSTM/RNN runs as one
`addmm` per step and gate (input and recurrent products), so recurrent layers are counted from the products
it sees; elementwise work (gate nonlinearities, BatchNorm, masking, the log-softmax) and the FFT of the
features are not counted.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from deepspeech_pytorch.decoders import build_decoder
from deepspeech_pytorch.features import FeatureExtractor, seconds_per_frame
from deepspeech_pytorch.inference import LoadedModel

logger = logging.getLogger(__name__)

NOT_COUNTED = "elementwise ops (gate nonlinearities, BatchNorm, masking, log-softmax), the features' FFT"
MATMUL_SIZE = 2048  # square fp32 matmul that measures the CPU's attainable FLOP/s with the profile's threads
SINGLE_THREAD_SIZE = 1024  # the same on one thread (large enough to reach a core's peak, short enough to repeat)


def stages(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The model's layers to report: its direct children, with each ModuleList expanded to its items
    ("conv", "rnns.0", ..., "head" for DeepSpeech2). Children without parameters or that are None are left out."""
    found = []
    for name, child in model.named_children():
        if isinstance(child, nn.ModuleList):
            found.extend((f"{name}.{index}", item) for index, item in enumerate(child))
        elif child is not None:
            found.append((name, child))
    return [(name, module) for name, module in found if any(True for _ in module.parameters())]


def count_flops(model: nn.Module, features: Tensor, lengths: Tensor) -> Tuple[Dict[str, int], int]:
    """FLOPs of one forward pass per stage (`stages()` names) and in total, as FlopCounterMode counts them."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(features, lengths)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per_stage = {name: int(sum(counts.get(f"{root}.{name}", {}).values())) for name, _ in stages(model)}
    return per_stage, int(sum(counts.get("Global", {}).values()))


def _gemm(kernel: str, size: int) -> Callable[[], Any]:
    """One (size x size) @ (size x size) fp32 product by `kernel`: "blas" (torch.mm) or "onednn"."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    if kernel == "blas":
        return lambda: torch.mm(a, b)
    a_mkldnn, b_mkldnn = a.to_mkldnn(), b.to_mkldnn()
    return lambda: torch._C._nn.mkldnn_linear(a_mkldnn, b_mkldnn)  # a @ b.T, oneDNN's inner-product kernel


def gemm_kernels() -> List[str]:
    """The fp32 matrix-product kernels this PyTorch has on the CPU: always the BLAS, and oneDNN where built in."""
    kernels = ["blas"]
    if torch.backends.mkldnn.is_available():
        try:
            _gemm("onednn", 8)()
            kernels.append("onednn")
        except (RuntimeError, AttributeError):  # a build without the private entry point
            pass
    return kernels


def matmul_flops_per_second(size: int = MATMUL_SIZE, repeats: int = 10, kernel: str = "blas") -> float:
    """The best FLOP/s of a (size x size) @ (size x size) fp32 matmul on the CPU by `kernel` (blas, onednn),
    with the current threads."""
    product = _gemm(kernel, size)
    return 2 * size ** 3 / _best_time(product, 1, repeats)


def peak_flops(threads: int, repeats: int = 10) -> Dict[str, Any]:
    """The CPU's peak fp32 FLOP/s for `threads` threads: {"flops_per_s", "kernel" (the fastest), "measured":
    kernel -> {"threads": FLOP/s with `threads`, "one_thread": FLOP/s on one}}. The peak is the largest of each
    kernel's `threads` figure and `threads` x its one-thread figure (the cores' ceiling: a measurement with all
    threads is lowered by any other load on the machine, a stage's best run may not be)."""
    previous = torch.get_num_threads()
    measured: Dict[str, Dict[str, float]] = {}
    try:
        for kernel in gemm_kernels():
            torch.set_num_threads(threads)
            many = matmul_flops_per_second(MATMUL_SIZE, repeats, kernel)
            torch.set_num_threads(1)
            one = matmul_flops_per_second(SINGLE_THREAD_SIZE, 2 * repeats, kernel)
            measured[kernel] = {"threads": many, "one_thread": one}
    finally:
        torch.set_num_threads(previous)
    bounds = {kernel: max(m["threads"], threads * m["one_thread"]) for kernel, m in measured.items()}
    best = max(bounds, key=bounds.get)
    return {"flops_per_s": bounds[best], "kernel": best, "measured": measured}


class _StageTimer:
    """Forward pre/post hooks that add up the wall time spent inside each stage module."""

    def __init__(self, named: Sequence[Tuple[str, nn.Module]]):
        self.seconds: Dict[str, float] = defaultdict(float)
        self._started: Dict[str, float] = {}
        self._handles = []
        for name, module in named:
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name: str) -> Callable:
        def hook(module, inputs):
            self._started[name] = time.perf_counter()
        return hook

    def _leave(self, name: str) -> Callable:
        def hook(module, inputs, output):
            self.seconds[name] += time.perf_counter() - self._started.pop(name)
        return hook

    def reset(self) -> None:
        self.seconds.clear()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _batch(clips: Sequence[np.ndarray], batch_size: int, samples: int) -> Tuple[Tensor, Tensor]:
    """(batch, samples) waveforms: the clips in turn, each cut or repeated to `samples`."""
    rows = []
    for index in range(batch_size):
        clip = clips[index % len(clips)]
        rows.append(np.resize(clip, samples).astype(np.float32))
    return torch.from_numpy(np.stack(rows)), torch.full((batch_size,), samples)


def _best_time(function: Callable[[], Any], warmup: int, repeats: int) -> float:
    """The shortest of `repeats` runs: on a shared machine the least disturbed one."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def profile(loaded: LoadedModel, clips: Sequence[np.ndarray], seconds: float = 5.0,
            batch_sizes: Sequence[int] = (1, 8), warmup: int = 1, repeats: int = 5,
            beam_repeats: int = 1) -> Dict[str, Any]:
    """Profile `loaded` on `clips` (waveforms at the model's rate, each cut or repeated to `seconds`).

    Returns {"layers": one row per stage with parameters, MACs and FLOPs per second of audio; "timing": one
    row per batch size and stage with milliseconds per batch (best of `repeats`), share of the greedy path
    (features + model + greedy decoding) and achieved GFLOP/s and, on the CPU, its fraction of the peak;
    "matmul_gflops" (the peak, `peak_flops`; None off the CPU), "matmul_kernel", "matmul_kernels_gflops",
    "threads", ...}. Beam search uses the model's
    own language model when it ships one (else it is left out)."""
    model = loaded.model.eval()
    device = next(model.parameters()).device
    samples = int(seconds * loaded.features.sample_rate)
    extractor = FeatureExtractor(loaded.features).to(device)
    frame_seconds = seconds_per_frame(loaded.features) * model.time_stride
    greedy = build_decoder("greedy", loaded.alphabet, frame_seconds)
    beam = build_decoder("beam", loaded.alphabet, frame_seconds, loaded.model_lm) if loaded.model_lm else None
    named = stages(model)

    waveforms, lengths = _batch(clips, 1, samples)
    features, frames = extractor(waveforms.to(device), lengths.to(device))
    per_stage, total = count_flops(model, features, frames)
    layers = []
    for name, module in named:
        flops = per_stage[name]
        layers.append({"layer": name, "type": type(module).__name__,
                       "parameters": sum(p.numel() for p in module.parameters()),
                       "macs_per_audio_s": round(flops / 2 / seconds), "flops_per_audio_s": round(flops / seconds)})
    layers.append({"layer": "total", "type": type(model).__name__,
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "macs_per_audio_s": round(total / 2 / seconds), "flops_per_audio_s": round(total / seconds)})

    threads = torch.get_num_threads()
    on_cpu = device.type == "cpu"  # the peak is the CPU's: another device's stages get no fraction of it
    peak_before = peak_flops(threads) if on_cpu else None
    timer = _StageTimer(named)
    timing = []
    measured_rows = []  # (row, FLOPs, seconds): fractions are filled in once the peak is known
    try:
        for batch_size in batch_sizes:
            waveforms, lengths = _batch(clips, batch_size, samples)
            waveforms, lengths = waveforms.to(device), lengths.to(device)
            with torch.inference_mode():
                features, frames = extractor(waveforms, lengths)
                feature_time = _best_time(lambda: extractor(waveforms, lengths), warmup, repeats)
                model(features, frames)
                stage_times: Dict[str, List[float]] = defaultdict(list)
                model_times = []
                for _ in range(repeats):
                    timer.reset()
                    started = time.perf_counter()
                    logits, output_lengths = model(features, frames)
                    model_times.append(time.perf_counter() - started)
                    for name, value in timer.seconds.items():
                        stage_times[name].append(value)
                log_probs = torch.log_softmax(logits.float(), dim=-1).cpu()
            output_lengths = output_lengths.cpu()
            rows = [("features", feature_time, None)]
            rows += [(name, min(stage_times[name]), per_stage[name] * batch_size) for name, _ in named]
            rows.append(("model total", min(model_times), total * batch_size))
            rows.append(("decoder greedy", _best_time(lambda: greedy.decode(log_probs, output_lengths), warmup,
                                                        repeats), None))
            if beam is not None:
                rows.append(("decoder beam+LM", _best_time(lambda: beam.decode(log_probs, output_lengths), 0,
                                                            beam_repeats), None))
            whole = feature_time + min(model_times) + rows[-1 if beam is None else -2][1]
            audio = batch_size * seconds
            for name, elapsed, flops in rows:
                row = {"batch_size": batch_size, "stage": name, "ms": round(1000 * elapsed, 2),
                       "ms_per_audio_s": round(1000 * elapsed / audio, 3),
                       "share_of_greedy_path": round(elapsed / whole, 3) if name != "decoder beam+LM" else None}
                if flops:
                    row["gflops_per_s"] = round(flops / elapsed / 1e9, 2)
                    measured_rows.append((row, flops, elapsed))
                timing.append(row)
    finally:
        timer.remove()
    if not on_cpu:
        return {"model": loaded.name, "summary": model.describe().get("summary"), "device": str(device),
                "threads": threads, "input_seconds": seconds, "matmul_gflops": None,
                "not_counted": NOT_COUNTED, "layers": layers, "timing": timing}
    peak_after = peak_flops(threads)  # twice, before and after: a disturbance in one window does not set the peak
    found = max((peak_before, peak_after), key=lambda p: p["flops_per_s"])
    peak = found["flops_per_s"]
    for row, flops, elapsed in measured_rows:
        row["fraction_of_matmul_peak"] = round(flops / elapsed / peak, 3)
        if flops / elapsed > peak:
            logger.warning("%s at batch %d ran at %.1f GFLOP/s, above the measured peak of %.1f: the peak "
                           "measurement was disturbed (a loaded machine?); run the profile again",
                           row["stage"], row["batch_size"], flops / elapsed / 1e9, peak / 1e9)
    kernels = {kernel: {key: round(value / 1e9, 1) for key, value in figures.items()}
               for kernel, figures in found["measured"].items()}
    return {"model": loaded.name, "summary": model.describe().get("summary"), "device": str(device),
            "threads": threads, "input_seconds": seconds,
            "matmul_gflops": round(peak / 1e9, 1), "matmul_size": MATMUL_SIZE, "matmul_kernel": found["kernel"],
            "matmul_kernels_gflops": kernels,
            "not_counted": NOT_COUNTED,
            "layers": layers, "timing": timing}


def format_profile(result: Dict[str, Any]) -> str:
    """The profile as two text tables (layers; time per stage)."""
    head = f"{result['model']} ({result['summary']}), {result['threads']} threads, {result['device']}"
    if result["matmul_gflops"] is not None:
        measured = ", ".join(f"{kernel} {figures['threads']} ({figures['one_thread']} on one thread)"
                             for kernel, figures in result["matmul_kernels_gflops"].items())
        head += (f"; peak fp32 matmul: {result['matmul_gflops']} GFLOP/s ({result['matmul_kernel']}; measured "
                 f"GFLOP/s: {measured})")
    lines = [head,
             f"{'layer':<12} {'type':<18} {'params':>11} {'MMACs/audio s':>14} {'MFLOPs/audio s':>15}"]
    for row in result["layers"]:
        lines.append(f"{row['layer']:<12} {row['type']:<18} {row['parameters']:>11,} "
                     f"{row['macs_per_audio_s'] / 1e6:>14.1f} "
                     f"{row['flops_per_audio_s'] / 1e6:>15.1f}")
    lines.append("")
    lines.append(f"{'batch':>5} {'stage':<16} {'ms':>9} {'ms/audio s':>11} {'share':>6} {'GFLOP/s':>8} {'of peak':>8}")
    for row in result["timing"]:
        share = "" if row["share_of_greedy_path"] is None else f"{100 * row['share_of_greedy_path']:.1f}%"
        gflops = "" if "gflops_per_s" not in row else f"{row['gflops_per_s']:.1f}"
        fraction = "" if "fraction_of_matmul_peak" not in row else f"{100 * row['fraction_of_matmul_peak']:.1f}%"
        lines.append(f"{row['batch_size']:>5} {row['stage']:<16} {row['ms']:>9.2f} {row['ms_per_audio_s']:>11.3f} "
                     f"{share:>6} {gflops:>8} {fraction:>8}")
    lines.append(f"not counted: {result['not_counted']}")
    return "\n".join(lines)
