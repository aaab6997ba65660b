"""Full-Glow: a condition modelled by its own flow (``encoder=flow(NAME)``), the conditional
actnorm / 1x1 convolution / coupling, the joint likelihood, and the paper's parameter count.

The registry-wide tests (tests/test_layers_numerics.py, test_language_kinds.py,
test_paper_specs.py, test_spec_models.py, test_verify.py) cover the new kinds and the shipped
flows; this file covers the coupling of two flows: syntax, validation, the whole coupled
model's exactness, the joint loss of the translation task, and the count against Full-Glow's
official code.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from numerics import assert_exact_with_labels, perturb_
from official_counts import fullglow_official

import flowspec
import runtime
from flowspec import condflow
from flowspec.api import analyze, loads
from flowspec.errors import FlowSpecError
from flowspec.fmt import format_text
from flowspec.kinds import count_params
from runtime.objective import Objective
from runtime.recipe import resolve_recipe
from runtime.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "fullglow_cityscapes.flow"

LABEL_FLOW = """
flow seg(size = 8, ch = 3, K = 2) {
  input ch x size x size
  prior gaussian learned
  for l in 1..2 {
    level {
      squeeze
      step x K { actnorm; invconv; coupling affine hidden=4 }
      if l < 2 { split }
    }
  }
}
"""


def image_flow(
    encoder: str = "flow(seg(size=8))", classes: int = 4, lu: str = "true", extra: str = ""
) -> str:
    return (
        LABEL_FLOW
        + f"""
flow img {{
  input 2 x 8 x 8
  condition y: labels {classes} x 8 x 8 encoder={encoder}
  prior gaussian learned on=y
  for l in 1..2 {{
    level {{
      squeeze
      step x 2 {{
        cond_actnorm on=y
        cond_invconv lu={lu} on=y
        coupling cond_affine on=y hidden=4 cond_hidden=3
      }}
      if l < 2 {{ split on=y }}
    }}
  }}
  {extra}
}}
"""
    )


def codes(text: str) -> list[str]:
    _, diags = analyze("<t>", "img", text=text)
    return [d.code for d in diags if d.severity == "error"]


# ---- syntax and validation ---------------------------------------------------------------
def test_flow_encoder_resolves_into_the_condition() -> None:
    spec = loads(image_flow(), "img")
    c = spec.condition("y")
    assert c.encoder.kind == "flow" and c.encoder.args == {"flow": "seg", "size": 8}
    assert c.flow.name == "seg" and tuple(c.flow.input) == (3, 8, 8)
    # the layer at level 2, step 1, place 2 takes the label flow's invconv output there
    layer = spec.layer("level2.step01.cond_invconv")
    assert spec.positions()[layer.path] == (2, 1, 1)
    assert spec.cond_width("y", layer) == 24 and spec.cond_width("y") == 24


def test_fmt_round_trips_a_flow_encoder() -> None:
    text = image_flow("flow(seg(size=8, ch=3))")
    once = format_text(text)
    assert "encoder=flow(seg(size=8, ch=3))" in once and format_text(once) == once
    assert loads(once, "img").digest() == loads(text, "img").digest()


@pytest.mark.parametrize(
    "text,code",
    [
        (image_flow("flow(seg(size=16))"), "E311"),  # the label flow is 16x16
        (image_flow("flow(seg(K=1))"), "E312"),  # no layer where the image's step 2 has its own
        (image_flow(classes=5), None),  # 3 channels: the label map in colour
        (image_flow("flow(seg(ch=4))"), None),  # 4 channels = 4 classes: one-hot
        (image_flow("flow(seg(ch=2))"), "E311"),  # neither one-hot nor colour
        (image_flow("flow(nosuch)"), "E103"),
        (image_flow("flow(seg(nope=1))"), "E108"),
        (image_flow("flow(img)"), "E161"),  # a flow that conditions itself
        (image_flow(extra="insert cond_actnorm on=y after coupling"), "E312"),  # no place
    ],
)
def test_flow_encoder_errors(text: str, code: str | None) -> None:
    found = codes(text)
    assert (code in found) if code else not found, found


def test_the_label_flow_must_be_unconditional() -> None:
    text = (
        image_flow("flow(cseg)")
        + """
flow cseg {
  input 3 x 8 x 8
  condition c: image 3 x 8 x 8
  coupling affine on=c hidden=4
}
"""
    )
    assert "E310" in codes(text)


def test_a_flow_reference_is_only_an_encoder() -> None:
    with pytest.raises(FlowSpecError, match="flow reference"):
        loads(LABEL_FLOW + "flow f(e = flow(seg)) { input 3x8x8 }", "f")


# ---- the coupled model --------------------------------------------------------------------
@pytest.mark.parametrize("classes,lu", [(4, "true"), (4, "false"), (5, "true")])
def test_coupled_model_is_exact(classes: int, lu: str) -> None:
    """logdet = slogdet of the autograd Jacobian, float64, parameters perturbed; inverse;
    joint = conditional + the label flow's own log-likelihood; one-hot (4) and colour (5)."""
    torch.manual_seed(0)
    spec = loads(
        image_flow(classes=classes, lu=lu, encoder=f"flow(seg(ch={4 if classes == 4 else 3}))"),
        "img",
    )
    model = flowspec.compile(spec, device="cpu").double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand((3, 2, 8, 8), generator=g, dtype=torch.float64) - 0.5
    y = torch.randint(0, classes, (3, 8, 8), generator=g)
    zs, logdet = assert_exact_with_labels(model, x, y, g)
    label_in = condflow.label_input(spec.condition("y"), y).double()
    label_logp = model.encoders["y"].log_prob(label_in)
    assert torch.allclose(
        model.joint_log_prob(x, {"y": y}), model.log_prob(x, {"y": y}) + label_logp
    )
    # a dequantised label input (floats of the label flow's shape) is taken as it is
    assert torch.equal(condflow.label_input(spec.condition("y"), label_in), label_in)


