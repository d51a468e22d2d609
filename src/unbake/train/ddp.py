"""Multi-process data-parallel training: process-group set-up from the ``torchrun``
environment (NCCL on GPUs, gloo on the CPU) and a spawner for local runs and tests."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(device: torch.device) -> DistInfo:
    """Join the process group described by ``torchrun``'s variables (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); a single process when they are absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local)


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` when more than one process runs."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    """Leave the process group. Call it once nothing refers to a ``DistributedDataParallel``
    model any more: a wrapper that outlives the group keeps it alive until the interpreter's
    exit, where tearing it down aborted a rank now and then in the test suite ("terminate called
    without an active exception")."""
    if info.enabled and dist.is_initialized():
        import gc

        gc.collect()  # wrappers in reference cycles go now, not at the interpreter's exit
        dist.destroy_process_group()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _spawned(rank: int, world: int, port: int, fn: Callable, args: tuple) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(*args)
    # done and saved: leave without the interpreter's teardown, in which torch's C++ state of a
    # spawned rank now and then aborted ("terminate called without an active exception") after
    # the work had finished, turning a good run into a failed one for the parent
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(fn: Callable, world_size: int, *args) -> None:
    """Run ``fn(*args)`` in ``world_size`` local processes that see the ``torchrun`` variables
    (on 127.0.0.1), and wait for all of them."""
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(world_size, free_port(), fn, args), nprocs=world_size, join=True)
