"""Every class of spec error, table-driven: code, exact position, message, CLI behaviour.

Each row is one small broken .flow file (plus the files it imports). The same row is run
through the Python API (``flowspec.api.load``) and through the CLI (``flowspec check``,
text and JSON), so a diagnostic that regresses in either place shows up here.

Rows marked ``bug=...`` document a front-end bug found while writing this suite; they are
strict xfails, so fixing the bug turns them into failures that ask for the mark to go.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowspec import parse_override
from flowspec.api import analyze, load, loads
from flowspec.errors import FlowSpecError
from flowspec.parse import COMMON_MISTAKES, parse

ROOT = Path(__file__).resolve().parents[1]


def t(*lines: str) -> str:
    """A .flow text, one argument per line (so columns are easy to read off)."""
    return "\n".join(lines) + "\n"


@dataclass
class Row:
    id: str
    text: str
    code: str
    line: int | None
    col: int | None
    frag: str = ""  # must occur in the message or the help
    flow: str | None = None
    sets: tuple[str, ...] = ()  # --set NAME=VALUE, as typed on the command line
    files: dict[str, str] = field(default_factory=dict)  # other files, relative to main
    in_file: str = "main.flow"  # the file the diagnostic points into
    note: str = ""  # must occur in one of the notes
    cli: bool = True  # False where `check` legitimately differs from `load` (several flows)
    bug: str | None = None


SQ8 = "  input 1x8x8"
IN4 = "  input 4x8x8"

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


def _params(rows: list[Row]):
    return [
        pytest.param(
            r,
            id=r.id,
            marks=pytest.mark.xfail(strict=True, reason="BUG: " + r.bug) if r.bug else (),
        )
        for r in rows
    ]


def _write(row: Row, tmp_path: Path) -> Path:
    main = tmp_path / "main.flow"
    main.write_text(row.text)
    for name, text in row.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return main


def _overrides(row: Row) -> dict:
    return {k: parse_override(v) for k, v in (s.split("=", 1) for s in row.sets)}


def test_the_table_is_large_enough():
    assert len(ROWS) >= 45
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", _params(ROWS))
def test_error_row_api(row: Row, tmp_path: Path):
    main = _write(row, tmp_path)
    with pytest.raises(FlowSpecError) as info:
        load(main, flow=row.flow, overrides=_overrides(row))
    err = info.value
    first = next(d for d in err.diagnostics if d.severity == "error")
    assert (first.code, err.line, err.column) == (row.code, row.line, row.col), str(err)
    assert err.code == row.code
    assert row.frag in first.message + "\n" + (first.help or ""), str(err)
    if row.note:
        assert any(row.note in n for n in first.notes), first.notes
    if row.line is not None:
        where = tmp_path / row.in_file
        assert Path(err.path).resolve() == where.resolve()
        assert f"{err.path}:{row.line}:{row.col}: error[{row.code}]" in str(err)
        # the source line and a caret under the reported column
        src = where.read_text().splitlines()[row.line - 1]
        rendered = str(err).splitlines()
        i = rendered.index(f" {row.line} | {src}")
        caret = rendered[i + 1]
        assert caret.index("^") == caret.index("|") + 2 + row.col - 1
    else:
        assert err.path is None and err.column is None


@pytest.mark.parametrize("row", _params([r for r in ROWS if r.cli]))
def test_error_row_cli(row: Row, tmp_path: Path, cli):
    main = _write(row, tmp_path)
    extra = [a for s in row.sets for a in ("--set", s)]
    if row.flow:
        extra += ["--flow", row.flow]
    rc, out, err = cli("check", main, *extra)
    assert rc == 1, err
    assert f"error[{row.code}]" in err
    assert "Traceback" not in out + err
    if row.line is not None:
        assert f":{row.line}:{row.col}: error[{row.code}]" in err

    rc, out, err = cli("check", main, "--format", "json", *extra)
    assert rc == 1
    assert "Traceback" not in out + err
    payload = json.loads(out)
    assert payload["ok"] is False
    errors = [d for d in payload["diagnostics"] if d["severity"] == "error"]
    assert {"code": row.code, "line": row.line, "column": row.col} == {
        k: errors[0][k] for k in ("code", "line", "column")
    }
    assert all(isinstance(d["message"], str) and d["message"] for d in payload["diagnostics"])


# Rows that legitimately produce more than one error diagnostic; everything else must not
# cascade (one mistake, one error).
CASCADE_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(
            r,
            id=r.id,
            marks=pytest.mark.xfail(strict=True, reason="BUG: " + CASCADE_BUGS[r.id])
            if r.id in CASCADE_BUGS
            else (),
        )
        for r in ROWS
    ],
)
def test_one_mistake_gives_one_error(row: Row, tmp_path: Path):
    main = _write(row, tmp_path)
    _, diags = analyze(main, row.flow, _overrides(row))
    errors = [d.code for d in diags if d.severity == "error"]
    assert len(errors) == 1, errors


def test_cli_process_never_shows_a_traceback(tmp_path: Path):
    """A real subprocess, for three rows of different stages (syntax, names, shapes)."""
    for row_id in ("missing_closing_brace", "misspelt_argument", "squeeze_odd_height"):
        row = next(r for r in ROWS if r.id == row_id)
        main = _write(row, tmp_path)
        p = subprocess.run(
            [sys.executable, "-m", "flowspec.cli", "check", str(main)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
            check=False,
        )
        assert p.returncode == 1
        assert f"error[{row.code}]" in p.stderr
        assert "Traceback" not in p.stdout + p.stderr


# ---- all errors at once, error object ------------------------------------------------------
THREE = t(
    "flow f {",
    IN4,
    "  squeez",
    "  coupling affine hiden=3",
    "  train {",
    "    tsk generation",
    "  }",
    "}",
)


def test_all_errors_of_a_file_are_reported_at_once(tmp_path: Path, cli):
    main = tmp_path / "three.flow"
    main.write_text(THREE)
    _, diags = analyze(main)
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [
        ("E104", 3, 3),
        ("E105", 4, 19),
        ("E105", 6, 5),
    ]
    with pytest.raises(FlowSpecError) as info:
        load(main)
    assert len(info.value.diagnostics) == 3
    assert str(info.value).rstrip().endswith("3 errors found")
    rc, _out, err = cli("check", main)
    assert rc == 1
    assert err.count("error[") == 3
    assert "3 errors" in err


def test_condition_errors_are_all_reported(tmp_path: Path):
    text = t("flow f {", IN4, "  injector", "  coupling affine on=lr", "  split on=hr", "}")
    _, diags = analyze("c.flow", text=text)
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [
        ("E301", 3, 3),
        ("E302", 4, 19),
        ("E302", 5, 9),
    ]


def test_errors_in_several_flows_of_a_file(tmp_path: Path, cli):
    main = tmp_path / "two.flow"
    main.write_text(t("flow f {", IN4, "  squeez", "}", "flow g {", IN4, "  invconv lu=3", "}"))
    rc, _out, err = cli("check", main)
    assert rc == 1
    assert "error[E104]" in err


def test_flowspec_error_object():
    text = t("flow f {", SQ8, "  squeeze", "  coupling affine hidden=0", "}")
    with pytest.raises(FlowSpecError) as info:
        loads(text, filename="specs/x.flow")
    err = info.value
    assert (err.path, err.line, err.column, err.code) == ("specs/x.flow", 4, 19, "E122")
    s = str(err)
    assert s.startswith("specs/x.flow:4:19: error[E122]: ")
    assert " 4 |   coupling affine hidden=0" in s
    assert "   |                   ^^^^^^^^" in s  # the caret spans `hidden=0`
    assert isinstance(err, Exception)
    data = json.loads(err.to_json())
    assert data[0]["code"] == "E122" and data[0]["line"] == 4 and data[0]["column"] == 19


def test_error_classes_by_code():
    from flowspec.errors import FlowNameError, FlowShapeError, FlowSyntaxError

    cases = [
        (t("flow f {"), FlowSyntaxError),
        (t("flow f {", IN4, "  squeez", "}"), FlowNameError),
        (t("flow f {", "  input 1x7x7", "  squeeze", "}"), FlowShapeError),
    ]
    for text, cls in cases:
        with pytest.raises(cls):
            loads(text)


def test_warnings_do_not_fail(cli, tmp_path: Path):
    main = tmp_path / "w.flow"
    main.write_text(
        t(
            "block unused() { actnorm }",
            "flow f {",
            IN4,
            "  condition lr: image 3x4x4",
            "  actnorm",
            "}",
        )
    )
    _specs, diags = analyze(main)
    assert [d.code for d in diags] == ["W001", "W002"]
    assert all(d.severity == "warning" for d in diags)
    rc, _out, err = cli("check", main)
    assert rc == 0
    assert "warning[W001]" in err and "warning[W002]" in err


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


def test_messages_use_an_before_int():
    for text in (
        t("flow f {", IN4, "  if not 3 { actnorm }", "}"),
        t("flow f {", IN4, "  actnorm", '  train { bits "x" }', "}"),
    ):
        _, diags = analyze("m.flow", text=text)
        assert " a int" not in diags[0].message, diags[0].message
