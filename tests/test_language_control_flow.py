"""The .flow language of docs/language.md, asserted on the resolved IR: ``for``, ``if``,
levels and steps, their numbering and the paths of their layers.
"""

from __future__ import annotations

from flowtext import ir, kinds, paths, t


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
