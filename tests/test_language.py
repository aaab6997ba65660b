"""The .flow language of docs/language.md, one construct at a time, asserted on the resolved IR.

Every spec resolved here also goes through a JSON round trip of the IR
(``model_dump_json`` -> ``FlowSpec.model_validate_json``), since everything after
resolve -- the builder, the renderer, run directories -- only sees that JSON.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import pytest
from irdata import strip_spans

from flowspec import parse_override
from flowspec.api import analyze, load, loads
from flowspec.ir import FlowSpec
from flowspec.kinds import KINDS, PRIORS
from flowspec.parse import parse

#: layer kinds and priors (as ``prior.KEY``): the vocabulary a flow statement can name
ALL = {**KINDS, **{f"prior.{key}": p for key, p in PRIORS.items()}}


def t(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def ir(text: str, flow: str | None = None, overrides: dict | None = None, **kw) -> FlowSpec:
    spec = loads(text, flow=flow, overrides=overrides, **kw)
    assert_json_round_trip(spec)
    return spec


def assert_json_round_trip(spec: FlowSpec) -> None:
    text = spec.model_dump_json()
    json.loads(text)
    again = FlowSpec.model_validate_json(text)
    assert again == spec
    assert again.model_dump() == spec.model_dump()


def paths(spec: FlowSpec) -> list[str]:
    return [layer.path for layer in spec.layers]


def kinds(spec: FlowSpec) -> list[str]:
    return [layer.kind for layer in spec.layers]


# ---- header, comments, separators ----------------------------------------------------------
def test_version_header_is_optional():
    body = t("flow f {", "  input 4x8x8", "  actnorm", "}")
    with_header = ir("flowspec 0.1\n" + body)
    without = ir(body)
    assert parse("flowspec 0.1\n" + body).version == "0.1"
    assert parse(body).version is None
    assert [layer.kind for layer in with_header.layers] == ["actnorm"]
    assert strip_spans(with_header.model_dump()) == strip_spans(without.model_dump())


def test_comments_everywhere():
    text = t(
        "# leading comment",
        "flowspec 0.1  # after the header",
        "# before a flow",
        "flow f(K = 2,  # a parameter",
        "       hidden = 8) {  # after the brace",
        "  # own line",
        "  input 4x8x8  # after input",
        "  step x K {  # after a group head",
        "    coupling affine hidden=hidden  # after a layer",
        "    # before the closing brace",
        "  }",
        '  train { data images root="data/#1" }  # a # inside a string is not a comment',
        "}",
        "# at the end, without a newline",
    ).rstrip("\n")
    spec = ir(text)
    assert paths(spec) == ["step01.coupling", "step02.coupling"]
    assert spec.layers[0].args["hidden"] == 8
    assert spec.train["data"].options == {"root": "data/#1"}
    comments = [c.text for c in parse(text).comments]
    assert len(comments) == 12
    assert comments[0] == "# leading comment"
    assert comments[-1] == "# at the end, without a newline"


def test_semicolons_separate_statements():
    lines = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  actnorm",
            "  invconv lu=false",
            "  level {",
            "    squeeze",
            "  }",
            "  train {",
            "    batch 4",
            "    steps 2",
            "  }",
            "}",
        )
    )
    semis = ir(
        "flow f { input 4x8x8; actnorm; invconv lu=false; level { squeeze }; "
        "train { batch 4; steps 2 } }"
    )
    assert paths(semis) == paths(lines) == ["actnorm", "invconv", "level1.squeeze"]
    assert [layer.args for layer in semis.layers] == [layer.args for layer in lines.layers]
    assert semis.train["batch"].value == 4 and semis.train["steps"].value == 2
    # several separators in a row and separators at the edges are fine
    spec = ir(";\nflow f {;; input 4x8x8 ;; actnorm ;\n}\n;")
    assert kinds(spec) == ["actnorm"]


# ---- imports -------------------------------------------------------------------------------
def test_import_is_relative_to_the_importing_file(tmp_path: Path, monkeypatch):
    (tmp_path / "lib" / "more").mkdir(parents=True)
    (tmp_path / "lib" / "more" / "base.flow").write_text(t("let width = 6"))
    # lib/steps.flow imports more/base.flow relative to lib/, not to the main file
    (tmp_path / "lib" / "steps.flow").write_text(
        t(
            'import "more/base.flow" as base',
            "let width = base.width + 2",
            "block st(hidden = 4) {",
            "  actnorm",
            "  coupling affine hidden=hidden",
            "}",
            "flow small(K = 1) {",
            "  input 4x8x8",
            "  step x K { st() }",
            "}",
        )
    )
    main = tmp_path / "main.flow"
    main.write_text(
        t(
            'import "lib/steps.flow" as lib',
            "flow f {",
            "  input 4x8x8",
            "  step x 2 { lib.st(hidden=lib.width) }",
            "}",
            "flow g extends lib.small(K=3) { }",
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load(main, flow="f")
    assert_json_round_trip(spec)
    assert paths(spec) == [
        "step01.actnorm",
        "step01.coupling",
        "step02.actnorm",
        "step02.coupling",
    ]
    assert spec.layers[1].args["hidden"] == 8
    assert "in block `st`" in spec.layers[1].trace[0].text
    assert spec.layers[1].span.file.endswith("steps.flow")  # the span is in the library
    g = load(main, flow="g")
    assert paths(g) == [
        "step01.actnorm",
        "step01.coupling",
        "step02.actnorm",
        "step02.coupling",
        "step03.actnorm",
        "step03.coupling",
    ]
    assert g.params == {"K": 3}


def test_shared_import_is_loaded_once(tmp_path: Path):
    (tmp_path / "c.flow").write_text(t("let n = 2"))
    (tmp_path / "a.flow").write_text(t('import "c.flow" as c', "let n = c.n"))
    main = tmp_path / "m.flow"
    main.write_text(
        t(
            'import "a.flow" as a',
            'import "c.flow" as c',
            "flow f {",
            "  input 4x8x8",
            "  step x a.n + c.n { actnorm }",
            "}",
        )
    )
    assert len(load(main).layers) == 4


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


PARENT = t(
    "flow base(L = 2, K = 2, hidden = 8, lu = true) {",
    "  input 1x16x16",
    "  prior gaussian",
    "  for l in 1..L {",
    "    level {",
    "      squeeze",
    "      step x K {",
    "        actnorm",
    "        invconv lu=lu",
    "        coupling affine hidden=hidden",
    "      }",
    "      if l < L { split }",
    "    }",
    "  }",
    "  train {",
    "    task generation",
    "    batch 8",
    "    steps 100",
    "  }",
    "}",
)


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


# ---- insert rules --------------------------------------------------------------------------
def test_insert_after_kind_everywhere():
    spec = ir(
        PARENT + t("flow c extends base {", "  insert attention imap after coupling", "}"),
        flow="c",
    )
    attn = [layer for layer in spec.layers if layer.kind == "attention.imap"]
    assert [layer.path for layer in attn] == [
        "level1.step01.attention",
        "level1.step02.attention",
        "level2.step01.attention",
        "level2.step02.attention",
    ]
    assert all(layer.inserted for layer in attn)
    assert not any(layer.inserted for layer in spec.layers if layer.kind != "attention.imap")
    i = paths(spec).index("level1.step01.coupling")
    assert paths(spec)[i + 1] == "level1.step01.attention"
    assert "inserted by the rule at 22:3" in attn[0].trace[-1].text
    assert attn[0].in_shape == attn[0].out_shape == (4, 8, 8)


def test_insert_before_kind_in_levels():
    spec = ir(
        PARENT
        + t(
            "flow c(L = 3) extends base(L=L) {",
            "  insert attention isdp patches=1 before invconv in level 2..L",
            "}",
        ),
        flow="c",
    )
    attn = [layer.path for layer in spec.layers if layer.kind == "attention.isdp"]
    assert attn == [
        "level2.step01.attention",
        "level2.step02.attention",
        "level3.step01.attention",
        "level3.step02.attention",
    ]
    step = [layer.path for layer in spec.layers if layer.path.startswith("level2.step01.")]
    assert step == [
        "level2.step01.actnorm",
        "level2.step01.attention",
        "level2.step01.invconv",
        "level2.step01.coupling",
    ]


def test_two_inserts_at_the_same_anchor_keep_their_order():
    spec = ir(
        PARENT
        + t(
            "flow c extends base(L=1, K=1) {",
            "  insert attention imap after coupling",
            "  insert permute mode=reverse after coupling",
            "  insert attention isdp patches=1 before coupling",
            "  insert injector on=lr before coupling",
            "  condition lr: image 3x4x4",
            "}",
        ),
        flow="c",
    )
    assert [layer.kind for layer in spec.layers if layer.step == 1] == [
        "actnorm",
        "invconv",
        "attention.isdp",
        "injector",
        "coupling.affine",
        "attention.imap",
        "permute",
    ]


def test_insert_matches_a_variant_or_every_variant():
    text = t(
        "flow f {",
        "  input 4x8x8",
        "  coupling affine",
        "  coupling additive",
        "  insert actnorm after coupling additive",
        "}",
    )
    assert kinds(ir(text)) == ["coupling.affine", "coupling.additive", "actnorm"]
    text = text.replace("after coupling additive", "after coupling")
    assert kinds(ir(text)) == ["coupling.affine", "actnorm", "coupling.additive", "actnorm"]


def test_insert_in_the_flow_itself_applies_after_its_body():
    spec = ir(
        t(
            "flow f {",
            "  insert actnorm before squeeze",
            "  input 4x8x8",
            "  level x 2 { squeeze }",
            "}",
        )
    )
    assert paths(spec) == ["level1.actnorm", "level1.squeeze", "level2.actnorm", "level2.squeeze"]


# ---- control flow --------------------------------------------------------------------------
def test_for_loop_is_inclusive_and_binds_its_variable():
    spec = ir(
        t(
            "flow f(n = 3) {",
            "  input 4x8x8",
            "  for i in 1..n { coupling affine hidden=i * 8 }",
            "  for j in 3..2 { actnorm }",  # empty range
            "}",
        )
    )
    assert [layer.args["hidden"] for layer in spec.layers] == [8, 16, 24]


def test_if_else_and_else_if():
    text = t(
        "flow f(L = 4) {",
        "  input 4x16x16",
        "  for l in 1..L {",
        "    level {",
        "      if l == 1 {",
        "        actnorm",
        "      } else if l == 2 {",
        "        invconv",
        "      } else if l == 3 and not (L < 3) {",
        "        permute",
        "      } else {",
        "        coupling affine",
        "      }",
        "      if l > 100 { squeeze }",
        "    }",
        "  }",
        "}",
    )
    assert kinds(ir(text)) == ["actnorm", "invconv", "permute", "coupling.affine"]
    assert paths(ir(text)) == [
        "level1.actnorm",
        "level2.invconv",
        "level3.permute",
        "level4.coupling",
    ]


def test_levels_and_steps_are_numbered_and_padded():
    spec = ir(
        t(
            "flow f {",
            "  input 4x16x16",
            "  level x 2 {",
            "    squeeze",
            "    step x 10 { actnorm; actnorm }",
            "  }",
            "}",
        )
    )
    assert spec.layers[0].path == "level1.squeeze"
    assert spec.layers[1].path == "level1.step01.actnorm"
    assert spec.layers[2].path == "level1.step01.actnorm_2"
    assert spec.layers[-1].path == "level2.step10.actnorm_2"
    assert {(layer.level, layer.step) for layer in spec.layers[1:3]} == {(1, 1)}
    # steps restart in each level
    assert spec.layer("level2.step01.actnorm").level == 2


def test_step_padding_grows_with_the_largest_count():
    spec = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  level { step x 3 { actnorm } }",
            "  level { step x 100 { actnorm } }",
            "}",
        )
    )
    assert spec.layers[0].path == "level1.step001.actnorm"
    assert spec.layers[-1].path == "level2.step100.actnorm"
    assert "level2.step007.actnorm" in paths(spec)


def test_paper_style_paths():
    spec = ir(
        t(
            "flow f(L = 2, K = 8) {",
            "  input 1x8x8",
            "  for l in 1..L { level {",
            "    squeeze",
            "    step x K { actnorm; invconv; coupling affine }",
            "    if l < L { split }",
            "  } }",
            "}",
        )
    )
    assert "level2.step07.coupling" in paths(spec)
    assert "level1.split" in paths(spec)


def test_groups_outside_levels_and_repeat_zero():
    spec = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  step x 2 { actnorm }",
            "  step x 0 { invconv }",
            "  actnorm",
            "}",
        )
    )
    assert paths(spec) == ["step01.actnorm", "step02.actnorm", "actnorm"]


def test_repeat_count_from_an_expression():
    spec = ir(t("flow f(K = 5) {", "  input 4x8x8", "  step x K // 2 + 1 { actnorm }", "}"))
    assert len(spec.layers) == 3


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


# ---- the layer registry --------------------------------------------------------------------
COND = "  condition c: image 3x4x4 encoder=convnet(blocks=1, features=4)"

# a non-default value for every argument of the kinds registered today; kinds registered
# later are covered by test_every_kind_accepts_its_arguments_spelled_out
EXAMPLES: dict[str, str] = {
    "actnorm": "",
    "invconv": "lu=false",
    "permute": "mode=reverse",
    "coupling.affine": "hidden=16 net=resnet mask=checkerboard flip=true on=c",
    "coupling.additive": "hidden=8 net=glow mask=checkerboard on=c",
    "coupling.mixture": "hidden=12 components=3 net=resnet flip=true on=c",
    "injector": "on=c hidden=5",
    "coupling.srflow": "on=c hidden=12 net=glow inject=false scale=bounded",
    "attention.imap": "act=sigmoid mask=complement",
    "attention.isdp": "heads=2 patches=16 mask=complement",
    "squeeze": "factor=4",
    "split": "prior=fixed on=c",
    "prior.gaussian": "learned on=c",
    "coupling.spline": "hidden=16 bins=4 net=resnet mask=checkerboard flip=true on=c",
    "logit": "",  # alpha= is a float, which this table's parser does not read back
    "prior.logistic": "learned on=c",
    "cond_actnorm": "on=c",
    "cond_invconv": "lu=false on=c",
    "coupling.cond_affine": "hidden=16 cond_hidden=8 on=c",
}


def _literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v.isidentifier() else json.dumps(v)
    return repr(v)


def _kind_flow(key: str, kwargs: str) -> str:
    kind = ALL[key]
    if key.startswith("prior."):
        return t(
            "flow f {",
            "  input 4x8x8",
            COND,
            f"  prior {key[6:]} {kwargs}",
            "  coupling affine on=c",
            "}",
        )
    words = " ".join(w for w in (kind.head, kind.variant, kwargs) if w)
    return t("flow f {", "  input 4x8x8", COND, "  coupling affine on=c", f"  {words}", "}")


def _layer_of(spec: FlowSpec, key: str):
    return next(layer for layer in spec.layers if layer.kind == key and layer.path != "coupling")


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_layer_kind_with_keyword_arguments(key):
    if key not in ALL:
        pytest.skip(f"{key} is no longer registered")
    spec = ir(_kind_flow(key, EXAMPLES[key]))
    kind = ALL[key]
    if key.startswith("prior."):
        assert (spec.prior.learned, spec.prior.on) == (True, "c")
        return
    layer = _layer_of(spec, key)
    given = {}
    for part in EXAMPLES[key].split():
        name, value = part.split("=")
        given[name] = {"true": True, "false": False}.get(value, value)
        if value.isdigit():
            given[name] = int(value)
    expected = {**kind.Args().model_dump(), **given}
    assert layer.args == expected
    assert layer.in_shape == (4, 8, 8)
    assert layer.out_shape is not None


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_accepts_its_arguments_spelled_out(key):
    """Every argument of every registered kind, written out with its default value."""
    kind = ALL[key]
    defaults = kind.Args().model_dump()
    parts = []
    for name, value in defaults.items():
        extra = kind.Args.model_fields[name].json_schema_extra or {}
        if "args_of" in extra:  # written as a call of its registry field: net=glow()
            defaults[name] = {}
            continue
        if name == "on":
            value = "c" if kind.conditional != "never" else None
        if value is not None:
            parts.append(f"{name}={_literal(value)}")
    spec = ir(_kind_flow(key, " ".join(parts)))
    if key.startswith("prior."):
        assert spec.prior.on == ("c" if kind.conditional != "never" else None)
        return
    layer = _layer_of(spec, key)
    expected = dict(defaults)
    if "on" in expected:
        expected["on"] = "c" if kind.conditional != "never" else None
    assert layer.args == expected
    assert re.sub(r"_\d+$", "", layer.path.split(".")[-1]) == kind.head


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_rejects_an_unknown_argument(key):
    _, diags = analyze("k.flow", text=_kind_flow(key, "bogus_arg=1"))
    codes = [d.code for d in diags if d.severity == "error"]
    assert codes == ["E105"], diags


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_rejects_a_wrong_type_for_each_argument(key):
    kind = ALL[key]
    for name, info in kind.Args.model_fields.items():
        ann = info.annotation
        bad = (
            '"text"'
            if ann in (int, bool, float) or typing.get_origin(ann) is typing.Literal
            else "3"
        )
        _, diags = analyze("k.flow", text=_kind_flow(key, f"{name}={bad}"))
        codes = [d.code for d in diags if d.severity == "error"]
        assert codes and codes[0] in ("E121", "E122"), (name, diags)


def test_registry_kinds_have_one_head_and_variant_each():
    seen = set()
    for key, kind in KINDS.items():
        assert key == (kind.head if kind.variant is None else f"{kind.head}.{kind.variant}")
        assert (kind.head, kind.variant) not in seen
        seen.add((kind.head, kind.variant))


def test_coupling_defaults_to_affine():
    spec = ir(t("flow f {", "  input 4x8x8", "  coupling hidden=4", "}"))
    assert spec.layers[0].kind == "coupling.affine"


def test_after_rule_does_not_jump_over_a_layer_inserted_before_the_next_anchor():
    spec = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  step {",
            "    coupling affine",
            "    coupling additive",
            "  }",
            "  insert actnorm before coupling additive",
            "  insert permute after coupling affine",
            "}",
        )
    )
    assert kinds(spec) == ["coupling.affine", "permute", "actnorm", "coupling.additive"]
