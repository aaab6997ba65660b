"""C-Glow (``cglow_actnorm``, ``cglow_invconv``, ``coupling cglow``, ``encoder=palette``):
every operation reads the label map at its full size, whatever its level; the checker's rule
on that size; the 1x1 convolution invertible for every network output; parameter counts
against glow2's module definitions; a few training steps on fashion-seg. Exact log-dets:
tests/test_layers_numerics.py (every kind); the shipped flows at reduced size:
test_spec_models.py, test_verify.py, test_paper_specs.py."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import flowspec
import runtime
from flowspec import condflow
from flowspec.api import loads
from flowspec.errors import FlowSpecError
from flowspec.kinds import count_params

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "fullglow_cityscapes.flow"
CGLOW = ("cglow_actnorm", "cglow_invconv", "coupling.cglow")


def _small(height: int = 16) -> str:
    return f"""
flow c(height = {height}) {{
  input 2 x height x 16
  condition y: labels 5 x height x 16 encoder=palette
  prior gaussian
  for l in 1..2 {{
    level {{
      squeeze
      step x 1 {{
        cglow_actnorm on=y down=l cond_hidden=3 cond_units=4
        cglow_invconv on=y down=l cond_hidden=3 cond_units=4
        coupling cglow on=y down=l hidden=4
      }}
      if l < 2 {{ split prior=learned }}
    }}
  }}
}}
"""


def test_every_cglow_layer_reads_the_condition_at_its_full_size() -> None:
    spec = loads(_small(), "c")
    model = flowspec.compile(spec, device="cpu")
    seen: dict[str, tuple] = {}
    for r, layer in zip(model.records, model.layers):
        if r.kind in CGLOW:
            layer.register_forward_hook(
                lambda m, inp, out, path=r.path: seen.__setitem__(path, tuple(inp[1].shape))
            )
    g = torch.Generator().manual_seed(0)
    x = torch.rand((2, 2, 16, 16), generator=g) - 0.5
    y = torch.randint(0, 5, (2, 16, 16), generator=g)
    with torch.no_grad():
        model(x, {"y": y})
    assert len(seen) == 6 and set(seen.values()) == {(2, 3, 16, 16)}
    # ... and it is the label map drawn in the palette's colours, at the bins' centres
    colours = (condflow.palette(5)[y].permute(0, 3, 1, 2).float() + 0.5) / 256 - 0.5
    assert torch.allclose(
        model.encoders["y"](torch.nn.functional.one_hot(y, 5).permute(0, 3, 1, 2).float()), colours
    )


def test_the_condition_size_must_fit_three_stride_2_convolutions() -> None:
    with pytest.raises(FlowSpecError, match="E209") as e:  # level 1 (6x8) reads 12x16
        loads(_small(height=12), "c")
    assert "divisible by 8" in str(e.value)


def test_the_predicted_matrix_is_invertible_for_any_network_output() -> None:
    spec = loads(_small(), "c")
    model = flowspec.compile(spec, device="cpu").double()
    inv = next(m for r, m in zip(model.records, model.layers) if r.kind == "cglow_invconv")
    with torch.no_grad():  # saturate the tanh: C-Glow's own matrix would be all +-1 (rank 1)
        inv.net.last.weight.zero_()
        inv.net.last.bias.fill_(50.0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn((2, *inv.in_shape), generator=g, dtype=torch.float64)
    c = torch.randn((2, 3, 16, 16), generator=g, dtype=torch.float64)
    y, logdet = inv(x, c)
    back, inv_logdet = inv.inverse(y, c)
    assert torch.isfinite(logdet).all() and torch.allclose(back, x, atol=1e-10)
    assert torch.allclose(inv_logdet, -logdet)


@pytest.mark.parametrize(("flow", "code"), [("cglow_v1", "c_glow_v2"), ("cglow_v2", "c_glow_v3")])
def test_parameters_match_glow2s_module_definitions(flow: str, code: str) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from official_cglow_dualglow import CGLOW as CONFIGS
        from official_cglow_dualglow import cglow_official
    finally:
        sys.path.remove(str(ROOT / "bench"))
    official = cglow_official(*CONFIGS[code])
    ours = count_params(flowspec.load(SPEC, flow))
    by_part = {
        part: sum(v for k, v in ours.items() if k.endswith(suffix))
        for part, suffix in (
            ("cond_actnorm", "cglow_actnorm"),
            ("cond_invconv", "cglow_invconv"),
            ("coupling", "coupling"),
            ("split", "split"),
        )
    }
    for part in ("cond_actnorm", "cond_invconv", "split"):
        assert by_part[part] == official[part], part
    # the coupling lacks glow2's redundant `newbias` (C per coupling); no unused top
    couplings = [k for k in ours if k.endswith("coupling")]
    spec = flowspec.load(SPEC, flow)
    newbias = sum(layer.in_shape[0] for layer in spec.layers if layer.path in couplings)
    assert by_part["coupling"] == official["coupling"] - newbias
    assert sum(ours.values()) == sum(official.values()) - newbias - official["top"]


def test_cglow_fashion_seg_trains(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = runtime.train(
        SPEC,
        flow="cglow_fashion_seg",
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
    assert math.isfinite(result.summary["final_val"]["bpd"])