def test_samples_depend_on_the_labels() -> None:
    spec = loads(image_flow(), "img")
    model = flowspec.compile(spec, device="cpu")
    perturb_(model, 0.3, torch.Generator().manual_seed(0))
    y0, y1 = torch.zeros(2, 8, 8, dtype=torch.long), torch.full((2, 8, 8), 3)
    a = model.sample(2, 0.7, {"y": y0}, generator=torch.Generator().manual_seed(5))
    b = model.sample(2, 0.7, {"y": y1}, generator=torch.Generator().manual_seed(5))
    assert a.shape == (2, 2, 8, 8) and not torch.allclose(a, b)


def test_colour_palette_is_cityscapes_for_34_classes() -> None:
    pal = condflow.palette(34)
    assert tuple(pal[7].tolist()) == (128, 64, 128) and tuple(pal[26].tolist()) == (0, 0, 142)
    assert len({tuple(c) for c in condflow.palette(11).tolist()}) == 11


# ---- the translation task: joint loss, both bits/dim -------------------------------------
@pytest.mark.parametrize("flow", ["fullglow_fashion_seg", "cattnflow_fashion_seg"])
def test_fashion_seg_flows_train_on_the_joint_likelihood(flow: str, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    result = runtime.train(
        SPEC,
        flow=flow,
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
    spec = result.model.spec
    task = make_task(spec, resolve_recipe(spec, val_images=8))
    data = task.load(train=False)
    imgs, maps = data.val.images[:4], data.val.maps[:4]
    objective = Objective(result.model.eval(), task)
    batch = objective.batch(imgs, maps, torch.rand(imgs.shape), torch.device("cpu"))
    with torch.no_grad():
        loss, extras = objective(batch)
        bpd, label = extras["bpd"], extras["label_bpd"]
        joint = objective.flow.joint_log_prob(batch.x, batch.cond)
    dims, ldims = math.prod(spec.input), math.prod(spec.condition("seg").flow.input)
    assert torch.allclose(loss, bpd + label * ldims / dims)
    bits = task.bits + ldims / dims * condflow.label_bits(spec.condition("seg"))
    assert torch.allclose(loss, bits - joint / (dims * math.log(2)), atol=1e-4)


# ---- parameters: the paper's 155.33 M is the official code's count ------------------------
def test_fullglow_4_16_counts_as_the_official_code() -> None:
    official = fullglow_official(4, 16)
    assert official["total"] == 155_335_008  # the paper's column: 155.33
    ours = sum(count_params(flowspec.load(SPEC, "fullglow")).values())
    assert abs(ours / official["total"] - 1) < 0.02
    assert abs(ours / 155.33e6 - 1) < 0.05
    small = fullglow_official(2, 8)["total"]
    ours = flowspec.load(SPEC, "cattnflow_imap_cityscapes")
    per = count_params(ours)
    backbone = sum(n for k, n in per.items() if "attention" not in k)
    assert abs(backbone / small - 1) < 0.02


def test_official_count_mirrors_the_modules_at_small_size() -> None:
    """At a size where building is cheap, the count of the official modules and ours differ
    only by the priors (see the spec's comments): the layers match one for one."""
    spec = flowspec.load(
        SPEC, "fullglow", {"L": 2, "K": 1, "hidden": 16, "height": 32, "width": 32}
    )
    model = flowspec.compile(spec, device="cpu")
    built = sum(p.numel() for p in model.parameters())
    assert built == sum(count_params(spec).values())
    official = fullglow_official(2, 1, size=(32, 32), hidden=16)["total"]

    def priors(m) -> int:  # ours: the split convolutions and the per-entry top prior
        mods = [layer for layer, r in zip(m.layers, m.records) if r.emits_latent] + [m.prior]
        return sum(p.numel() for mod in mods for p in mod.parameters())

    # the official code's priors: ZeroInitConv2d (3x3 conv + per-channel scale) per level,
    # in both flows (12 channels at level 1 after the split, 24 on top)
    off_priors = 2 * ((9 * 6 * 12 + 12 + 12) + (9 * 24 * 48 + 48 + 48))
    # the per-channel scale of ZeroInitConv2d in the label flow's Glow couplings
    off_scale = 12 + 24
    ours_priors = sum(priors(m) for m in (model, model.encoders["seg"]))
    assert built - ours_priors == official - off_priors - off_scale
