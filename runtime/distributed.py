"""torch.distributed plumbing for ``torchrun``: one process per device, rank 0 writes.

Under ``torchrun --nproc_per_node N`` (or any launcher that sets ``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``) :func:`setup` joins the process
group: NCCL on CUDA with one GPU per local rank, gloo on CPU. A process group the caller
initialised itself is used as it is, even a world of one process (which then takes the DDP
path: a test of it on one machine).

Each rank's CUDA generator is its own: seeded from the run seed and the rank
(:func:`seed_cuda`), saved per rank in checkpoints (:func:`cuda_rng_states`) and restored
per rank on resume (:func:`restore_cuda_rng`). So are the generators that layers keep of
their own (a residual block's Hutchinson vectors are drawn per rank):
:func:`layer_rng_states`, :func:`restore_layer_rng`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from flowspec import rng_layers

from .errors import RunError
from .streams import stream_seed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    created: bool = False  # this run joined the group, so it also leaves it
    group: bool = False  # a process group exists: the DDP path, even for a world of one

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1 or self.group


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError(
            f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)"
        )
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise RunError(f"unknown device `{device}`; use auto, cpu or cuda") from e


def setup(device: str | torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when launched by torchrun; pick this rank's device."""
    dev = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        d = Dist(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", dist.get_rank())),
            group=True,
        )
    elif int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if not dist.is_available():
            raise RunError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        d = Dist(
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", os.environ["RANK"])),
            created=True,
            group=True,
        )
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
        flat = torch.cat(
            [
                t.detach().reshape(-1).double()
                for t in list(model.parameters()) + list(model.buffers())
            ]
        )
        lo, hi = flat.clone(), flat.clone()
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        return bool(torch.equal(lo, hi))


def wrap(d: Dist, model: nn.Module, dev: torch.device) -> nn.Module:
    """What the loop trains: ``model`` under DDP, every rank starting from rank 0's parameters
    and buffers (``model`` itself when not distributed)."""
    if not d.active:
        return model
    broadcast_module(model)
    ddp = nn.parallel.DistributedDataParallel
    # buffers never change after actnorm's init (just broadcast), so none is sent per step
    # (torch 2.13 renamed broadcast_buffers, deprecating the old name)
    no_sync = (
        "forward_sync_buffers"
        if "forward_sync_buffers" in inspect.signature(ddp).parameters
        else "broadcast_buffers"
    )
    return ddp(model, device_ids=[dev.index] if dev.type == "cuda" else None, **{no_sync: False})


def seed_cuda(d: Dist, dev: torch.device, seed: int, tag: str = "cuda") -> None:
    """Seed this rank's CUDA generator on ``dev`` from the run seed and the rank (dropout
    masks differ between ranks as their data does); nothing off CUDA."""
    if dev.type == "cuda":
        with torch.cuda.device(dev):
            torch.cuda.manual_seed(stream_seed(seed, tag, d.rank))


def cuda_rng_states(d: Dist, dev: torch.device) -> list[torch.Tensor] | None:
    """Every rank's CUDA generator state (each on its own device), indexed by rank, on every
    rank (rank 0 saves them); ``None`` off CUDA. Every rank must call it."""
    if dev.type != "cuda":
        return None
    state = torch.cuda.get_rng_state(dev)
    if not d.active:
        return [state]
    states: list[Any] = [None] * d.world
    dist.all_gather_object(states, state)
    return [s.cpu() for s in states]


def restore_cuda_rng(
    d: Dist, dev: torch.device, rng: dict[str, Any], seed: int, warn: Callable[[str], None] | None
) -> None:
    """Give this rank the CUDA generator state saved in a checkpoint's ``rng``. Saved by
    another number of processes, each rank's generator is reseeded from the run seed, the
    step and the rank instead (``warn`` says so)."""
    states = rng.get("cuda_ranks")
    if dev.type != "cuda" or states is None:
        return
    if len(states) == d.world:
        torch.cuda.set_rng_state(states[d.rank], dev)
        return
    if warn is not None:
        warn(
            f"the checkpoint holds the CUDA random states of a run of world size "
            f"{len(states)}, this one has {d.world}: each process's CUDA generator is "
            "reseeded, so the run will not match an uninterrupted one"
        )
    seed_cuda(d, dev, seed, f"cuda@{rng['data']['step']}")


def layer_rng_states(d: Dist, model: nn.Module) -> list[dict[str, Any]] | None:
    """Every rank's states of the generators the model's layers keep of their own
    (:func:`flowspec.rng_layers`: ``{module name: layer.rng_state()}``), indexed
    by rank, on every rank (rank 0 saves them); ``None`` when no layer keeps one. Every rank
    must call it."""
    layers = rng_layers(model)
    if not layers:
        return None
    state = {name: m.rng_state() for name, m in layers}
    if not d.active:
        return [state]
    states: list[Any] = [None] * d.world
    dist.all_gather_object(states, state)
    return states


def restore_layer_rng(
    d: Dist, model: nn.Module, rng: dict[str, Any], warn: Callable[[str], None] | None
) -> None:
    """Give this rank's layers the generator states saved in a checkpoint's ``rng`` (by
    module name; a layer the checkpoint does not name keeps its stream from the seed).
    Saved by another number of processes, or by a flowspec that did not save them, every
    layer's streams start again from its seed (``warn`` says so)."""
    layers = rng_layers(model)
    if not layers:
        return
    states = rng.get("layers")
    if states is None or len(states) != d.world:
        if warn is not None:
            why = (
                "holds no state of the layers' own random generators (written before "
                "flowspec saved them)"
                if states is None
                else f"holds the layers' random states of a run of world size {len(states)}, "
                f"this one has {d.world}"
            )
            names = ", ".join(name for name, _ in layers[:3]) + (
                ", ..." if len(layers) > 3 else ""
            )
            warn(
                f"the checkpoint {why}: the random term counts and probe vectors of "
                f"{names} start again from their seeds, so the run will not match an "
                "uninterrupted one"
            )
        return
    mine = states[d.rank]
    for name, m in layers:
        if name in mine:
            m.set_rng_state(mine[name])
