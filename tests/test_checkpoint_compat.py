"""Checkpoints written by an earlier flowspec still load and compute what they computed.

``tests/golden/checkpoint_v2/`` holds a checkpoint that flowspec v2 wrote (``flowspec train
fixture.flow``: actnorm, invconv, affine coupling, iMap and iSDP, learned split prior,
4 steps on ``digits``) and the log-densities it gave on a fixed input. Every later change
of the checkpoint format, of a layer's state or of the model's assembly must keep them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import flowspec

FIXTURE = Path(__file__).parent / "golden" / "checkpoint_v2"


def _expected() -> dict:
    return json.loads((FIXTURE / "expected.json").read_text())


def _input() -> torch.Tensor:
    return torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0)) - 0.5


def test_v2_checkpoint_loads_without_its_spec_and_computes_the_same():
    model, run = flowspec.load_checkpoint(FIXTURE / "checkpoint.pt", device="cpu")
    assert run.spec.name == "fixture" and run.step == _expected()["step"]
    with torch.no_grad():
        got = model.log_prob(_input())
    want = torch.tensor(_expected()["log_prob"])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_v2_checkpoint_round_trips_and_samples():
    model, _ = flowspec.load_checkpoint(FIXTURE / "checkpoint.pt", device="cpu")
    x = _input()
    with torch.no_grad():
        zs, _ = model(x)
        back = model.inverse(zs)
        samples = model.sample(3, temperature=0.7)
    assert (back - x).abs().max() < 1e-4
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()


@pytest.mark.parametrize("with_spec", [False, True])
def test_v2_checkpoint_evaluates(with_spec, tmp_path):
    import runtime

    ck = tmp_path / "checkpoint.pt"
    shutil.copy(FIXTURE / "checkpoint.pt", ck)
    spec = FIXTURE / "fixture.flow" if with_spec else None
    metrics = runtime.evaluate(spec, ck, device="cpu", val_images=32)
    assert 0 < metrics["bpd"] < 8
