"""SRFlow's conditioning as its official code (andreas128/SRFlow) has it.

The encoder's per-level features, the coupling's halves and scale form, and the layer order
of the Table 4 specs are checked against re-statements of SRFlow's module definitions
(``RRDBNet_arch.py``, ``SRFlowNet_arch.rrdbPreprocessing``,
``FlowAffineCouplingsAblation.CondAffineSeparatedAndCond``, ``FlowUpsamplerNet``); the
parameter counts against ``bench/param_counts.srflow_official``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from official_counts import srflow_official

import flowspec
from flowspec.kinds import ENCODERS, KINDS, count_params
from flowspec.nn.srflow_encoder import tapped_blocks

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "specs" / "srflow_celeba.flow"


def test_taps_are_srflows_stacked_blocks() -> None:
    assert tapped_blocks(8, 4) == [1, 3, 5, 7]  # SRFlow_CelebA_8X.yml stackRRDB blocks
    assert tapped_blocks(2, 2) == [0, 1] and tapped_blocks(8, 1) == [7]
    kind = ENCODERS["srflow"]
    args = kind.Args(blocks=8, features=64, taps=4).model_dump()
    assert kind.out_channels(args) == 320  # SRFlow's in_channels_rrdb
    assert kind.out_channels({**args, "blocks": 2}) == 3 * 64  # at most `blocks` taps


def _reference_features(enc, lr_image: torch.Tensor) -> dict[int, torch.Tensor]:
    """SRFlow's rrdbPreprocessing: fea_up{1,2,4} and fea_up0, each with the stacked block
    outputs concatenated (nearest-resampled)."""
    fea = enc.stem(lr_image)
    blocks = []
    for i, block in enumerate(enc.body):
        fea = block(fea)
        if i in enc.taps:
            blocks.append(fea)
    concat = torch.cat(blocks, 1)
    last = fea + enc.trunk(fea)
    lrelu = torch.nn.LeakyReLU(0.2)
    up2 = lrelu(enc.up[0](F.interpolate(last, scale_factor=2, mode="nearest")))
    up4 = lrelu(enc.up[1](F.interpolate(up2, scale_factor=2, mode="nearest")))
    up0 = F.interpolate(
        last, scale_factor=0.5, mode="bilinear", align_corners=False, recompute_scale_factor=True
    )
    return {
        r: torch.cat([t, F.interpolate(concat, t.shape[2:])], 1)
        for r, t in ((1, last), (2, up2), (4, up4), (0, up0))
    }


def test_features_per_level_are_srflows() -> None:
    torch.manual_seed(0)
    args = ENCODERS["srflow"].Args(blocks=4, features=8, taps=2, ups=2).model_dump()
    enc = ENCODERS["srflow"].module_class()((3, 6, 6), args).double()
    lr_image = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        f = enc(lr_image)
        ref = _reference_features(enc, lr_image)
        assert f.shape == (2, 24, 6, 6)
        for ratio, size in ((1, 6), (2, 12), (4, 24), (0, 3)):
            assert torch.allclose(enc.features_at(f, (size, size)), ref[ratio], atol=1e-12)


def test_coupling_is_cond_affine_separated_and_cond() -> None:
    """Injector on all channels, then the first C//2 channels drive the rest; shift from the
    even and scale from the odd output channels, ``sigmoid(h + 2) + 1e-4``."""
    torch.manual_seed(0)
    kind = KINDS["coupling.srflow"]
    args = kind.Args(on="c", hidden=8).model_dump()
    layer = kind.module_class()((5, 4, 4), args, 3).double().train()
    x, ft = (
        torch.randn(2, 5, 4, 4, dtype=torch.float64),
        torch.randn(2, 3, 4, 4, dtype=torch.float64),
    )
    layer(x, ft)  # the networks' actnorms initialise
    for p in layer.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    with torch.no_grad():
        y, logdet = layer(x, ft)
        h = layer.features_net(ft)
        scale = torch.sigmoid(h[:, 1::2] + 2.0) + 1e-4
        z = (x + h[:, 0::2]) * scale
        ld = scale.log().sum((1, 2, 3))
        z1, z2 = z[:, :2], z[:, 2:]
        h = layer.coupling_net(torch.cat([z1, ft], 1))
        scale = torch.sigmoid(h[:, 1::2] + 2.0) + 1e-4
        want = torch.cat([z1, (z2 + h[:, 0::2]) * scale], 1)
        assert torch.allclose(y, want, atol=1e-12)
        assert torch.allclose(logdet, ld + scale.log().sum((1, 2, 3)), atol=1e-10)
        assert torch.allclose(layer.inverse(y, ft)[0], x, atol=1e-10)


def test_the_net_initialises_its_actnorms_once() -> None:
    torch.manual_seed(0)
    kind = KINDS["coupling.srflow"]
    layer = kind.module_class()((4, 4, 4), kind.Args(on="c", hidden=6).model_dump(), 2)
    assert not layer._init_seen
    layer.train()(torch.randn(8, 4, 4, 4), torch.randn(8, 2, 4, 4))
    assert layer._init_seen
    net = layer.features_net
    hidden = net.norm1(net.conv1(torch.randn(8, 2, 4, 4)))[0]
    assert hidden.shape[1] == 6 and bool(net.norm1.initialized)


@pytest.mark.parametrize(
    "flow,levels,steps,paper", [("srflow_1_1", 1, 1, 6.622), ("srflow_2_8", 2, 8, 13.25)]
)
def test_counts_against_the_official_code(
    flow: str, levels: int, steps: int, paper: float
) -> None:
    official = srflow_official(levels, steps)
    assert round(official["total"] / 1e6, 3 if paper < 10 else 2) == paper
    ours = sum(count_params(flowspec.load(SPEC, flow)).values())
    # ours builds exactly the modules SRFlow's flow uses
    assert ours == official["total"] - official["unused"]


def _kinds_per_level(spec) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for layer in spec.layers:
        out.setdefault(layer.level, []).append(layer.kind)
    return out


def test_levels_transitions_and_splits_as_srflow() -> None:
    spec = flowspec.load(SPEC, "srflow", {"L": 4, "K": 2})
    for level, kinds in _kinds_per_level(spec).items():
        transition = ["actnorm", "invconv"] * 2
        step = ["actnorm", "invconv", "coupling.srflow"] * 2
        split = ["split"] if level < 3 else []  # correct_splits off: not on levels L-1, L
        assert kinds == ["squeeze", *transition, *step, *split], level
    assert all(layer.args.get("lu") is False for layer in spec.layers if layer.kind == "invconv")
    assert all(layer.args.get("on") is None for layer in spec.layers if layer.kind == "split")
    assert spec.prior.on is None and not spec.prior.learned
    assert [tuple(z.shape) for z in spec.latents] == [(6, 80, 80), (12, 40, 40), (192, 10, 10)]
    assert "split" not in {layer.kind for layer in flowspec.load(SPEC, "srflow_2_8").layers}


def test_the_model_feeds_each_level_the_encoders_features() -> None:
    spec = flowspec.load(
        SPEC,
        "srflow",
        {"L": 3, "K": 1, "size": 32, "hidden": 4, "blocks": 2, "features": 4, "taps": 2},
    )
    model = flowspec.compile(spec, device="cpu").double()
    lr_image = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    feats = model._features({"lr": lr_image}, 2)
    enc = model.encoders["lr"]
    for hw in ((16, 16), (8, 8), (4, 4)):
        assert torch.equal(model._at(feats, {}, "lr", hw), enc.features_at(feats["lr"], hw))
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        zs, _ = model(x, {"lr": lr_image})
        back = model.inverse(zs, {"lr": lr_image})
    assert torch.allclose(back, x, atol=1e-10)
