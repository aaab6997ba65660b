"""Structure errors, table-driven (:mod:`error_rows`): shapes and invertibility, conditions,
insert rules, and what may stand where.
"""

from __future__ import annotations

from error_rows import IN4, SQ8, Row, row_tests
from flowtext import t

from flowspec.api import analyze

ROWS: list[Row] = [
    # ---- shapes and invertibility ---------------------------------------------------------
    Row(
        "split_one_channel",
        t("flow f {", SQ8, "  split", "}"),
        "E202",
        3,
        3,
        "at least 2 channels",
    ),
    Row(
        "channel_coupling_one_channel",
        t("flow f {", SQ8, "  coupling affine", "}"),
        "E202",
        3,
        3,
        "mask=checkerboard",
    ),
    Row(
        "squeeze_odd_height",
        t("flow f {", "  input 1x7x8", "  squeeze", "}"),
        "E201",
        3,
        3,
        "divisible by 2",
    ),
    Row(
        "squeeze_odd_height_in_block",
        t(
            "flow f {",
            "  input 1x12x12",
            "  level x 3 {",
            "    lvl()",
            "  }",
            "}",
            "block lvl() {",
            "  squeeze",
            "  split",
            "}",
        ),
        "E201",
        8,
        3,
        "4x3x3",
        note="in block `lvl`, instantiated at 4:5 (level 3)",
    ),
    Row(
        "isdp_patches_not_square",
        t("flow f {", IN4, "  attention isdp patches=3", "}"),
        "E203",
        3,
        18,
        "not a square",
    ),
    Row(
        "isdp_patches_not_tiling",
        t("flow f {", "  input 4x6x6", "  attention isdp patches=16", "}"),
        "E203",
        3,
        18,
        "not divisible by 4",
    ),
    Row(
        "isdp_too_many_heads",
        t("flow f {", IN4, "  attention isdp heads=33", "}"),
        "E204",
        3,
        18,
        "heads <= 32",
    ),
    Row(
        "latent_mismatch",
        t("flow f {", SQ8, "  squeeze", "  expect latent 2x4x4", "}"),
        "E205",
        4,
        3,
        "final latent is 4x4x4",
    ),
    # ---- conditions ----------------------------------------------------------------------
    Row(
        "condition_not_declared",
        t("flow f {", IN4, "  coupling affine on=lr", "}"),
        "E302",
        3,
        19,
        "condition lr",
    ),
    Row(
        "injector_without_on", t("flow f {", IN4, "  injector", "}"), "E301", 3, 3, "on=CONDITION"
    ),
    Row(
        "prior_on_undeclared",
        t("flow f {", IN4, "  prior gaussian learned on=lr", "}"),
        "E302",
        3,
        3,
        "on=lr",
    ),
    Row(
        "condition_declared_twice",
        t(
            "flow f {",
            IN4,
            "  condition lr: image 3x4x4",
            "  condition lr: image 3x4x4",
            "  injector on=lr",
            "}",
        ),
        "E110",
        4,
        3,
        "twice",
    ),
    # ---- insert rules --------------------------------------------------------------------
    Row(
        "insert_matches_nothing",
        t("flow f {", IN4, "  insert attention imap after coupling", "}"),
        "E401",
        3,
        31,
        "matches nothing",
    ),
    Row(
        "insert_matches_nothing_in_levels",
        t(
            "flow f {",
            IN4,
            "  level x 2 { step x 2 { actnorm } }",
            "  insert invconv before actnorm in level 3..4",
            "}",
        ),
        "E401",
        4,
        25,
        "levels 3..4",
    ),
    Row(
        "insert_unknown_anchor",
        t("flow f {", IN4, "  actnorm", "  insert attention imap after fancy", "}"),
        "E104",
        4,
        31,
        "unknown layer kind `fancy`",
    ),
    # ---- structure -----------------------------------------------------------------------
    Row(
        "nested_levels",
        t("flow f {", IN4, "  level {", "    level { actnorm }", "  }", "}"),
        "E152",
        4,
        5,
        "cannot nest",
    ),
    Row(
        "nested_steps",
        t("flow f {", IN4, "  step { step { actnorm } }", "}"),
        "E152",
        3,
        10,
        "cannot nest",
    ),
    Row(
        "child_flow_adds_layers",
        t("flow p {", IN4, "  actnorm", "}", "flow c extends p {", "  actnorm", "}"),
        "E402",
        6,
        3,
        "insert LAYER",
        flow="c",
    ),
    Row(
        "child_flow_adds_group",
        t("flow p {", IN4, "  actnorm", "}", "flow c extends p {", "  level { squeeze }", "}"),
        "E402",
        6,
        3,
        "cannot add",
        flow="c",
    ),
    Row("no_input", t("flow f {", "  actnorm", "}"), "E207", 1, 1, "input CxHxW"),
    Row(
        "several_flows_none_chosen",
        t("flow f {", IN4, "}", "flow g {", IN4, "}"),
        "E113",
        None,
        None,
        "--flow NAME",
        cli=False,
    ),
    Row(
        "input_in_block",
        t("block b() {", IN4, "}", "flow f {", IN4, "  b()", "}"),
        "E153",
        2,
        3,
        "not in a block",
    ),
    Row(
        "train_in_block",
        t("block b() {", "  train { batch 2 }", "}", "flow f {", IN4, "  b()", "}"),
        "E153",
        2,
        3,
        "not in a block",
    ),
]


test_error_row_api, test_error_row_cli, test_one_mistake_gives_one_error = row_tests(ROWS)


def test_insert_outside_levels_help_does_not_suggest_the_same_kind():
    text = t(
        "flow f {",
        IN4,
        "  level x 2 { step x 2 { actnorm } }",
        "  insert invconv before actnorm in level 3..4",
        "}",
    )
    _, diags = analyze("m.flow", text=text)
    assert diags[0].code == "E401"
    assert "did you mean `actnorm`" not in (diags[0].help or "")
