"""Dual-Glow: a split's prior conditioned on the latent that a condition's flow factors out
at the same place (``split prior=dual on=COND``, a flow's split hands on its latent), its
check-time rules, the coupled model's exactness, and a few training steps on fashion-seg.
The registry-wide tests (test_spec_models.py, test_verify.py, test_paper_specs.py) cover the
shipped `dualglow` flows at reduced size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_exact_with_labels, perturb_

import flowspec
import runtime
from flowspec import condflow
from flowspec.api import loads
from flowspec.errors import FlowSpecError

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "fullglow_cityscapes.flow"

SOURCE = """
flow src(size = 8) {
  input 3 x size x size
  prior gaussian learned
  for l in 1..2 {
    level {
      squeeze
      step x 2 { actnorm; invconv; coupling affine hidden=4 }
      if l < 2 { split prior=fixed }
    }
  }
}
"""


def target(split: str = "split prior=dual on=y", size: int = 8) -> str:
    return (
        SOURCE
        + f"""
flow tgt {{
  input 2 x 8 x 8
  condition y: labels 5 x 8 x 8 encoder=flow(src(size={size}))
  prior gaussian learned on=y
  for l in 1..2 {{
    level {{
      squeeze
      step x 2 {{ actnorm; invconv; coupling affine hidden=4 }}
      if l < 2 {{ {split} }}
    }}
  }}
}}
"""
    )


def test_a_split_hands_on_its_latent_and_the_dual_prior_takes_it() -> None:
    spec = loads(target(), "tgt")
    split = next(layer for layer in spec.layers if layer.kind == "split")
    # the source's level-1 latent is 6x4x4 (12 channels squeezed, half factored out)
    assert spec.cond_width("y", split) == 6
    model = flowspec.compile(spec, device="cpu").double()
    perturb_(model, 0.1, torch.Generator().manual_seed(0))
    model.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand((2, 2, 8, 8), generator=g, dtype=torch.float64) - 0.5
    y = torch.randint(0, 5, (2, 8, 8), generator=g)
    zs, _ = model(x, {"y": y})
    with torch.no_grad():
        src_zs, _ = model.encoders["y"](condflow.label_input(spec.condition("y"), y).double())
    # z1 of the target = its factored-out half minus leaky_relu(conv5x5(z1 of the source))
    i = next(i for i, r in enumerate(model.records) if r.emits_latent)
    pre = x
    with torch.no_grad():
        for layer in model.layers[:i]:
            pre, _ = layer(pre, None)
        keep = model.layers[i].keep
        mean = F.leaky_relu(model.layers[i].dual(src_zs[0]), 0.2)
    assert torch.allclose(zs[0], pre[:, keep:] - mean, atol=1e-12)


def test_dual_prior_needs_a_condition() -> None:
    with pytest.raises(FlowSpecError, match="E301|on=CONDITION"):
        loads(target("split prior=dual"), "tgt")


def test_the_source_latent_must_have_the_split_s_size() -> None:
    with pytest.raises(FlowSpecError, match="E311|E312"):
        loads(target(size=16), "tgt")


def test_coupled_model_is_exact() -> None:
    """log-det = slogdet of the autograd Jacobian (float64, perturbed), and the inverse."""
    torch.manual_seed(0)
    spec = loads(target(), "tgt")
    model = flowspec.compile(spec, device="cpu").double()
    g = torch.Generator().manual_seed(2)
    x = torch.rand((3, 2, 8, 8), generator=g, dtype=torch.float64) - 0.5
    y = torch.randint(0, 5, (3, 8, 8), generator=g)
    assert_exact_with_labels(model, x, y, g)


def test_dualglow_fashion_seg_trains_on_the_joint_likelihood(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = runtime.train(
        SPEC,
        flow="dualglow_fashion_seg",
        out=tmp_path / "run",
        device="cpu",
        seed=0,
        progress=False,
        steps=2,
        batch=4,
        val_images=8,
        warmup=0,
        overrides={"K": 1},
    )
    final = result.summary["final_val"]
    assert math.isfinite(final["bpd"]) and math.isfinite(final["label_bpd"])
