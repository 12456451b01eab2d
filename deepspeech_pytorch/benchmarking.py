"""Speed figures: training-step time, inference real-time factor, and training throughput and peak
memory across batch sizes and precisions (single process or under torchrun).

Random weights and noise inputs: speed does not depend on what the model has learned.
"""

from __future__ import annotations

import copy
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from deepspeech_pytorch.configs import FeatureConfig
from deepspeech_pytorch.distributed import DistributedInfo, all_reduce_sum, init_distributed
from deepspeech_pytorch.features import spectrogram
from deepspeech_pytorch.inference import LoadedModel, Transcriber, load_model, resolve_device
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.objectives import backward_step, build_objective, forward_loss
from deepspeech_pytorch.models import AcousticModel, build_model, count_parameters, presets

CHARACTERS_PER_SECOND = 12  # typical speech, for CTC targets of realistic length
AUTOCAST = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _timed(function: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> list:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return times


def _model(preset: str, device: torch.device) -> AcousticModel:
    if preset not in presets():
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(presets())}")
    return build_model(presets()[preset], FeatureConfig().num_features, len(Alphabet())).to(device)


def _noise(batch_size: int, seconds: float, seed: int, sample_rate: int = FeatureConfig().sample_rate) -> List[np.ndarray]:
    rng = np.random.default_rng(seed)
    samples = int(seconds * sample_rate)
    return [(0.1 * rng.standard_normal(samples)).astype(np.float32) for _ in range(batch_size)]


class _TrainingStep:
    """One forward + backward + optimiser step on a fixed random batch."""

    def __init__(self, model: torch.nn.Module, batch_size: int, seconds: float, device: torch.device,
                 precision: str = "fp32", seed: int = 0, features: Optional[FeatureConfig] = None,
                 alphabet: Optional[Alphabet] = None):
        features = features or FeatureConfig()
        alphabet = alphabet or Alphabet()
        waveforms = torch.from_numpy(np.stack(_noise(batch_size, seconds, seed, features.sample_rate))).to(device)
        lengths = torch.full((batch_size,), waveforms.shape[1], device=device)
        self.features, self.lengths = spectrogram(waveforms, lengths, features)
        target_length = max(1, int(seconds * CHARACTERS_PER_SECOND))
        generator = torch.Generator().manual_seed(seed)
        self.targets = torch.randint(1, len(alphabet), (batch_size * target_length,), generator=generator).to(device)
        self.target_lengths = torch.full((batch_size,), target_length, device=device)
        self.model, self.device, self.dtype = model, device, AUTOCAST[precision]
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        self.objective = build_objective("ctc")

    def __call__(self) -> None:  # the training loop's own step: forward_loss, then backward_step
        self.model.train()
        loss = forward_loss(self.model, self.objective, self.features, self.lengths, self.targets, self.target_lengths,
                            self.dtype)
        backward_step(loss, self.model.parameters(), self.optimizer, self.scaler, max_grad_norm=400.0)


def benchmark(preset: str = "ds2_small", batch_size: int = 8, seconds: float = 5.0, device: str = "auto",
              warmup: int = 2, repeats: int = 5, seed: int = 0, model_path: Optional[str] = None,
              bundled: bool = False) -> Dict[str, Any]:
    """Median training step (forward + backward + optimiser step) and inference RTF (waveform -> text)
    of a preset with random weights, or of a checkpoint (`model_path`, or `bundled`: the default model)
    with its own features."""
    torch.manual_seed(seed)
    target_device = resolve_device(device)
    if model_path is not None or bundled:
        loaded = load_model(model_path, target_device)
        model, features, name, alphabet = loaded.model, loaded.features, loaded.name, loaded.alphabet
    else:
        model, features, name, alphabet = _model(preset, target_device), FeatureConfig(), preset, Alphabet()
    train_times = _timed(_TrainingStep(copy.deepcopy(model), batch_size, seconds, target_device, seed=seed,
                                       features=features, alphabet=alphabet), target_device, warmup, repeats)
    waveforms = _noise(batch_size, seconds, seed, features.sample_rate)
    # noise input: voice-activity detection would drop it, so the model runs on all of it
    transcriber = Transcriber(LoadedModel(model.eval(), alphabet, features, name), batch_size=batch_size,
                              device=target_device, vad=False)
    infer_times = _timed(lambda: transcriber.transcribe_many(waveforms), target_device, warmup, repeats)
    infer_median = statistics.median(infer_times)
    return {
        "model": name,
        "parameters": count_parameters(model),
        "device": str(target_device),
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "input_seconds": seconds,
        "repeats": repeats,
        "train_step_ms": round(1000 * statistics.median(train_times), 1),
        "inference_batch_ms": round(1000 * infer_median, 1),
        "inference_rtf": round(infer_median / (batch_size * seconds), 5),
    }


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB; a process-lifetime peak
    return kilobytes / 1024 if sys.platform != "darwin" else kilobytes / 2**20


