"""runtime.distributed: the DDP path in one process, and each rank's CUDA generator.

* A process group of one process (gloo, initialised by the caller) takes the DDP path:
  DistributedDataParallel without per-step buffer broadcasts, and the parameters it
  trains are bit-identical to a plain run's (its gradient all-reduce over one rank and the
  division by a world size of 1 are exact; actnorm's moments likewise).
* The checkpoint's RNG state round-trips; each rank's CUDA generator is seeded from the run
  seed and its rank, saved per rank and restored per rank, or reseeded (with a warning)
  when the number of processes changed. CUDA's calls are stubbed: the logic runs on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from tinyruns import TINY_GEN, TINY_RES, write_spec

import runtime
from runtime import checkpoint as ckpt
from runtime import distributed as ddp
from runtime.streams import stream_seed

KW = {
    "steps": 3,
    "batch": 8,
    "checkpoint_every": 3,
    "val_every": 100,
    "sample_every": 100,
    "val_images": 8,
    "progress": False,
    "device": "cpu",
}


@contextmanager
def one_process(folder: Path) -> Iterator[None]:
    """A gloo process group of one process, as a caller (or a test) initialises it."""
    dist.init_process_group("gloo", init_method=f"file://{folder / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.fixture
def world_of_one(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    with one_process(tmp_path):
        yield


def test_a_world_of_one_trains_as_a_plain_run(tmp_path: Path, monkeypatch) -> None:
    spec = write_spec(tmp_path, TINY_GEN)
    plain = runtime.train(spec, out=tmp_path / "plain", **KW)
    wrapped = []
    real_wrap = ddp.wrap
    monkeypatch.setattr(ddp, "wrap", lambda *a: wrapped.append(real_wrap(*a)) or wrapped[-1])
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    with one_process(tmp_path):
        one = runtime.train(spec, out=tmp_path / "ddp", **KW)
    (net,) = wrapped
    assert isinstance(net, torch.nn.parallel.DistributedDataParallel)
    assert net.broadcast_buffers is False
    assert one.summary["world_size"] == 1 and one.summary["ranks_identical"] is True
    a, b = plain.model.state_dict(), one.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k

    # the checkpoint's RNG state round-trips
    saved = ckpt.load(tmp_path / "ddp" / "checkpoint.pt")["rng"]
    ckpt.set_rng_state(saved)
    again = ckpt.rng_state(saved["data"]["seed"], saved["data"]["step"])
    assert torch.equal(again["torch"], saved["torch"])
    assert again["python"]["version"] == saved["python"]["version"]
    assert torch.equal(again["python"]["state"], saved["python"]["state"])
    assert torch.equal(again["numpy"]["keys"], saved["numpy"]["keys"])
    assert again["data"] == saved["data"]


@pytest.fixture
def fake_cuda(monkeypatch):
    """CUDA's generator calls, on a dict: ``state[device index]`` holds a seed or a state."""
    state: dict[int, object] = {}
    monkeypatch.setattr(torch.cuda, "device", lambda dev: nullcontext())
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda s: state.__setitem__(0, s))
    monkeypatch.setattr(
        torch.cuda, "get_rng_state", lambda dev: torch.tensor([int(state.get(dev.index, -1))])
    )
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda t, dev: state.__setitem__(dev.index, int(t))
    )
    return state


def test_each_rank_its_own_cuda_seed(fake_cuda) -> None:
    dev = torch.device("cuda", 0)
    seeds = []
    for rank in range(3):
        ddp.seed_cuda(ddp.Dist(rank=rank, world=3), dev, 5)
        seeds.append(fake_cuda[0])
    assert seeds == [stream_seed(5, "cuda", r) for r in range(3)]
    assert len(set(seeds)) == 3
    ddp.seed_cuda(ddp.Dist(), torch.device("cpu"), 5)  # nothing off CUDA
    assert fake_cuda[0] == seeds[-1]


