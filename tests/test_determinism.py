"""Deterministic mode (``--deterministic``, ``deterministic true``; runtime.determinism).

* Every flow of every shipped spec, at reduced size, runs forward, backward and inverse
  under ``torch.use_deterministic_algorithms(True)`` on CPU, with the ops that CUDA's
  deterministic mode refuses or makes slow (float ``cumsum``, bilinear ``interpolate``
  under autograd, ``index_add_``) made to raise as they would there: so every shipped spec
  takes the deterministic formulations, and those equal the library ops to rounding.
* The settings are made before CUDA starts, refused (one line) after, and restored after
  the run; without the mode a CUDA run lets cuDNN benchmark.
* ``deterministic true`` in ``train { }`` and ``--deterministic`` set the recipe, and a
  deterministic CPU run of 4 steps equals 2 steps resumed for 2, bit for bit.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from numerics import random_cond
from test_spec_models import FLOWS, small_spec
from tinyruns import TINY_SR

import flowspec
import runtime
from runtime import RunError, determinism
from runtime import checkpoint as ckpt
from runtime.recipe import resolve_recipe, resume_command

CPU = torch.device("cpu")


@pytest.fixture
def cuda_strict(monkeypatch):
    """Deterministic mode, with CPU standing in for CUDA: the ops CUDA refuses (or runs by
    a slow sort) under the mode raise."""
    real_interpolate, real_cumsum = F.interpolate, torch.cumsum

    def interpolate(x, *args, **kwargs):
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "nearest")
        if mode in ("linear", "bilinear", "bicubic") and x.requires_grad:
            raise RuntimeError(f"no deterministic CUDA backward for {mode} interpolation")
        return real_interpolate(x, *args, **kwargs)

    def cumsum(x, *args, **kwargs):
        if x.is_floating_point():
            raise RuntimeError("no deterministic CUDA cumsum for floats")
        return real_cumsum(x, *args, **kwargs)

    def index_add_(*args, **kwargs):
        raise RuntimeError("index_add_ is a sort under CUDA's deterministic mode")

    monkeypatch.setattr(F, "interpolate", interpolate)
    monkeypatch.setattr(torch, "cumsum", cumsum)
    monkeypatch.setattr(torch.Tensor, "index_add_", index_add_)
    with determinism.configured(True, CPU):
        yield


@pytest.mark.parametrize("path,name", FLOWS, ids=[f"{p.split('/')[-1]}:{n}" for p, n in FLOWS])
def test_every_shipped_flow_runs_deterministically(path, name, cuda_strict) -> None:
    _forward_backward_inverse(small_spec(path, name))


def test_a_resampled_condition_runs_deterministically(cuda_strict) -> None:
    """An encoder without its own resampling rule (rrdb): its features are resized
    bilinearly to each level (no shipped spec at reduced size does)."""
    _forward_backward_inverse(flowspec.loads(TINY_SR))


def _forward_backward_inverse(spec) -> None:
    gen = torch.Generator().manual_seed(7)
    model = flowspec.compile(spec, device="cpu", seed=0)
    x = torch.rand((2, *spec.input), generator=gen) - 0.5
    cond = random_cond(spec, 2, gen)
    if cond is not None:
        cond = {k: v.float() if v.is_floating_point() else v for k, v in cond.items()}
    model.train()
    zs, logdet = model(x, cond)
    loss = (sum(0.5 * z.pow(2).flatten(1).sum(1) for z in zs) - logdet).mean()
    loss.backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        zs, _ = model(x, cond)
        back = model.inverse(zs, cond)
    assert (back - x).abs().max() < 1e-5


def _both(fn):
    """``fn()`` with the library ops, then with the deterministic formulations."""
    plain = fn()
    with determinism.configured(True, CPU):
        return plain, fn()


def test_spline_edges_without_cumsum_equal_cumsum() -> None:
    from flowspec.nn.spline import _edges

    raw = torch.randn(4, 3, 10, dtype=torch.float64, requires_grad=True)
    (e1, w1), (e2, w2) = _both(lambda: _edges(raw, 3.0))
    torch.testing.assert_close(e2, e1, rtol=0, atol=1e-14)
    assert torch.equal(e2[..., [0, -1]], e1[..., [0, -1]])  # the ends stay exactly +-tail
    assert (w2 > 0).all()


@pytest.mark.parametrize("antialias", [False, True])
@pytest.mark.parametrize("size", [(4, 6), (12, 10), (5, 5)])
def test_bilinear_as_matrices_equals_interpolate(size, antialias) -> None:
    from flowspec.nn._resample import bilinear

    f = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 3, *size, dtype=torch.float64)

    def run():
        out = bilinear(f, size, antialias=antialias)
        (grad,) = torch.autograd.grad((out * g).sum(), f)
        return out, grad

    (o1, g1), (o2, g2) = _both(run)
    torch.testing.assert_close(o2, o1, rtol=0, atol=1e-13)
    torch.testing.assert_close(g2, g1, rtol=0, atol=1e-13)


def test_isdp_block_sum_without_index_add_equals_it() -> None:
    """An iSDP whose patches' masks differ (two blocks per head), so that its backward sums
    blocks into heads."""
    spec = flowspec.loads("""flowspec 0.1
