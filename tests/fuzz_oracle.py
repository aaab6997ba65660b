"""The fuzzer's oracle: what the front end must do with every mutant (:func:`check_mutant`).

* ``flowspec.api.analyze`` returns (it never raises);
* every diagnostic is a :class:`~flowspec.errors.Diagnostic` whose span points into its
  file (``1 <= line <= lines + 1``, ``column >= 1``), and rendering the diagnostics (the
  text of a :class:`~flowspec.errors.FlowSpecError`, and its JSON) works
  (:func:`check_diagnostics`);
* ``flowspec check FILE [--format json]`` in-process (:func:`run_cli`, when asked) exits 1
  exactly when ``analyze`` finds errors (0 otherwise) and never raises;
* a mutant that parses can be formatted, the result parses, and formatting it again
  changes nothing (:func:`check_fmt`; a :class:`FmtFailure`: fmt.py is not the front end).

The CPU-time limit per mutant is the driver's (``slow`` of :func:`fuzzing.fuzz`).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

from flowspec.api import analyze
from flowspec.errors import Diagnostic, FlowSpecError, raise_if_errors
from flowspec.fmt import format_text
from flowspec.parse import parse


class Failure(Exception):
    """The front end misbehaved on a mutant."""


#: Errors about the request rather than the text, which have no place in the file: no such
#: flow / no flow at all (E103), several flows and none chosen (E113), unreadable file (E131).
UNPLACED = {"E103", "E113", "E131"}


class FmtFailure(Failure):
    """``fmt`` misbehaved on a mutant that parses (reported apart: fmt.py is not the parser)."""


def check_diagnostics(diags: list, file: str, text: str) -> None:
    """Every diagnostic is a Diagnostic with a span inside its file; rendering works."""
    sources: dict[str, str] = {file: text}
    for d in diags:
        if not isinstance(d, Diagnostic):
            raise Failure(f"not a Diagnostic: {d!r}")
        if d.severity not in ("error", "warning"):
            raise Failure(f"bad severity {d.severity!r}")
        if d.span is None:
            if d.severity == "error" and d.code not in UNPLACED:
                raise Failure(f"error without a position: [{d.code}] {d.message}")
            continue
        if d.span.file not in sources:
            try:
                sources[d.span.file] = Path(d.span.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError):
                raise Failure(
                    f"[{d.code}] points into a file that is not there: {d.span.file!r}"
                ) from None
        n = sources[d.span.file].count("\n") + 1
        if not (1 <= d.span.line <= n + 1) or d.span.column < 1:
            raise Failure(
                f"bad position {d.span.file}:{d.span.line}:{d.span.column} "
                f"({n} lines) for [{d.code}] {d.message}"
            )
        if (d.span.end_line, d.span.end_column) < (d.span.line, d.span.column):
            raise Failure(f"span ends before it starts: {d.span} for [{d.code}]")
        d.render()
        json.dumps(d.to_json())
    if any(d.severity == "error" for d in diags):
        try:
            raise_if_errors(diags)
        except FlowSpecError as e:
            str(e)
            e.to_json()
        else:
            raise Failure("raise_if_errors did not raise")


def check_mutant(
    text: str,
    file: str,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    fmt: bool = True,
    cli_dir: Path | None = None,
) -> str | None:
    """Run the oracle on one mutant; returns the code of its first error, None if it
    resolves.

    Raises :class:`Failure` or whatever exception the front end let escape. ``flow`` and
    ``overrides`` are passed to ``analyze`` (without ``flow``: every flow is checked).
    ``cli_dir``: also run ``flowspec check`` on the mutant saved there (under the seed's
    file name).
    """
    specs, diags = analyze(file, flow, overrides, text=text, all_flows=flow is None)
    check_diagnostics(diags, file, text)
    errors = [d for d in diags if d.severity == "error"]
    if not errors and flow is not None and len(specs) != 1:
        raise Failure(f"analyze(flow={flow!r}) gave {len(specs)} specs and no error")
    if fmt:
        check_fmt(text, file)
    if cli_dir is not None:
        run_cli(text, cli_dir / Path(file).name, json_format=len(text) % 2 == 1)
    return errors[0].code if errors else None


def check_fmt(text: str, file: str) -> None:
    """A text that parses formats, its formatting parses, and formatting is idempotent."""
    try:
        parse(text, file)
    except FlowSpecError as e:
        check_diagnostics(e.diagnostics, file, text)
        return
    try:
        once = format_text(text, file)
        twice = format_text(once, file)
    except FlowSpecError as e:
        raise FmtFailure(
            f"fmt wrote a text that does not parse: {e.diagnostics[0].message}"
        ) from None
    except Exception as e:
        raise FmtFailure(f"fmt raised {type(e).__name__}: {e}") from e
    if once != twice:
        raise FmtFailure("fmt is not idempotent")


def run_cli(text: str, path: Path, *, json_format: bool = False) -> int:
    """``flowspec check PATH [--format json]`` in-process on ``text`` saved at ``path``
    (internal errors re-raised); it must exit 1 exactly when ``analyze`` of that file finds
    errors, and its JSON must parse."""
    from flowspec.cli import main

    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    _, diags = analyze(path, all_flows=True)  # the file as the CLI reads it (newlines!)
    expect_error = any(d.severity == "error" for d in diags)
    old = os.environ.get("FLOWSPEC_DEBUG")
    os.environ["FLOWSPEC_DEBUG"] = "1"
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["check", str(path)] + (["--format", "json"] if json_format else []))
            except SystemExit as e:
                raise Failure(f"flowspec check exited via SystemExit({e.code!r})") from None
    finally:
        if old is None:
            os.environ.pop("FLOWSPEC_DEBUG", None)
        else:
            os.environ["FLOWSPEC_DEBUG"] = old
    if rc not in (0, 1):
        raise Failure(f"flowspec check returned {rc}: {err.getvalue()[-500:]}")
    if rc != int(expect_error):
        raise Failure(
            f"flowspec check returned {rc} but analyze found "
            f"{'errors' if expect_error else 'none'}"
        )
    if json_format:
        try:
            payload = json.loads(out.getvalue())
        except ValueError as e:
            raise Failure(f"flowspec check --format json printed no JSON: {e}") from None
        if payload.get("ok") != (rc == 0):
            raise Failure("flowspec check --format json: `ok` disagrees with the exit code")
    return rc
