"""verify's reduced whole model: a condition and a condition's own flow shrink with the input,
and the networks inside layers are narrowed (each distinct layer is still checked at its
real width). Peak memory and time per flow: bench/verify_budget.py."""

from __future__ import annotations

from pathlib import Path

from flowspec.api import load
from flowspec.check import check
from flowspec.errors import Collector
from flowspec.verify_reduce import NARROW, reduced_model_spec

ROOT = Path(__file__).resolve().parents[1]


def test_fullglow_shrinks_its_label_map_and_the_label_map_flow() -> None:
    spec = load(ROOT / "specs" / "fullglow_cityscapes.flow", "fullglow")
    small = reduced_model_spec(spec)
    assert small.input == (3, 16, 16)  # four squeezes
    cond = small.condition("seg")
    assert cond.shape == (34, 16, 16) and cond.flow.input == (3, 16, 16)
    assert max(layer.args.get("hidden", 0) for layer in small.layers) == NARROW
    assert max(layer.args.get("hidden", 0) for layer in cond.flow.layers) == NARROW
    diags = Collector()
    check(small, diags)
    assert not diags.has_errors
    # the real spec is left as it was
    assert spec.condition("seg").flow.input == (3, 256, 256)


def test_dualglow_shrinks_both_flows() -> None:
    spec = load(ROOT / "specs" / "fullglow_cityscapes.flow", "dualglow")
    small = reduced_model_spec(spec)
    assert small.input == (3, 16, 16) and small.condition("seg").flow.input == (3, 16, 16)
