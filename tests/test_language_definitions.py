"""The .flow language of docs/language.md, asserted on the resolved IR: ``let`` and
expressions, blocks and flows with parameters, ``extends``, and ``--set`` overrides.
"""

from __future__ import annotations

import pytest
from flowtext import PARENT, ir, paths, t

from flowspec import parse_override


# ---- let and expressions -------------------------------------------------------------------
def test_let_values_and_arithmetic():
    spec = ir(
        t(
            "let a = 7",
            "let i = a // 2 + a % 3 * 2 - -1",  # 3 + 2 + 1
            "let fl = 1.5 * 2",
            'let s = "x" + "y"',
            "let yes = a > 3 and not (a == 7) or a != 8",
            "let le = 2 <= 2 and (3 >= 4) == false",
            "let prec = 2 + 3 * 4 - 10 // 3",  # 2 + 12 - 3
            "let paren = (2 + 3) * 4",
            "flow f(h = i * 2, g = fl, s2 = s, b = yes and le, p = prec, q = paren) {",
            "  let local = h + 1",
            "  input 4x8x8",
            "  coupling affine hidden=local",
            "}",
        )
    )
    assert spec.params == {"h": 12, "g": 3.0, "s2": "xy", "b": True, "p": 11, "q": 20}
    assert isinstance(spec.params["g"], float)
    assert spec.layers[0].args["hidden"] == 13


def test_let_with_a_float_and_a_bool_feeds_layer_arguments():
    spec = ir(
        t(
            "let lu = false",
            "let lr = 2e-3",
            "flow f {",
            "  input 4x8x8",
            "  invconv lu=lu",
            "  train { optimizer adam lr=lr }",
            "}",
        )
    )
    assert spec.layers[0].args == {"lu": False}
    assert spec.train["optimizer"].options == {"lr": 2e-3}


def test_let_with_a_word_value():
    spec = ir(
        t(
            "let m = reverse",
            "flow f {",
            "  let n = shuffle",
            "  input 4x8x8",
            "  permute mode=m",
            "  permute mode=n",
            "}",
        )
    )
    assert [layer.args["mode"] for layer in spec.layers] == ["reverse", "shuffle"]


def test_words_as_parameter_defaults_and_block_arguments():
    spec = ir(
        t(
            "block b(m = reverse) { permute mode=m }",
            "flow f(m2 = shuffle) {",
            "  input 4x8x8",
            "  b()",
            "  b(m=m2)",
            "}",
        )
    )
    assert [layer.args["mode"] for layer in spec.layers] == ["reverse", "shuffle"]
    assert spec.params == {"m2": "shuffle"}


# ---- blocks and flows ----------------------------------------------------------------------
def test_block_with_parameters_and_defaults():
    spec = ir(
        t(
            "block glow_step(hidden = 512, lu = true, cond) {",
            "  actnorm",
            "  invconv lu=lu",
            "  coupling affine hidden=hidden on=cond",
            "}",
            "flow f {",
            "  input 4x8x8",
            "  condition lr: image 3x4x4",
            "  glow_step(cond=lr)",
            "  glow_step(hidden=16, lu=false, cond=lr)",
            "}",
        )
    )
    assert paths(spec) == [
        "actnorm",
        "invconv",
        "coupling",
        "actnorm_2",
        "invconv_2",
        "coupling_2",
    ]
    assert spec.layers[1].args == {"lu": True}
    assert spec.layers[2].args["hidden"] == 512 and spec.layers[2].args["on"] == "lr"
    assert spec.layers[4].args == {"lu": False}
    assert spec.layers[5].args["hidden"] == 16
    assert spec.layers[5].trace[0].text.startswith("in block `glow_step`, instantiated at 10:3")


def test_block_defaults_are_evaluated_where_the_block_is_defined():
    spec = ir(
        t(
            "let width = 24",
            "block b(hidden = width * 2) { coupling affine hidden=hidden }",
            "flow f(width = 1) {",
            "  input 4x8x8",
            "  b()",
            "}",
        )
    )
    assert spec.layers[0].args["hidden"] == 48


def test_blocks_call_blocks():
    spec = ir(
        t(
            "block inner(h = 1) { coupling additive hidden=h }",
            "block outer(h = 2) { actnorm; inner(h=h * 3) }",
            "flow f {",
            "  input 4x8x8",
            "  level { outer() }",
            "}",
        )
    )
    assert paths(spec) == ["level1.actnorm", "level1.coupling"]
    assert spec.layers[1].kind == "coupling.additive"
    assert spec.layers[1].args["hidden"] == 6
    assert [o.text.split(",")[0] for o in spec.layers[1].trace] == [
        "in block `outer`",
        "in block `inner`",
    ]


def test_flow_with_parameters():
    text = t(
        "flow f(L = 2, K = 3, hidden = 16) {",
        "  input 1x16x16",
        "  level x L { squeeze; step x K { coupling affine hidden=hidden } }",
        "}",
    )
    spec = ir(text)
    assert spec.params == {"L": 2, "K": 3, "hidden": 16}
    assert len(spec.layers) == 2 * (1 + 3)
    assert {
        layer.args["hidden"] for layer in spec.layers if layer.kind.startswith("coupling")
    } == {16}


