"""Syntax errors, table-driven (:mod:`error_rows`): braces, separators, shapes as written,
and the hand-written messages of the common mistakes (``flowspec.parse.COMMON_MISTAKES``).
"""

from __future__ import annotations

import pytest
from error_rows import IN4, SQ8, Row, row_tests
from flowtext import t

from flowspec.errors import FlowSpecError
from flowspec.parse import COMMON_MISTAKES, parse

ROWS: list[Row] = [
    # ---- syntax -------------------------------------------------------------------------
    Row(
        "missing_closing_brace",
        t("flow f {", SQ8, "  level {", "    squeeze", "}"),
        "E002",
        5,
        2,
        "end of",
    ),
    Row("unclosed_block_at_eof", t("flow f {", SQ8, "  squeeze"), "E002", 3, 10, "end of"),
    Row(
        "unclosed_block_at_eof_without_newline",
        "flow f {\n  input 1x8x8\n  squeeze",
        "E002",
        3,
        10,
        "end of",
    ),
    Row("missing_open_brace", t("flow f", SQ8, "}"), "E001", 1, 7, "`{`"),
    Row("stray_closing_brace", t("flow f {", SQ8, "}", "}"), "E001", 4, 1, "unexpected `}`"),
    Row("unclosed_params", t("flow f(K = 2 {", SQ8, "}"), "E001", 1, 14, "`)`"),
    Row("unexpected_character", t("flow f {", "  input 1x8x8 @", "}"), "E001", 2, 15, "`@`"),
    Row(
        "colon_instead_of_equals_one_line",
        t("flow f { coupling affine hidden: 96 }"),
        "E003",
        1,
        32,
        "name=value",
    ),
    Row(
        "colon_instead_of_equals",
        t("flow f {", SQ8, "  coupling affine hidden: 96", "}"),
        "E003",
        3,
        25,
        "name=value",
    ),
    Row(
        "level_count_without_x",
        t("flow f {", SQ8, "  level 2 { squeeze }", "}"),
        "E005",
        3,
        9,
        "x N",
    ),
    Row(
        "step_x_without_count",
        t("flow f {", SQ8, "  step x { actnorm }", "}"),
        "E004",
        3,
        10,
        "count",
    ),
    Row("shape_with_commas", t("flow f {", "  input 1,32,32", "}"), "E006", 2, 10, "CxHxW"),
    Row(
        "insert_without_place",
        t("flow f {", SQ8, "  squeeze", "  insert attention imap", "}"),
        "E007",
        4,
        24,
        "before KIND",
    ),
    Row(
        "condition_without_colon",
        t("flow f {", SQ8, "  condition lr image 3x4x4", "}"),
        "E001",
        3,
        16,
        "`:`",
    ),
    # ---- shapes as written ---------------------------------------------------------------
    Row("shape_with_two_dims", t("flow f {", "  input 1x8", "}"), "E006", 2, 9, "3 dimensions"),
    Row("shape_with_four_dims", t("flow f {", "  input 1x8x8x2", "}"), "E006", 2, 9, "got 4"),
    Row(
        "negative_repeat",
        t("flow f {", IN4, "  step x 0 - 1 { actnorm }", "}"),
        "E122",
        3,
        10,
        "at least 0",
    ),
    Row(
        "too_many_repeats",
        t("flow f {", IN4, "  step x 10001 { actnorm }", "}"),
        "E170",
        3,
        10,
        "at most",
    ),
]


test_error_row_api, test_error_row_cli, test_one_mistake_gives_one_error = row_tests(ROWS)


# ---- the hand-written syntax messages ------------------------------------------------------
@pytest.mark.parametrize(
    "code,message,help_,examples", [pytest.param(*m, id=m[0]) for m in COMMON_MISTAKES]
)
def test_common_mistake_examples_match_themselves(code, message, help_, examples):
    for ex in examples:
        with pytest.raises(FlowSpecError) as info:
            parse(ex)
        assert info.value.code == code, str(info.value)


def _in_context(example: str) -> str:
    """The same mistake as in the example, inside a realistic multi-line flow."""
    inner = example.removeprefix("flow f {").strip()
    closed = inner.endswith("}")
    inner = inner.removesuffix("}").strip()
    lines = [
        "flowspec 0.1",
        "flow f(K = 2) {",
        "  input 1x8x8",
        "  level {",
        "    squeeze",
        f"    {inner}",
    ]
    return t(*lines, *(["  }", "}"] if closed else []))


@pytest.mark.parametrize(
    "code,message,help_,examples", [pytest.param(*m, id=m[0]) for m in COMMON_MISTAKES]
)
def test_common_mistakes_match_in_context(code, message, help_, examples):
    for ex in examples:
        with pytest.raises(FlowSpecError) as info:
            parse(_in_context(ex))
        assert info.value.diagnostics[0].message == message, str(info.value)


def test_expected_token_words_are_readable():
    """`expected ...` lists words a user can type, not lark's terminal names."""
    with pytest.raises(FlowSpecError) as info:
        parse(t("flow f {", "  for l in 1 to 3 { actnorm }", "}"))
    assert info.value.code == "E001"
    assert "`..`" in (info.value.diagnostics[0].help or "")