flow f {
  input 3 x 6 x 6
  prior gaussian
  level { step x 1 { actnorm; attention isdp heads=2 patches=4 } }
}""")
    model = flowspec.compile(spec, device="cpu", seed=0).double()
    isdp = next(m for m in model.modules() if type(m).__name__ == "ISDP")
    assert not isdp.whole and len(isdp.blocks) > isdp.heads
    x = torch.randn(3, 3, 6, 6, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        model(x)

    def run():
        zs, logdet = model(x)
        loss = sum(z.pow(2).sum() for z in zs) - logdet.sum()
        return torch.autograd.grad(loss, [isdp.qk, isdp.coef])

    (a, b), (c, d) = _both(run)
    torch.testing.assert_close(c, a, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(d, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- settings


def test_settings_are_made_and_restored() -> None:
    cudnn = torch.backends.cudnn
    before = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    with determinism.configured(True, CPU):
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.is_deterministic_algorithms_warn_only_enabled()
        assert cudnn.deterministic and not cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == determinism.CUBLAS_WORKSPACE
    with determinism.configured(False, torch.device("cuda")):  # sets flags only
        assert cudnn.benchmark and not torch.are_deterministic_algorithms_enabled()
    with determinism.configured(False, CPU):
        assert cudnn.benchmark == before[2]
    assert (
        torch.are_deterministic_algorithms_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    ) == before


def test_refused_after_cuda_started(monkeypatch) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with pytest.raises(RunError) as e, determinism.configured(True, torch.device("cuda")):
        pass
    assert "\n" not in str(e.value) and "CUBLAS_WORKSPACE_CONFIG=:4096:8" in str(e.value)
    assert not torch.are_deterministic_algorithms_enabled()
    # set in the environment beforehand, it is what cuBLAS needs
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    with determinism.configured(True, torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled()


# --------------------------------------------------------------------------- recipe, resume

TINY = """flowspec 0.1
flow tiny {
  input 1 x 8 x 8
  prior gaussian learned
  level { squeeze; step x 1 { actnorm; invconv; coupling spline hidden=8 bins=4 }
          split prior=learned }
  level { squeeze; step x 1 { actnorm; invconv; coupling affine hidden=8 } }
  train { data digits
          bits 5
          batch 8
          optimizer adam lr=3e-3
          deterministic true }
}
"""


def test_recipe_and_flag(tmp_path, cli) -> None:
    spec = flowspec.loads(TINY)
    r = resolve_recipe(spec)
    assert r.deterministic is True
    plain = flowspec.loads(TINY.replace("deterministic true", "deterministic false"))
    assert resolve_recipe(plain).deterministic is False
    flagged = resolve_recipe(plain, deterministic=True)
    assert "--deterministic" in resume_command(plain, flagged, {}, tmp_path)
    assert "--deterministic" not in resume_command(spec, r, {}, tmp_path)
    bad = tmp_path / "bad.flow"
    bad.write_text(TINY.replace("deterministic true", "deterministic yes"))
    rc, _, err = cli("check", bad)
    assert rc == 1 and "`deterministic` needs true or false" in err


def test_deterministic_resume_is_bit_for_bit_on_cpu(tmp_path) -> None:
    spec = tmp_path / "tiny.flow"
    spec.write_text(TINY)
    kw = {
        "steps": 4,
        "checkpoint_every": 2,
        "val_every": 100,
        "sample_every": 100,
        "val_images": 8,
        "progress": False,
        "device": "cpu",
    }
    straight = runtime.train(spec, out=tmp_path / "straight", **kw)
    runtime.train(spec, out=tmp_path / "cut", **{**kw, "steps": 2})
    runtime.train(spec, out=tmp_path / "cut", resume=True, **kw)
    assert straight.summary["recipe"]["deterministic"] is True
    assert not torch.are_deterministic_algorithms_enabled()  # restored after each run
    a, b = (ckpt.load(tmp_path / n / "checkpoint.pt") for n in ("straight", "cut"))
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
