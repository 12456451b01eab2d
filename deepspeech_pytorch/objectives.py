"""Training objectives and the one training step that training.py and the benchmark share.

An objective maps a model's logits to a scalar loss: `objective(logits (batch, time, classes),
output_lengths (batch,), targets (sum of target lengths,), target_lengths (batch,)) -> loss`. CTC is the one
today (Graves et al., 2006, "Connectionist Temporal Classification"); a distillation loss (teacher logits
in, a KL term out) would be another entry of OBJECTIVES with the same call.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Protocol

import torch
from torch import Tensor, nn


class Objective(Protocol):
    name: str

    def __call__(self, logits: Tensor, output_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor: ...


class CTCObjective:
    """PyTorch's nn.CTCLoss on log-softmax of the logits, always in fp32 (mixed precision stops at the model):
    mean over the batch of each utterance's loss divided by its target length. Utterances whose transcript
    cannot fit their frames give an infinite loss; training leaves them out before (datasets.py's checks),
    so `zero_infinity` stays False and a non-finite loss is seen, not hidden as 0."""

    name = "ctc"

    def __init__(self, blank: int = 0, zero_infinity: bool = False):
        self.loss = nn.CTCLoss(blank=blank, reduction="mean", zero_infinity=zero_infinity)

    def __call__(self, logits: Tensor, output_lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (time, batch, classes)
        return self.loss(log_probs, targets, output_lengths, target_lengths)


OBJECTIVES: Dict[str, Callable[..., Objective]] = {"ctc": CTCObjective}


def build_objective(name: str = "ctc", blank: int = 0) -> Objective:
    if name not in OBJECTIVES:
        raise ValueError(f"objective={name!r}: choose from {', '.join(sorted(OBJECTIVES))}")
    return OBJECTIVES[name](blank=blank)


def forward_loss(network: nn.Module, objective: Objective, features: Tensor, feature_lengths: Tensor,
                 targets: Tensor, target_lengths: Tensor, autocast_dtype: Optional[torch.dtype] = None) -> Tensor:
    """The forward half of a training step: the model under torch.amp autocast (when `autocast_dtype` is
    fp16/bf16), the objective in fp32. features: (batch, freq, frames). Returns the scalar loss."""
    with torch.autocast(features.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        logits, output_lengths = network(features, feature_lengths)
    return objective(logits, output_lengths, targets, target_lengths)


def backward_step(loss: Tensor, parameters, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  max_grad_norm: float) -> Optional[float]:
    """The backward half: scaled backward pass, unscale, clip the gradient norm to `max_grad_norm`, step.
    Returns the gradient norm, or None (no step taken, gradients cleared, the fp16 scale lowered) when the
    gradients are not finite."""
    parameters = list(parameters)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    if not torch.isfinite(norm):
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return None
    scaler.step(optimizer)
    scaler.update()
    return float(norm)
