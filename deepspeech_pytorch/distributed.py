"""Multi-process training under torchrun: process-group set-up from the environment, and reductions.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs as a single process and
these helpers are no-ops. NCCL on GPUs, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


STORE_TIMEOUT = timedelta(minutes=10)


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
        backend = "nccl" if device.type == "cuda" else "gloo"
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is None:
            dist.init_process_group(backend=backend)
        else:
            # After an elastic restart the workers meet in the same store as the failed attempt; without
            # a per-attempt prefix a worker can read a dead peer's address and fail to connect.
            agent_hosts_store = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
            store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                                  is_master=not agent_hosts_store and rank == 0, timeout=STORE_TIMEOUT)
            dist.init_process_group(backend=backend, store=dist.PrefixStore(f"deepspeech/attempt_{attempt}", store),
                                    rank=rank, world_size=world_size)
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
