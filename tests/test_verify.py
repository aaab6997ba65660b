"""`flowspec verify` on every shipped flow, and on layers that are wrong on purpose.

CI verifies every flow of specs/ with its depth and widths reduced (the same reduction as
tests/test_spec_models.py: K=1, hidden=6, ...): every distinct layer against the autograd
Jacobian in float64 at the smallest size its shape rule accepts, then the whole model.
Real widths are verified for the small flows through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_spec_models import FLOWS, small_spec

import flowspec
from flowspec.kinds import KINDS
from flowspec.verify import Report, check_layer, reduced_shape, verify

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path,name", FLOWS, ids=[f"{p.split('/')[-1]}:{n}" for p, n in FLOWS])
def test_every_shipped_flow_verifies(path: str, name: str) -> None:
    spec = small_spec(path, name)
    report = verify(spec)
    assert report.ok, report.failure_message() + "\n" + report.table()
    kinds = {c.kind for c in report.checks}
    assert kinds >= {layer.kind for layer in spec.layers} | {"model"}
    model = report.checks[-1]
    assert model.kind == "model" and model.logdet_err is not None  # the Jacobian was taken


@pytest.mark.parametrize("spec", ["specs/demo.flow", "specs/realnvp.flow"])
def test_cli_verify_at_real_widths(cli, spec: str) -> None:
    rc, out, err = cli("verify", spec, "--format", "json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["ok"] and not report["full"]
    assert all(c["ok"] and c["logdet_err"] <= 1e-6 for c in report["checks"])


def test_reduced_shape_is_the_smallest_the_shape_rule_accepts() -> None:
    isdp = KINDS["attention.isdp"]
    args = isdp.Args(patches=16).model_dump()
    assert reduced_shape(isdp, (6, 32, 32), args) == (6, 4, 4)  # a 4x4 grid of patches
    assert reduced_shape(KINDS["squeeze"], (3, 32, 32), {"factor": 4}) == (3, 4, 4)
    assert reduced_shape(KINDS["actnorm"], (3, 32, 32), {}) == (3, 2, 2)
    assert reduced_shape(KINDS["actnorm"], (3, 1, 5), {}) == (3, 1, 2)


def test_a_wrong_logdet_fails_and_says_by_how_much(monkeypatch) -> None:
    kind = KINDS["coupling.affine"]
    module = kind.module_class()
    original = module.forward

    def doubled(self, x, cond=None):
        y, logdet = original(self, x, cond)
        return y, 2 * logdet

    monkeypatch.setattr(module, "forward", doubled)
    args = kind.Args(hidden=4).model_dump()
    c = check_layer("coupling.affine", (4, 2, 2), args, None, path="level1.step01.coupling")
    assert not c.ok and "autograd Jacobian" in c.error
    assert c.measured == pytest.approx(2 * c.expected, rel=1e-9)
    # the headline names the quantity and its two numbers (here sample 0 is the worst)
    assert f"measured log-det {c.measured:.10g}, expected log-det {c.expected:.10g}" in c.error


def test_a_wrong_inverse_fails(monkeypatch) -> None:
    module = KINDS["actnorm"].module_class()
    original = module.inverse
    monkeypatch.setattr(
        module,
        "inverse",
        lambda self, y, cond=None: (original(self, y, cond)[0] + 1e-3, original(self, y, cond)[1]),
    )
    c = check_layer("actnorm", (3, 2, 2), {}, None, path="level1.actnorm")
    assert not c.ok
    assert c.error.startswith("the inverse does not reproduce the input: max|x' - x| = 1.0e-03")
    assert "(tolerance 1e-07)" in c.error
    headline = Report(flow="f", full=False, checks=[c]).failure_message()
    assert headline.startswith(
        "flowspec verify: layer `level1.actnorm` (actnorm) is not exact: "
        "the inverse does not reproduce the input"
    )


def test_a_layer_that_raises_is_a_failed_check_not_a_traceback(monkeypatch) -> None:
    module = KINDS["invconv"].module_class()

    def boom(self, x, cond=None):
        raise RuntimeError("shape mismatch inside the layer")

    monkeypatch.setattr(module, "forward", boom)
    c = check_layer("invconv", (3, 2, 2), {"lu": True}, None)
    assert not c.ok and "RuntimeError: shape mismatch" in c.error


def test_a_wrong_inverse_logdet_has_its_column_and_its_numbers(monkeypatch) -> None:
    module = KINDS["actnorm"].module_class()
    original = module.inverse
    monkeypatch.setattr(
        module,
        "inverse",
        lambda self, y, cond=None: (original(self, y, cond)[0], 0.5 * original(self, y, cond)[1]),
    )
    c = check_layer("actnorm", (3, 2, 2), {}, None)
    assert not c.ok and c.inverse_logdet_err > 1e-3
    assert c.error.startswith(
        f"the inverse's log-det {-0.5 * c.measured:.10g} is not minus the "
        f"forward one, {-c.measured:.10g}"
    )
    table = Report(flow="f", full=False, checks=[c]).table().splitlines()
    assert "inv. log-det err" in table[1]
    assert table[3].endswith("FAIL") and f"{c.inverse_logdet_err:.1e}" in table[3]


def test_seed_makes_the_logdets_reproducible_and_leaves_the_global_rng_alone(cli) -> None:
    args = KINDS["coupling.affine"].Args(hidden=4).model_dump()
    runs = []
    for global_seed in (1, 2):  # the global stream differs: the result must not
        torch.manual_seed(global_seed)
        before = torch.random.get_rng_state()
        runs.append(check_layer("coupling.affine", (4, 2, 2), args, None, seed=7))
        assert torch.equal(torch.random.get_rng_state(), before)
    assert runs[0].ok and runs[0].expected == runs[1].expected
    assert runs[0].measured == runs[1].measured
    other = check_layer("coupling.affine", (4, 2, 2), args, None, seed=8)
    assert other.expected != runs[0].expected
    outs = []
    for _ in range(2):
        rc, out, err = cli(
            "verify", "specs/demo.flow", "--seed", "3", "--set", "K=1", "--format", "json"
        )
        assert rc == 0, err
        outs.append([(c["path"], c["expected"], c["measured"]) for c in json.loads(out)["checks"]])
    assert outs[0] == outs[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_verify_device_reaches_every_check():
    """``device`` is where every row runs: asked for CUDA on a machine without it, each row
    (layers, prior, model) fails with torch's CUDA error instead of silently using the CPU."""
    spec = flowspec.load(ROOT / "specs" / "demo.flow", overrides={"K": 1})
    report = verify(spec, device="cuda")
    assert report.checks and not any(c.ok for c in report.checks)
    for c in report.checks:
        assert "cuda" in c.error.lower() or "nvidia" in c.error.lower(), c.error
    assert report.to_json()["device"] == "cuda"


