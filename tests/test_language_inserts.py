"""The .flow language of docs/language.md, asserted on the resolved IR: insert rules
(``insert KIND before|after ANCHOR [in level ...]``).
"""

from __future__ import annotations

from flowtext import PARENT, ir, kinds, paths, t


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