def test_default_of_a_flow_parameter_may_use_lets():
    spec = ir(
        t(
            "let base = 4",
            "flow f(a = base * 2) {",
            "  input 4x8x8",
            "  coupling affine hidden=a",
            "}",
        )
    )
    assert spec.params == {"a": 8}


def test_extends_with_argument_overrides():
    child = PARENT + t("flow small extends base(K=1, hidden=4) { }")
    spec = ir(child, flow="small")
    assert spec.params == {"L": 2, "K": 1, "hidden": 4, "lu": True}
    assert paths(spec) == [
        "level1.squeeze",
        "level1.step01.actnorm",
        "level1.step01.invconv",
        "level1.step01.coupling",
        "level1.split",
        "level2.squeeze",
        "level2.step01.actnorm",
        "level2.step01.invconv",
        "level2.step01.coupling",
    ]
    assert spec.layers[3].args["hidden"] == 4
    assert spec.name == "small"


def test_extends_chain_and_grandparent_parameters():
    text = PARENT + t(
        "flow mid(heads = 2) extends base(hidden=16) {",
        "  insert attention isdp heads=heads patches=1 after coupling",
        "}",
        # K and lu are declared by the grandparent; heads by the parent
        "flow leaf(extra = 1) extends mid(K=1, lu=false, heads=3) {",
        "  train { steps 5 }",
        "}",
    )
    spec = ir(text, flow="leaf")
    assert spec.params == {"L": 2, "K": 1, "hidden": 16, "lu": False, "heads": 3, "extra": 1}
    assert spec.layer("level2.step01.invconv").args == {"lu": False}
    assert spec.layer("level1.step01.attention").args["heads"] == 3
    assert spec.layer("level1.step01.coupling").args["hidden"] == 16
    # the child's train settings are merged over the parent's
    assert {k: s.value for k, s in spec.train.items()} == {
        "task": "generation",
        "batch": 8,
        "steps": 5,
    }
    mid = ir(text, flow="mid")
    assert mid.params["K"] == 2 and mid.params["heads"] == 2


def test_extends_args_are_evaluated_in_the_childs_scope():
    text = PARENT + t("flow c(k = 3) extends base(K=k - 2, hidden=k * 4) { }")
    spec = ir(text, flow="c", overrides={"k": 5})
    assert (spec.params["K"], spec.params["hidden"]) == (3, 20)


def test_nearer_extends_arguments_win():
    text = PARENT + t("flow mid extends base(K=3) { }", "flow leaf extends mid(K=1) { }")
    assert ir(text, flow="leaf").params["K"] == 1
    assert ir(text, flow="mid").params["K"] == 3


def test_child_may_redeclare_the_input():
    text = PARENT + t("flow tiny extends base(L=1) {", "  input 1x4x4", "}")
    spec = ir(text, flow="tiny")
    assert spec.input == (1, 4, 4)
    assert spec.latents[-1].shape == (4, 2, 2)


# ---- overrides (--set) ---------------------------------------------------------------------
TYPED = t(
    "flow f(K = 2, lr = 0.5, lu = true, mode = reverse) {",
    "  input 4x8x8",
    "  step x K { invconv lu=lu; permute mode=mode }",
    "  train { optimizer adam lr=lr }",
    "}",
)


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("3", 3),
        ("-1", -1),
        ("0.25", 0.25),
        ("8e-4", 8e-4),
        ("true", True),
        ("false", False),
        ("shuffle", "shuffle"),
        ("data/x", "data/x"),
    ],
)
def test_parse_override_types(raw, expected):
    value = parse_override(raw)
    assert value == expected
    assert type(value) in (type(expected), type(expected).__mro__[0]) or isinstance(value, str)
    assert isinstance(value, bool) == isinstance(expected, bool)
    assert isinstance(value, float) == isinstance(expected, float)


def test_overrides_are_typed():
    sets = {
        k: parse_override(v)
        for k, v in {"K": "3", "lr": "1", "lu": "false", "mode": "shuffle"}.items()
    }
    spec = ir(TYPED, overrides=sets)
    assert spec.params == {"K": 3, "lr": 1.0, "lu": False, "mode": "shuffle"}
    assert isinstance(spec.params["lr"], float)
    assert len(spec.layers) == 6
    assert spec.layers[0].args == {"lu": False}
    assert spec.layers[1].args == {"mode": "shuffle"}
    assert spec.train["optimizer"].options == {"lr": 1.0}
    # plain Python values work as well as command-line strings
    assert ir(TYPED, overrides={"mode": "shuffle", "lr": 0.1}).params["mode"] == "shuffle"


def test_override_beats_default_and_extends_argument_beats_default():
    text = PARENT + t("flow c extends base(K=3) { }")
    assert ir(text, flow="base").params["K"] == 2
    assert ir(text, flow="base", overrides={"K": 5}).params["K"] == 5
    assert ir(text, flow="c").params["K"] == 3
    # an override of a parameter the extends clause does not touch
    assert ir(text, flow="c", overrides={"hidden": 32}).params["hidden"] == 32


def test_override_beats_extends_argument():
    text = PARENT + t("flow c extends base(K=3) { }", "flow d extends c(hidden=4) { }")
    assert ir(text, flow="c", overrides={"K": 5}).params["K"] == 5
    assert ir(text, flow="d", overrides={"K": 5}).params["K"] == 5
