"""Variational dequantisation (Flow++): ``q(u|x)`` is an exact density on [0, 1)^D, the
bound it gives is a bound on the discrete NLL and equals uniform bits/dim for uniform ``q``,
training through the CLI lowers it, checkpoints hold ``q`` and resume bit for bit, and
recipes without ``dequantize`` are unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal

from runtime import RunError
from runtime import checkpoint as ckpt
from runtime.dequantize import VariationalDequantizer
from runtime.metrics import LN2

SPEC = """flowspec 0.1
flow dq(hidden = 8) {
  input 1 x 8 x 8
  prior gaussian
  level {
    squeeze
    step x 2 { actnorm; invconv; coupling affine hidden=hidden }
  }
  train {
    task generation
    data digits
    bits 4
    batch 16
    optimizer adam lr=5e-3
    steps 40
    seed 3
    DEQ
  }
}
"""


def spec_file(tmp_path: Path, deq: str = "dequantize variational steps=2 hidden=8") -> Path:
    p = tmp_path / "dq.flow"
    p.write_text(SPEC.replace("DEQ", deq))
    return p


def perturbed(q: VariationalDequantizer, scale: float = 0.3) -> VariationalDequantizer:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in q.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return q


# --------------------------------------------------------------------------- the density


def test_log_q_is_exact_against_the_autograd_jacobian() -> None:
    torch.manual_seed(0)
    q = perturbed(VariationalDequantizer((2, 4, 4), bits=5, steps=3, hidden=8).double())
    levels = torch.randint(0, 32, (3, 2, 4, 4))
    e = torch.logit(torch.rand(3, 2, 4, 4, dtype=torch.float64))
    u, logq = q.transform(levels, e)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda t, i=i: q.transform(levels[i : i + 1], t.view(1, 2, 4, 4))[0].flatten(),
            e[i].flatten(),
        )
        base = (
            torch.nn.functional.logsigmoid(e[i]) + torch.nn.functional.logsigmoid(-e[i])
        ).sum()  # logistic log-density
        want = base - torch.linalg.slogdet(jac)[1]
        assert abs(float((logq[i] - want).detach())) < 1e-9
        assert float(u[i].detach().sub(torch.sigmoid(e[i])).abs().max()) > 1e-3  # not uniform


def test_u_lies_in_the_unit_cube_even_at_the_extremes() -> None:
    q = perturbed(VariationalDequantizer((1, 8, 8), bits=4, steps=2, hidden=8), 1.0)
    noise = torch.rand(16, 1, 8, 8)
    noise[0] = 0.0
    noise[1] = 1.0 - 2.0**-24  # the largest float32 below 1
    u, logq = q(torch.randint(0, 16, (16, 1, 8, 8)), noise)
    assert u.dtype == torch.float32 and bool((u >= 0).all()) and bool((u < 1).all())
    assert bool(torch.isfinite(logq).all())


def test_an_untrained_q_is_uniform() -> None:
    q = VariationalDequantizer((1, 8, 8), bits=4, steps=4, hidden=8).double()
    noise = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    u, logq = q(torch.randint(0, 16, (4, 1, 8, 8)), noise)
    assert float(logq.abs().max()) < 1e-9 and float((u - noise).abs().max()) < 1e-12


def test_the_bound_bounds_the_discrete_nll_and_tightens_when_q_learns() -> None:
    """p: a narrow Gaussian in model space, whose bin masses (the discrete likelihood) have a
    closed form. The bound is >= -log P(x_int) for any q, equals the uniform bound for an
    untrained q, and training q alone brings it closer to -log P(x_int)."""
    torch.manual_seed(1)
    bits, shape = 2, (1, 2, 2)
    D = math.prod(shape)
    p = Normal(0.0, 0.08)
    levels = torch.tensor([[1, 2, 1, 2], [1, 1, 2, 0], [2, 2, 2, 1]]).view(3, *shape)
    lo = levels.double() / 2**bits - 0.5
    exact = -torch.log(p.cdf(lo + 2.0**-bits) - p.cdf(lo)).flatten(1).sum(1)  # -log P

    def bound(q: VariationalDequantizer, n: int = 4000) -> torch.Tensor:
        noise = torch.rand(n, 3, *shape, dtype=torch.float64).view(n * 3, *shape)
        lv = levels.repeat(n, 1, 1, 1)
        u, logq = q(lv, noise)
        x = (lv.double() + u) / 2**bits - 0.5
        nats = -p.log_prob(x).flatten(1).sum(1) + D * bits * LN2 + logq
        return nats.view(n, 3).mean(0)

    q = VariationalDequantizer(shape, bits, steps=4, hidden=8).double()
    with torch.no_grad():
        uniform = bound(q)
    assert bool((uniform > exact + 0.05).all())  # a loose bound to start from
    opt = torch.optim.Adam(q.parameters(), lr=2e-2)
    for _ in range(60):
        opt.zero_grad()
        bound(q, 128).mean().backward()
        opt.step()
    with torch.no_grad():
        learnt = bound(q)
    assert bool((learnt >= exact - 0.02).all())  # still a bound (Monte Carlo error aside)
    assert float((learnt - exact).sum()) < 0.5 * float((uniform - exact).sum())


# --------------------------------------------------------------------------- runs


def _val(out: Path) -> list[dict]:
    return [
        r
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if r.get("kind") == "val"
    ]


def _train(out: Path) -> list[dict]:
    return [
        r
        for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
        if r.get("kind") == "train"
    ]


def test_training_through_the_cli_lowers_the_bound_and_eval_reports_both(
    cli, tmp_path: Path
) -> None:
    spec, out = spec_file(tmp_path), tmp_path / "run"
    rc, _, err = cli(
        "train",
        spec,
        "--out",
        out,
        "--no-progress",
        "--val-every",
        "20",
        "--val-images",
        "128",
        "--threads",
        "1",
    )
    assert rc == 0, err
    losses = [r["loss"] for r in _train(out)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    vals = _val(out)
    assert vals[-1]["bpd"] < vals[0]["bpd"]
    assert all("bpd_uniform" in v for v in vals)
    state = ckpt.load(out / "checkpoint.pt")
    assert any(k.startswith("dequantizer.") for k in state["model"])
    assert state["recipe"]["dequantize"] == "variational"
    assert state["recipe"]["dequantize_options"] == {"steps": 2, "hidden": 8}
    rc, _, err = cli("eval", "--checkpoint", out / "checkpoint.pt", "--threads", "1")
    assert rc == 0, err
    m = json.loads((out / "eval.json").read_text())
    assert m["bpd"] == pytest.approx(vals[-1]["bpd"], abs=1e-5)
    assert m["bpd_uniform"] == pytest.approx(vals[-1]["bpd_uniform"], abs=1e-5)
    assert m["bpd"] != m["bpd_uniform"]


def test_resume_with_q_is_bit_for_bit(tmp_path: Path) -> None:
    import runtime

    spec = spec_file(tmp_path)
    kw = {
        "steps": 6,
        "checkpoint_every": 3,
        "val_every": 3,
        "sample_every": 100,
        "val_images": 32,
        "progress": False,
    }
    runtime.train(spec, out=tmp_path / "ref", **kw)
    runtime.train(spec, out=tmp_path / "cut", **{**kw, "steps": 3})
    runtime.train(spec, out=tmp_path / "cut", resume=True, **kw)
    a, b = (ckpt.load(tmp_path / n / "checkpoint.pt") for n in ("ref", "cut"))
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert _val(tmp_path / "ref")[-1]["bpd"] == _val(tmp_path / "cut")[-1]["bpd"]


def test_recipes_without_dequantize_are_unchanged(tmp_path: Path) -> None:
    import runtime

    kw = {"steps": 4, "val_every": 4, "sample_every": 100, "val_images": 32, "progress": False}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    none = spec_file(tmp_path / "a", "")
    uniform = spec_file(tmp_path / "b", "dequantize uniform")
    runtime.train(none, out=tmp_path / "none", **kw)
    runtime.train(uniform, out=tmp_path / "uniform", **kw)
    a, b = (ckpt.load(tmp_path / n / "checkpoint.pt") for n in ("none", "uniform"))
    assert not any(k.startswith("dequantizer") for k in a["model"])
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["recipe"]["dequantize"] == "uniform"
    assert "bpd_uniform" not in _val(tmp_path / "none")[-1]


def test_dequantize_settings_are_checked(cli, tmp_path: Path) -> None:
    rc, _, err = cli("check", spec_file(tmp_path, "dequantize variatonal"))
    assert rc != 0 and "E122" in err and "variational" in err
    rc, _, err = cli("check", spec_file(tmp_path, "dequantize variational steps=0"))
    assert rc != 0 and "E122" in err
    import runtime

    with pytest.raises(RunError, match="takes no options"):
        runtime.train(
            spec_file(tmp_path, "dequantize uniform steps=2"),
            steps=1,
            out=tmp_path / "x",
            progress=False,
        )


def _ddp_worker(rank: int, world: int, port: int, spec: str, out: str, result: str) -> None:
    import os

    import runtime

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "GLOO_SOCKET_IFNAME": "lo",
        }
    )
    torch.set_num_threads(1)
    r = runtime.train(
        spec,
        out=out,
        steps=4,
        batch=8,
        device="cpu",
        val_every=4,
        sample_every=100,
        checkpoint_every=4,
        val_images=16,
        progress=False,
    )
    torch.save(
        {k: v.clone() for k, v in r.model.state_dict().items()}, Path(result) / f"rank{rank}.pt"
    )


def test_ddp_keeps_q_in_sync(tmp_path: Path) -> None:
    """q's parameters are used before DDP's forward; their gradients must still be averaged
    over the ranks (each rank sees other images), else the ranks would drift apart."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec, out = spec_file(tmp_path), tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, port, str(spec), str(out), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{i}.pt", weights_only=True) for i in (0, 1))
    assert any(k.startswith("dequantizer.") for k in r0)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    assert json.loads((out / "summary.json").read_text())["ranks_identical"] is True
    start = VariationalDequantizer((1, 8, 8), 4, steps=2, hidden=8)
    assert not torch.equal(
        r0["dequantizer.couplings.0.net.4.weight"], start.couplings[0].net[4].weight.detach()
    )  # q trained
