"""How spec errors are reported: every error of a file at once, the error object and its
classes, warnings, a real CLI process, and the error table as a whole (``test_errors_*.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import test_errors_names
import test_errors_structure
import test_errors_syntax
import test_errors_values
from error_rows import IN4, SQ8, write
from flowtext import t

from flowspec.api import analyze, load, loads
from flowspec.errors import FlowSpecError

ROOT = Path(__file__).resolve().parents[1]

#: the whole error table: every topic's rows
ROWS = [
    *test_errors_syntax.ROWS,
    *test_errors_names.ROWS,
    *test_errors_values.ROWS,
    *test_errors_structure.ROWS,
]


def test_the_table_is_large_enough():
    assert len(ROWS) >= 45
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_cli_process_never_shows_a_traceback(tmp_path: Path):
    """A real subprocess, for three rows of different stages (syntax, names, shapes)."""
    for row_id in ("missing_closing_brace", "misspelt_argument", "squeeze_odd_height"):
        row = next(r for r in ROWS if r.id == row_id)
        main = write(row, tmp_path)
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


def test_messages_use_an_before_int():
    for text in (
        t("flow f {", IN4, "  if not 3 { actnorm }", "}"),
        t("flow f {", IN4, "  actnorm", '  train { bits "x" }', "}"),
    ):
        _, diags = analyze("m.flow", text=text)
        assert " a int" not in diags[0].message, diags[0].message
