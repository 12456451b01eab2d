"""Speed figures: training-step time and inference real-time factor for a preset, batch size and input length.

Random weights and noise inputs: speed does not depend on what the model has learned.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Dict

import numpy as np
import torch

from deepspeech_pytorch.configs import PRESETS, FeatureConfig
from deepspeech_pytorch.features import spectrogram
from deepspeech_pytorch.inference import LoadedModel, Transcriber, resolve_device
from deepspeech_pytorch.labels import Alphabet
from deepspeech_pytorch.model import DeepSpeech2, count_parameters


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


def benchmark(preset: str = "ds2_small", batch_size: int = 8, seconds: float = 5.0, device: str = "auto",
              warmup: int = 2, repeats: int = 5, seed: int = 0) -> Dict[str, Any]:
    """Median training step (forward + backward + optimiser step) and inference RTF (waveform -> text)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    torch.manual_seed(seed)
    target_device = resolve_device(device)
    features = FeatureConfig()
    alphabet = Alphabet()
    model = DeepSpeech2(PRESETS[preset], features.num_features, len(alphabet)).to(target_device)
    samples = int(seconds * features.sample_rate)
    rng = np.random.default_rng(seed)
    waveforms = [(0.1 * rng.standard_normal(samples)).astype(np.float32) for _ in range(batch_size)]

    batch = torch.from_numpy(np.stack(waveforms)).to(target_device)
    lengths = torch.full((batch_size,), samples, device=target_device)
    feats, frame_lengths = spectrogram(batch, lengths, features)
    target_length = max(1, int(seconds * 12))  # about 12 characters a second of speech
    targets = torch.randint(1, len(alphabet), (batch_size * target_length,), device=target_device)
    target_lengths = torch.full((batch_size,), target_length, device=target_device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctc = torch.nn.CTCLoss(zero_infinity=True)

    def train_step() -> None:
        model.train()
        logits, output_lengths = model(feats, frame_lengths)
        loss = ctc(torch.log_softmax(logits.float(), -1).transpose(0, 1), targets, output_lengths, target_lengths)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    train_times = _timed(train_step, target_device, warmup, repeats)
    transcriber = Transcriber(LoadedModel(model.eval(), alphabet, features, preset), batch_size=batch_size,
                              device=target_device)
    infer_times = _timed(lambda: transcriber.transcribe_many(waveforms), target_device, warmup, repeats)
    infer_median = statistics.median(infer_times)
    return {
        "preset": preset,
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