def test_cuda_states_saved_and_restored_per_rank(fake_cuda, world_of_one) -> None:
    dev = torch.device("cuda", 0)
    fake_cuda[0] = 41
    d = ddp.Dist(rank=0, world=1, group=True)
    states = ddp.cuda_rng_states(d, dev)  # gathered over the (one-process) group
    assert [int(s) for s in states] == [41]
    rng = ckpt.rng_state(0, 6, states)
    fake_cuda[0] = 0
    ddp.restore_cuda_rng(d, dev, rng, seed=3, warn=pytest.fail)
    assert fake_cuda[0] == 41
    # the same checkpoint, rank 1 of 2: saved by one process, so a warning and a reseed
    warnings = []
    ddp.restore_cuda_rng(ddp.Dist(rank=1, world=2), dev, rng, seed=3, warn=warnings.append)
    assert fake_cuda[0] == stream_seed(3, "cuda@6", 1)
    assert len(warnings) == 1 and "world size 1, this one has 2" in warnings[0]
    # a CPU run and a checkpoint without per-rank states leave the generator alone
    assert ddp.cuda_rng_states(d, torch.device("cpu")) is None
    ddp.restore_cuda_rng(d, dev, ckpt.rng_state(0, 6), seed=3, warn=pytest.fail)
    assert fake_cuda[0] == stream_seed(3, "cuda@6", 1)


def test_spectral_norm_state_is_the_same_on_every_rank(tmp_path: Path, monkeypatch) -> None:
    """A residual flow's spectral-norm vectors ``u``, ``v`` (buffers, not broadcast per step)
    are a function of the weights, their own previous values and the weight's version
    counter: every rank starts from rank 0's parameters and buffers (``wrap`` broadcasts
    through ``.data``, which moves no version counter; DDP's own start-up sync copies in
    place on every rank alike), every step all-reduces the gradients so that every rank's
    optimiser writes the same weights and moves the counters alike, and the refresh (power
    iterations warm-started from ``u``, ``v``) then computes the same vectors everywhere.
    Per-rank things (the data, the Hutchinson vectors, even a different construction seed)
    reach the weights only through the all-reduced gradient. Two simulated ranks check
    that; a world of one checks the trainer's final comparison covers the buffers."""
    from flowspec.nn.residual import ResidualBlock

    ranks = []
    for seed in (0, 1):  # rank 1 built from another seed, then given rank 0's state
        torch.manual_seed(seed)
        ranks.append(ResidualBlock((2, 4, 4), {"hidden": 8}))
    w = ranks[1].linears[0].weight
    before = w._version
    for t0, t1 in zip(ranks[0].state_dict().values(), ranks[1].state_dict().values()):
        t1.data.copy_(t0.data)  # what broadcast_module does on a receiving rank
    assert w._version == before  # no refresh triggered on one rank only
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in ranks]
    for step in range(4):
        grads = []
        for r, m in enumerate(ranks):  # each rank its own data
            x = torch.randn(4, 2, 4, 4, generator=torch.Generator().manual_seed(10 * step + r))
            y, logdet = m(x)
            (0.5 * y.pow(2).sum() - logdet.sum()).backward()
            grads.append([p.grad.clone() for p in m.parameters()])
        for m, opt in zip(ranks, opts):  # the all-reduce: the mean gradient everywhere
            for p, *g in zip(m.parameters(), *grads):
                p.grad.copy_(sum(g) / len(g))
            opt.step()
            opt.zero_grad()
    for (k, a), b in zip(ranks[0].state_dict().items(), ranks[1].state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(ranks[0].weights()[0], ranks[1].weights()[0])

    spec = write_spec(tmp_path, TINY_RES)
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    with one_process(tmp_path):
        one = runtime.train(spec, out=tmp_path / "ddp", **KW)
    assert one.summary["ranks_identical"] is True  # parameters and buffers, u and v among them
    assert any(k.endswith(".u") for k in one.model.state_dict())
