"""DDP: actnorm's data-dependent init gives every rank the same parameters (gloo, 2 CPUs).

Other Glow ports initialise actnorm from each replica's own shard of the first batch and
then train replicas that started apart. Here two processes see different real digits and
initialise without any broadcast afterwards; their parameters must be bit-identical, and
equal (to rounding) to a single process initialised on the whole global batch.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch

SPEC = """\
flow tiny {
  input 1x8x8
  prior gaussian learned
  level {
    squeeze
    step x 2 { actnorm; invconv; coupling affine hidden=8 }
    split prior=learned
  }
  level { squeeze; step x 1 { actnorm; invconv; coupling affine hidden=8 } }
}
"""
PER_RANK = 16


def _batch(start: int, n: int) -> torch.Tensor:
    """Images ``start ... start + n - 1`` of the global batch: real digits, dequantised
    into model space with noise fixed per image."""
    from runtime.data import load_dataset

    images = load_dataset("digits", "train", limit=2 * PER_RANK).images
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(0))
    return ((images.double() + noise) / 256 - 0.5)[start : start + n]


def _init(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    with torch.no_grad():
        model(x.float())
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    import torch.distributed as dist

    import flowspec

    os.environ.update(
        {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": "lo"}
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = flowspec.compile(flowspec.loads(SPEC), device="cpu", seed=0)
        state = _init(model, _batch(rank * PER_RANK, PER_RANK))  # each rank its own digits
        torch.save(state, Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_actnorm_init_is_identical_on_every_rank(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    import flowspec

    # fork: the workers need no fresh interpreter (spawn re-imports torch, ~10 s here), and
    # they inherit the digits read once here
    _batch(0, 1)
    mp.start_processes(
        _worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork"
    )
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    fresh = flowspec.compile(flowspec.loads(SPEC), device="cpu", seed=0)
    actnorm = [
        f"layers.{i}.{name}"
        for i, path in enumerate(fresh.paths)
        if path.endswith("actnorm")
        for name in ("bias", "log_scale")
    ]
    assert len(actnorm) == 6 and all(bool(r0[k]) for k in r0 if k.endswith("initialized"))
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between ranks after init"

    # the shards' statistics were combined: the init equals one on the global batch
    whole = _init(fresh, _batch(0, 2 * PER_RANK))
    for k in actnorm:
        torch.testing.assert_close(r0[k], whole[k], rtol=1e-5, atol=1e-6)
    # and differs from what either shard alone would give (the test has teeth)
    alone = _init(
        flowspec.compile(flowspec.loads(SPEC), device="cpu", seed=0), _batch(0, PER_RANK)
    )
    assert any(not torch.allclose(alone[k], r0[k], rtol=1e-2, atol=1e-3) for k in actnorm)