def test_verify_device_flag(cli):
    rc, _, err = cli("verify", ROOT / "specs" / "demo.flow", "--set", "K=1", "--device", "tpu")
    assert rc == 2 and "unknown device `tpu`" in err
    if not torch.cuda.is_available():
        rc, _, err = cli(
            "verify", ROOT / "specs" / "demo.flow", "--set", "K=1", "--device", "cuda"
        )
        assert rc == 2 and "CUDA is not available" in err


def test_the_estimator_check_narrows_the_layer_and_catches_a_bias(monkeypatch) -> None:
    """``check_estimator`` runs a 512-wide residual block at width 8 (its row says so) and
    passes it; the same check fails an estimator shifted by a constant."""
    from flowspec.nn.residual import ResidualBlock
    from flowspec.verify import ESTIMATOR_HIDDEN, check_estimator

    ok = check_estimator("residual", (2, 2, 2), {"hidden": 512}, None, path="r")
    assert ok.ok, ok.error
    assert ok.path == f"r (estimator, hidden {ESTIMATOR_HIDDEN})"
    assert ok.args["hidden"] == ESTIMATOR_HIDDEN
    real = ResidualBlock.estimate_logdet
    monkeypatch.setattr(
        ResidualBlock, "estimate_logdet", lambda self, x, fixed=None: real(self, x, fixed) + 0.05
    )
    biased = check_estimator("residual", (2, 2, 2), {"hidden": 512}, None, path="r")
    assert not biased.ok and "the estimator is biased" in biased.error
