"""Value errors, table-driven (:mod:`error_rows`): argument types and ranges, parameters and
``--set`` overrides, expressions, and the train recipe's settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from error_rows import (
    IN4,
    Row,
    check_api,
    check_cli,
    check_one_error,
    one_error_params,
    params,
)
from flowtext import t

ROWS: list[Row] = [
    # ---- argument types and ranges -------------------------------------------------------
    Row(
        "wrong_type_float_for_int",
        t("flow f {", IN4, "  coupling affine hidden=1.5", "}"),
        "E121",
        3,
        19,
        "must be an integer",
    ),
    Row(
        "wrong_type_int_for_bool",
        t("flow f {", IN4, "  invconv lu=3", "}"),
        "E121",
        3,
        11,
        "true or false",
    ),
    Row(
        "wrong_type_through_parameter",
        t("flow f(h = 1.5) {", IN4, "  coupling affine hidden=h", "}"),
        "E121",
        3,
        19,
        "got float",
    ),
    Row(
        "out_of_range",
        t("flow f {", IN4, "  coupling affine hidden=0", "}"),
        "E122",
        3,
        19,
        "out of range",
    ),
    Row(
        "invalid_enum_value",
        t("flow f {", IN4, "  permute mode=sideways", "}"),
        "E122",
        3,
        11,
        "reverse or shuffle",
    ),
    Row(
        "encoder_out_of_range",
        t(
            "flow f {",
            IN4,
            "  condition lr: image 3x4x4 encoder=rrdb(blocks=0)",
            "  injector on=lr",
            "}",
        ),
        "E122",
        3,
        49,
        "out of range",
    ),
    Row(
        "encoder_not_a_call",
        t("flow f {", IN4, "  condition lr: image 3x4x4 encoder=3", "  injector on=lr", "}"),
        "E121",
        3,
        29,
        "rrdb(",
    ),
    Row(
        "positional_argument",
        t("flow f {", IN4, "  actnorm foo", "}"),
        "E114",
        3,
        11,
        "name=value",
    ),
    Row(
        "duplicate_argument",
        t("flow f {", IN4, "  invconv lu=true lu=false", "}"),
        "E111",
        3,
        19,
        "twice",
    ),
    Row(
        "prior_unexpected_word",
        t("flow f {", IN4, "  prior gaussian fancy", "}"),
        "E114",
        3,
        18,
        "learned",
    ),
    # ---- parameters and overrides --------------------------------------------------------
    Row(
        "set_undeclared_parameter",
        t("flow f(K = 2) {", IN4, "}"),
        "E108",
        1,
        1,
        "has no parameter `nope`",
        sets=("nope=1",),
    ),
    Row(
        "set_misspelt_parameter",
        t("flow f(hidden = 2) {", IN4, "}"),
        "E108",
        1,
        1,
        "did you mean `hidden`",
        sets=("hiden=1",),
    ),
    Row(
        "set_float_for_int",
        t("flow f(K = 2) {", IN4, "}"),
        "E123",
        1,
        1,
        "takes int",
        sets=("K=1.5",),
    ),
    Row(
        "set_int_for_bool",
        t("flow f(flag = true) {", IN4, "}"),
        "E123",
        1,
        1,
        "takes bool",
        sets=("flag=1",),
    ),
    Row("flow_param_without_default", t("flow f(K) {", IN4, "}"), "E112", 1, 8, "K = VALUE"),
    Row(
        "block_unknown_argument",
        t("block b(hidden = 8) { actnorm }", "flow f {", IN4, "  b(hiden=3)", "}"),
        "E105",
        4,
        5,
        "did you mean `hidden`",
    ),
    Row(
        "block_missing_argument",
        t("block b(cond) { injector on=cond }", "flow f {", IN4, "  b()", "}"),
        "E109",
        4,
        3,
        "needs a value for `cond`",
    ),
    Row(
        "extends_unknown_argument",
        t("flow p(K = 1) {", IN4, "  actnorm", "}", "flow c extends p(KK = 1) { }"),
        "E105",
        5,
        18,
        "did you mean `K`",
        flow="c",
    ),
    # ---- expressions ---------------------------------------------------------------------
    Row(
        "division_by_zero",
        t("flow f(K = 2) {", IN4, "  step x K // 0 { actnorm }", "}"),
        "E140",
        3,
        15,
        "division by zero",
    ),
    Row(
        "modulo_by_zero",
        t("flow f {", IN4, "  step x 2 % 0 { actnorm }", "}"),
        "E140",
        3,
        14,
        "division by zero",
    ),
    Row(
        "if_on_non_bool",
        t("flow f(K = 2) {", IN4, "  if K { actnorm }", "}"),
        "E121",
        3,
        6,
        "true or false",
    ),
    Row(
        "arithmetic_on_bool",
        t("flow f {", IN4, "  step x 1 + true { actnorm }", "}"),
        "E121",
        3,
        10,
        "cannot apply `+`",
    ),
    Row(
        "not_on_int",
        t("flow f {", IN4, "  if not 3 { actnorm }", "}"),
        "E121",
        3,
        6,
        "`not` needs true or false",
    ),
    Row(
        "compare_int_and_string",
        t("flow f {", IN4, '  if 1 < "s" { actnorm }', "}"),
        "E121",
        3,
        6,
        "cannot compare",
    ),
    # ---- train recipe --------------------------------------------------------------------
    Row(
        "unknown_train_setting",
        t("flow f {", IN4, "  actnorm", "  train {", "    tsk generation", "  }", "}"),
        "E105",
        5,
        5,
        "did you mean `task`",
    ),
    Row(
        "bad_train_value",
        t("flow f {", IN4, "  actnorm", "  train {", "    task painting", "  }", "}"),
        "E122",
        5,
        5,
        "generation, super_resolution",
    ),
    Row(
        "train_value_wrong_type",
        t("flow f {", IN4, "  actnorm", '  train { bits "x" }', "}"),
        "E121",
        4,
        11,
        "got string",
    ),
    Row(
        "train_value_out_of_range",
        t("flow f {", IN4, "  actnorm", "  train { batch 0 }", "}"),
        "E122",
        4,
        11,
        "at least 1",
    ),
    Row(
        "train_unknown_option",
        t("flow f {", IN4, "  actnorm", "  train { optimizer adam lrr=3 }", "}"),
        "E105",
        4,
        11,
        "did you mean `lr`",
    ),
]


@pytest.mark.parametrize("row", params(ROWS))
def test_error_row_api(row: Row, tmp_path: Path):
    check_api(row, tmp_path)


@pytest.mark.parametrize("row", params([r for r in ROWS if r.cli]))
def test_error_row_cli(row: Row, tmp_path: Path, cli):
    check_cli(row, tmp_path, cli)


@pytest.mark.parametrize("row", one_error_params(ROWS))
def test_one_mistake_gives_one_error(row: Row, tmp_path: Path):
    check_one_error(row, tmp_path)
