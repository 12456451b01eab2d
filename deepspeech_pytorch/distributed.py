"""Multi-process training under torchrun: process-group set-up from the environment, and reductions.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs as a single process and
these helpers are no-ops. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_setting: str) -> tuple[DistributedInfo, torch.device]:
    """Join the process group torchrun describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    info = DistributedInfo(rank, world_size, local_rank)
    wants_cuda = device_setting.startswith("cuda") or (device_setting == "auto" and torch.cuda.is_available())
    if wants_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device_setting} was requested but CUDA is not available")
    if info.enabled and wants_cuda:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif wants_cuda:
        device = torch.device(device_setting if device_setting != "auto" else "cuda")
    else:
        device = torch.device("cpu")
    if info.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list, device: torch.device) -> list:
    """Sum numbers across processes (unchanged when single-process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def any_process(flag: bool, device: torch.device) -> bool:
    """True when `flag` is true on any process, so all processes take the same branch."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
