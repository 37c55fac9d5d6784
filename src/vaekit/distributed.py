"""Data-parallel training under torchrun (DistributedDataParallel): gloo on CPU, NCCL on CUDA.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; without them everything here is a no-op and the
trainer runs as one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> Dist:
    """Join the process group torchrun set up (once per process); a single process gets Dist()."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shard(indices: torch.Tensor, d: Dist) -> torch.Tensor:
    """This rank's contiguous share of one global batch of indices."""
    return indices.tensor_split(d.world_size)[d.rank] if d.enabled else indices


def any_rank(flag: bool, d: Dist, device) -> bool:
    """True on every rank when `flag` is true on any: ranks stop and skip steps together."""
    if not d.enabled:
        return flag
    t = torch.tensor([float(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def all_sum(t: torch.Tensor, d: Dist) -> torch.Tensor:
    if d.enabled:
        t = t.clone()
        dist.all_reduce(t)
    return t


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def close() -> bool:
    """Leave the process group once every rank is done; True on the main process. A rank that
    exited with the group alive (the others still writing the run's outputs) was once aborted at
    shutdown by its communication threads ("terminate called without an active exception")."""
    main = True
    if dist.is_available() and dist.is_initialized():
        main = dist.get_rank() == 0
        dist.barrier()
        dist.destroy_process_group()
    return main
