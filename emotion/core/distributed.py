"""Data-parallel training helpers: the process group, shards, reductions.

One training loop runs with or without torchrun. Without it (no WORLD_SIZE in
the environment, or WORLD_SIZE 1) :func:`start` returns a one-process context
and every helper here is a no-op, so nothing else needs to know. Under
``torchrun --nproc_per_node=N`` (and ``--nnodes``) each process joins the group
named by torchrun's environment: NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from emotion.core.errors import EmotionError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among world_size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    backend: str | None = None  # None: one process, no group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> bool:
    """Whether torchrun (or a like launcher) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str) -> Context:
    """Join the process group torchrun describes, or a one-process context.

    `device` is "cpu" or "cuda" (already resolved); on CUDA each process takes
    the GPU of its LOCAL_RANK, so "cuda" means that GPU from here on.
    """
    if not launched():
        return Context(device=device)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device == "cuda" else "gloo"
    if device == "cuda":
        if local >= torch.cuda.device_count():
            raise EmotionError(f"LOCAL_RANK {local}: this machine has "
                               f"{torch.cuda.device_count()} GPU(s); lower --nproc_per_node")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    log.info("rank %d of %d (local %d) on %s, %s", rank, world, local, device, backend)
    return Context(rank, world, local, device, backend)


def stop(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard_blocks(n: int, block: int, rank: int, world: int) -> np.ndarray:
    """The starts of this rank's blocks of `block` contiguous rows out of n: block i
    goes to rank i % world, so reads stay contiguous and shards differ by at most one block."""
    return np.arange(0, n, block)[rank::world]


def _reduce(ctx: Context, values: np.ndarray, op) -> np.ndarray:
    if not ctx.distributed:
        return values
    dev = "cuda" if ctx.backend == "nccl" else "cpu"
    t = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float64, device=dev)
    dist.all_reduce(t, op=op)
    return t.cpu().numpy()


def all_sum(ctx: Context, values: np.ndarray) -> np.ndarray:
    """The element-wise sum over all ranks (float64; as is in one process)."""
    return _reduce(ctx, np.asarray(values, np.float64), dist.ReduceOp.SUM)


def all_min(ctx: Context, value: int) -> int:
    """The smallest of an integer over all ranks."""
    return int(_reduce(ctx, np.asarray([value], np.float64), dist.ReduceOp.MIN)[0])


def barrier(ctx: Context) -> None:
    if ctx.distributed:
        dist.barrier()
