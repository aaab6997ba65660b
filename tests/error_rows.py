"""The table-driven error tests' rows and what each row must satisfy (``test_errors_*.py``).

Each row is one small broken .flow file (plus the files it imports). The same row is run
through the Python API (``flowspec.api.load``, :func:`check_api`) and through the CLI
(``flowspec check``, text and JSON, :func:`check_cli`), and must give exactly one error
(:func:`check_one_error`), so a diagnostic that regresses in any of them shows up. Each
topic file holds its own rows; ``test_errors_reporting.py`` checks the whole table.

Rows marked ``bug=...`` document a front-end bug found while writing this suite; they are
strict xfails, so fixing the bug turns them into failures that ask for the mark to go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from flowspec import parse_override
from flowspec.api import analyze, load
from flowspec.errors import FlowSpecError


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


def params(rows: list[Row]):
    return [
        pytest.param(
            r,
            id=r.id,
            marks=pytest.mark.xfail(strict=True, reason="BUG: " + r.bug) if r.bug else (),
        )
        for r in rows
    ]


def write(row: Row, tmp_path: Path) -> Path:
    main = tmp_path / "main.flow"
    main.write_text(row.text)
    for name, text in row.files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return main


def overrides(row: Row) -> dict:
    return {k: parse_override(v) for k, v in (s.split("=", 1) for s in row.sets)}


# Rows that legitimately produce more than one error diagnostic; everything else must not
# cascade (one mistake, one error).
CASCADE_BUGS: dict[str, str] = {}


def one_error_params(rows: list[Row]):
    """The rows of ``test_one_mistake_gives_one_error``: a strict xfail for each cascade bug."""
    return [
        pytest.param(
            r,
            id=r.id,
            marks=pytest.mark.xfail(strict=True, reason="BUG: " + CASCADE_BUGS[r.id])
            if r.id in CASCADE_BUGS
            else (),
        )
        for r in rows
    ]


def check_api(row: Row, tmp_path: Path) -> None:
    """``load`` raises the row's error first, at its position, with its text, caret and notes."""
    main = write(row, tmp_path)
    with pytest.raises(FlowSpecError) as info:
        load(main, flow=row.flow, overrides=overrides(row))
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


def check_cli(row: Row, tmp_path: Path, cli) -> None:
    """``flowspec check``, text and JSON: exit 1, the row's code at its position, no traceback."""
    main = write(row, tmp_path)
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


def check_one_error(row: Row, tmp_path: Path) -> None:
    """One mistake, one error: ``analyze`` finds exactly one error diagnostic."""
    main = write(row, tmp_path)
    _, diags = analyze(main, row.flow, overrides(row))
    errors = [d.code for d in diags if d.severity == "error"]
    assert len(errors) == 1, errors


def row_tests(rows: list[Row]):
    """The three tests every topic file runs over its ``rows``, for it to bind at module level:
    ``test_error_row_api, test_error_row_cli, test_one_mistake_gives_one_error =
    row_tests(ROWS)`` (pytest collects them under those names)."""

    @pytest.mark.parametrize("row", params(rows))
    def test_error_row_api(row: Row, tmp_path: Path):
        check_api(row, tmp_path)

    @pytest.mark.parametrize("row", params([r for r in rows if r.cli]))
    def test_error_row_cli(row: Row, tmp_path: Path, cli):
        check_cli(row, tmp_path, cli)

    @pytest.mark.parametrize("row", one_error_params(rows))
    def test_one_mistake_gives_one_error(row: Row, tmp_path: Path):
        check_one_error(row, tmp_path)

    return test_error_row_api, test_error_row_cli, test_one_mistake_gives_one_error
