"""Name errors, table-driven (:mod:`error_rows`): unknown and misspelt names, imports, and
recursive or duplicate definitions.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from error_rows import (
    IN4,
    SQ8,
    Row,
    check_api,
    check_cli,
    check_one_error,
    one_error_params,
    params,
)
from flowtext import t

ROWS: list[Row] = [
    # ---- unknown names -------------------------------------------------------------------
    Row(
        "unknown_layer",
        t("flow f {", SQ8, "  squeez", "}"),
        "E104",
        3,
        3,
        "did you mean `squeeze`",
    ),
    Row(
        "unknown_layer_variant",
        t("flow f {", IN4, "  coupling affin", "}"),
        "E104",
        3,
        12,
        "did you mean `affine`",
    ),
    Row("layer_needs_variant", t("flow f {", IN4, "  attention", "}"), "E104", 3, 3, "imap, isdp"),
    Row(
        "block_used_as_layer",
        t("block b() { actnorm }", "flow f {", IN4, "  b", "}"),
        "E104",
        4,
        3,
        "call it as `b()`",
    ),
    Row(
        "misspelt_argument",
        t("flow f {", IN4, "  coupling affine hiden=3", "}"),
        "E105",
        3,
        19,
        "did you mean `hidden`",
    ),
    Row(
        "argument_on_argless_layer",
        t("flow f {", IN4, "  actnorm hidden=3", "}"),
        "E105",
        3,
        11,
        "takes no arguments",
    ),
    Row(
        "unknown_name_in_expression",
        t("flow f(K = 2) {", IN4, "  step x Kk { actnorm }", "}"),
        "E101",
        3,
        10,
        "did you mean `K`",
    ),
    Row(
        "unknown_block",
        t("flow f {", IN4, "  glow_stp()", "}", "block glow_step() { actnorm }"),
        "E102",
        3,
        3,
        "did you mean `glow_step`",
    ),
    Row("unknown_prior", t("flow f {", IN4, "  prior laplace", "}"), "E104", 3, 3, "gaussian"),
    Row(
        "unknown_condition_type",
        t("flow f {", IN4, "  condition lr: picture 3x4x4", "}"),
        "E104",
        3,
        17,
        "labels NxHxW or class N",
    ),
    Row(
        "unknown_encoder",
        t(
            "flow f {",
            IN4,
            "  condition lr: image 3x4x4 encoder=unet(blocks=2)",
            "  injector on=lr",
            "}",
        ),
        "E104",
        3,
        37,
        "rrdb, convnet",
    ),
    Row(
        "misspelt_encoder_argument",
        t(
            "flow f {",
            IN4,
            "  condition lr: image 3x4x4 encoder=rrdb(blok=2)",
            "  injector on=lr",
            "}",
        ),
        "E105",
        3,
        47,
        "did you mean `blocks`",
    ),
    Row(
        "misspelt_condition_keyword",
        t("flow f {", IN4, "  condition lr: image 3x4x4 enc=rrdb()", "  injector on=lr", "}"),
        "E105",
        3,
        29,
        "did you mean `encoder`",
    ),
    Row(
        "unknown_flow_selected",
        t("flow glow {", IN4, "}"),
        "E103",
        None,
        None,
        "did you mean `glow`",
        flow="glwo",
    ),
    Row("extends_unknown_flow", t("flow c extends nope { }"), "E103", 1, 8, "unknown flow"),
    Row("no_flow_in_file", t("let x = 1"), "E103", None, None, "defines no flow", cli=False),
    # ---- imports -------------------------------------------------------------------------
    Row(
        "import_cycle",
        t('import "b.flow" as b', "flow f {", IN4, "}"),
        "E132",
        1,
        8,
        "import cycle",
        files={"b.flow": t('import "main.flow" as m', "let z = 1")},
        in_file="b.flow",
    ),
    Row(
        "missing_import",
        t('import "nothere.flow" as n', "flow f {", IN4, "}"),
        "E131",
        1,
        8,
        "no such file",
    ),
    Row(
        "unknown_namespace",
        t("flow f {", IN4, "  lib.glow_step()", "}"),
        "E107",
        3,
        3,
        'import "FILE.flow" as lib',
    ),
    Row(
        "unknown_block_in_namespace",
        t('import "lib.flow" as lib', "flow f {", IN4, "  lib.nope()", "}"),
        "E102",
        4,
        3,
        "lib.nope",
        files={"lib.flow": t("block st() { actnorm }")},
    ),
    Row(
        "unknown_let_in_namespace",
        t('import "lib.flow" as lib', "flow f {", IN4, "  step x lib.widht { actnorm }", "}"),
        "E101",
        4,
        10,
        "did you mean `width`",
        files={"lib.flow": t("let width = 2")},
    ),
    Row(
        "syntax_error_in_import",
        t('import "lib.flow" as lib', "flow f {", IN4, "}"),
        "E001",
        1,
        10,
        "`)`",
        files={"lib.flow": t("block q( {")},
        in_file="lib.flow",
    ),
    # ---- recursion and definitions -------------------------------------------------------
    Row(
        "block_recursion",
        t("block b() {", "  actnorm", "  b()", "}", "flow f {", IN4, "  b()", "}"),
        "E160",
        3,
        3,
        "calls itself",
    ),
    Row(
        "block_mutual_recursion",
        t("block a() { b() }", "block b() { a() }", "flow f {", IN4, "  a()", "}"),
        "E160",
        2,
        13,
        "recurse",
    ),
    Row("flow_extends_itself", t("flow f extends f {", IN4, "}"), "E161", 1, 8, "itself"),
    Row(
        "flows_extend_each_other",
        t("flow f extends g { }", "flow g extends f { }"),
        "E161",
        2,
        8,
        "itself",
        flow="f",
    ),
    Row(
        "duplicate_flow",
        t("flow f {", IN4, "}", "flow f {", IN4, "}"),
        "E110",
        4,
        1,
        "defined twice",
    ),
    Row(
        "duplicate_let",
        t("let a = 1", "let a = 2", "flow f {", IN4, "}"),
        "E110",
        2,
        1,
        "defined twice",
    ),
    Row(
        "duplicate_block",
        t("block b() { actnorm }", "block b() { invconv }", "flow f {", IN4, "  b()", "}"),
        "E110",
        2,
        1,
        "defined twice",
    ),
    Row("duplicate_input", t("flow f {", IN4, IN4, "}"), "E151", 3, 3, "twice"),
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