def _fits(preset: str, batch_size: int, seconds: float, device: torch.device, precision: str) -> bool:
    try:
        model = _model(preset, device)
        _TrainingStep(model, batch_size, seconds, device, precision)()
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(preset: str, seconds: float, device: torch.device, precision: str, limit: int = 4096) -> int:
    """The largest batch whose training step fits in GPU memory (doubling, then bisection)."""
    low, high = 0, 1
    while high <= limit and _fits(preset, high, seconds, device, precision):
        low, high = high, high * 2
    high = min(high, limit + 1)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _fits(preset, middle, seconds, device, precision) else (low, middle)
    return low


def throughput(preset: str = "ds2_small", batch_sizes: Sequence[int] = (1, 2, 4, 8), seconds: float = 5.0,
               precisions: Sequence[str] = ("fp32", "bf16"), device: str = "auto", warmup: int = 1, repeats: int = 3,
               find_largest_batch: bool = False) -> List[Dict[str, Any]]:
    """Training throughput and peak memory for each precision x batch size (per process batch).

    Under torchrun each process trains its own batch with DistributedDataParallel and the figures
    are totals over all processes. Batch sizes run in increasing order, since on the CPU the peak is
    the process's resident-set high-water mark.
    """
    info, target_device = init_distributed(device)
    rows = []
    for precision in precisions:
        if precision not in AUTOCAST:
            raise ValueError(f"unknown precision {precision!r}; choose from {sorted(AUTOCAST)}")
        for batch_size in sorted(batch_sizes):
            torch.manual_seed(0)
            model = _model(preset, target_device)
            network = _ddp(model, info, target_device)
            if target_device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(target_device)
            step = _TrainingStep(network, batch_size, seconds, target_device, precision, seed=info.rank)
            median = statistics.median(_timed(step, target_device, warmup, repeats))
            (peak,) = all_reduce_sum([_peak_memory_mb(target_device)], target_device)
            rows.append({
                "preset": preset, "device": target_device.type, "processes": info.world_size,
                "precision": precision, "batch_size": batch_size, "step_ms": round(1000 * median, 1),
                "utterances_per_s": round(info.world_size * batch_size / median, 2),
                "audio_seconds_per_s": round(info.world_size * batch_size * seconds / median, 1),
                "peak_memory_mb": round(peak / info.world_size, 1),
            })
        if find_largest_batch and target_device.type == "cuda":
            rows.append({"preset": preset, "precision": precision, "input_seconds": seconds,
                         "largest_batch": largest_batch(preset, seconds, target_device, precision)})
    return rows if info.is_main else []


def _ddp(model: torch.nn.Module, info: DistributedInfo, device: torch.device) -> torch.nn.Module:
    if not info.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def format_table(rows: List[Dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    widths = {c: max(len(c), *(len(str(row.get(c, ""))) for row in rows)) for c in columns}
    lines = [" | ".join(c.ljust(widths[c]) for c in columns), "-|-".join("-" * widths[c] for c in columns)]
    lines += [" | ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows]
    return "\n".join(lines)
