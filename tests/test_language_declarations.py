"""The .flow language of docs/language.md, asserted on the resolved IR: what a flow declares
besides its layers (input, prior, conditions, latents, the train block) and the shapes
that flow through the layers.
"""

from __future__ import annotations

import pytest
from flowtext import ir, t


# ---- input, shapes, prior, conditions, latents ---------------------------------------------
@pytest.mark.parametrize(
    "shape,expected",
    [
        ("1x32x32", (1, 32, 32)),
        ("3 x 16 x 8", (3, 16, 8)),
        ("c x s x (s * 2)", (2, 4, 8)),
        ("c x (s // 2 + 2) x s", (2, 4, 4)),
        ("(c + 1) x 4 x 4", (3, 4, 4)),
    ],
)
def test_input_shapes(shape, expected):
    spec = ir(t("flow f(c = 2, s = 4) {", f"  input {shape}", "}"))
    assert spec.input == expected
    assert spec.latents[0].shape == expected
    assert spec.input_span is not None and spec.input_span.line == 2


def test_prior_gaussian_default():
    spec = ir(t("flow f {", "  input 4x8x8", "}"))
    assert (spec.prior.kind, spec.prior.learned, spec.prior.on) == ("gaussian", False, None)
    spec = ir(t("flow f {", "  input 4x8x8", "  prior gaussian", "}"))
    assert (spec.prior.learned, spec.prior.on) == (False, None)
    assert spec.prior.span.line == 3


def test_prior_learned_and_conditional():
    spec = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  condition lr: image 3x4x4",
            "  prior gaussian learned on=lr",
            "}",
        )
    )
    assert (spec.prior.learned, spec.prior.on) == (True, "lr")
    spec = ir(t("flow f {", "  input 4x8x8", "  prior gaussian learned=true", "}"))
    assert spec.prior.learned is True


def test_condition_image_and_labels_with_encoders():
    spec = ir(
        t(
            "flow f(scale = 4, classes = 11) {",
            "  input 3x16x16",
            "  condition lr: image 3 x (16 // scale) x (16 // scale)"
            " encoder=rrdb(blocks=2, features=8)",
            "  condition seg: labels classes x 16 x 16 encoder=convnet(blocks=1)",
            "  condition plain: image 1x8x8",
            "  condition plainlab: labels 5x4x4",
            "  prior gaussian learned on=seg",
            "  injector on=lr",
            "  coupling affine on=seg",
            "  split on=plain",
            "  coupling additive on=plainlab",
            "}",
        )
    )
    lr, seg, plain, plainlab = spec.conditions
    assert (lr.name, lr.type, lr.shape) == ("lr", "image", (3, 4, 4))
    assert (lr.encoder.kind, lr.encoder.args) == ("rrdb", {"blocks": 2, "features": 8})
    assert (seg.type, seg.shape) == ("labels", (11, 16, 16))
    assert (seg.encoder.kind, seg.encoder.args) == ("convnet", {"blocks": 1, "features": 64})
    assert plain.encoder.kind == "rrdb" and plain.encoder.args == {"blocks": 8, "features": 64}
    assert plainlab.encoder.kind == "convnet"
    assert spec.condition("seg") is seg
    assert [layer.args.get("on") for layer in spec.layers] == ["lr", "seg", "plain", "plainlab"]


def test_expect_latent_and_latents():
    spec = ir(
        t(
            "flow f(s = 16) {",
            "  input 1 x s x s",
            "  level x 2 { squeeze; split }",
            "  expect latent 4 x (s // 4) x (s // 4)",
            "}",
        )
    )
    assert spec.expect_latent == (4, 4, 4)
    assert [(z.name, z.shape, z.source) for z in spec.latents] == [
        ("z1", (2, 8, 8), "level1.split"),
        ("z2", (4, 4, 4), "level2.split"),
        ("z3", (4, 4, 4), "prior"),
    ]
    assert sum(c * h * w for c, h, w in (z.shape for z in spec.latents)) == 16 * 16


def test_split_of_an_odd_channel_count_keeps_the_larger_half():
    spec = ir(t("flow f {", "  input 3x4x4", "  split", "}"))
    assert spec.layers[0].out_shape == (2, 4, 4)
    assert [z.shape for z in spec.latents] == [(1, 4, 4), (2, 4, 4)]


def test_shapes_flow_through_the_layers():
    spec = ir(
        t(
            "flow f {",
            "  input 1x8x8",
            "  squeeze",
            "  squeeze factor=2",
            "  split",
            "  squeeze factor=2",
            "}",
        )
    )
    assert [(layer.in_shape, layer.out_shape) for layer in spec.layers] == [
        ((1, 8, 8), (4, 4, 4)),
        ((4, 4, 4), (16, 2, 2)),
        ((16, 2, 2), (8, 2, 2)),
        ((8, 2, 2), (32, 1, 1)),
    ]


# ---- train ---------------------------------------------------------------------------------
def test_train_block():
    spec = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  train {",
            "    task super_resolution scale=8",
            '    data images root="data/celeba" resize=true',
            "    bits 5",
            "    batch 32",
            "    optimizer adamax lr=8e-4 warmup=200 clip=50.0 weight_decay=0",
            "    steps 100000",
            "    val_every 10; sample_every 20; checkpoint_every 30",
            "    seed 0",
            "  }",
            "}",
        )
    )
    tr = spec.train
    assert list(tr) == [
        "task",
        "data",
        "bits",
        "batch",
        "optimizer",
        "steps",
        "val_every",
        "sample_every",
        "checkpoint_every",
        "seed",
    ]
    assert (tr["task"].value, tr["task"].options) == ("super_resolution", {"scale": 8})
    assert (tr["data"].value, tr["data"].options) == (
        "images",
        {"root": "data/celeba", "resize": True},
    )
    assert tr["optimizer"].value == "adamax"
    assert tr["optimizer"].options == {"lr": 8e-4, "warmup": 200, "clip": 50.0, "weight_decay": 0}
    assert tr["steps"].value == 100000 and tr["seed"].value == 0
    assert tr["bits"].span.line == 6


def test_train_data_accepts_names_with_dashes_and_paths():
    spec = ir(t("flow f {", "  input 4x8x8", "  train { data fashion-mnist pad=2 }", "}"))
    assert spec.train["data"].value == "fashion-mnist"
    spec = ir(t("flow f {", "  input 4x8x8", '  train { data "/data/my set" }', "}"))
    assert spec.train["data"].value == "/data/my set"
