"""torch.distributed plumbing for ``torchrun``: one process per device, rank 0 writes.

Under ``torchrun --nproc_per_node N`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) :func:`setup` joins the process
group: NCCL on CUDA with one GPU per local rank, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from .errors import RunError


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    created: bool = False  # this run joined the group, so it also leaves it

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(f"--device {device}: CUDA is not available on this machine "
                       "(use --device cpu or auto)")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise RunError(f"unknown device `{device}`; use auto, cpu or cuda") from e


def setup(device: str | torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's device."""
    dev = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        d = Dist(dist.get_rank(), dist.get_world_size(),
                 int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_available():
            raise RunError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        d = Dist(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                 int(os.environ.get("LOCAL_RANK", os.environ["RANK"])), created=True)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(d.local_rank)
        dist.init_process_group(backend, rank=d.rank, world_size=d.world)
    else:
        return Dist(), dev
    if dev.type == "cuda":
        dev = torch.device("cuda", d.local_rank)
    return d, dev


def teardown(d: Dist) -> None:
    if d.created and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Copy every parameter and buffer of rank ``src`` to all ranks."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src)


def mean(d: Dist, value: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor (itself when not distributed)."""
    if not d.active:
        return value
    v = value.detach().clone()
    dist.all_reduce(v)
    return v / d.world


def same_everywhere(d: Dist, model: nn.Module) -> bool:
    """Whether every rank holds bit-identical parameters and buffers (a final check)."""
    if not d.active:
        return True
    with torch.no_grad():
        flat = torch.cat([t.detach().reshape(-1).double() for t in
                          list(model.parameters()) + list(model.buffers())])
        lo, hi = flat.clone(), flat.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        return bool(torch.equal(lo, hi))
