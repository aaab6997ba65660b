"""Diagnostics and the one exception root, with spans, error codes and exit codes.

Every problem a user can cause in a spec is reported as a :class:`Diagnostic` that points
at the source (``file:line:col``), shows the line with a caret, and says what to do. All
diagnostics of a file are gathered and raised together as one :class:`FlowSpecError`.

Every exception flowspec and its runtime raise on purpose derives from :class:`FlowError`
and carries the command line's exit status as ``exit_code``; :func:`exit_code` maps any
exception to that status, for both the compiler's and the runtime's commands. The codes of
the diagnostics are named in :mod:`flowspec.codes`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from pydantic import BaseModel

Severity = Literal["error", "warning"]

# Source texts by file name, so a diagnostic can show its line long after parsing.
_SOURCES: dict[str, str] = {}


def remember_source(file: str, text: str) -> None:
    _SOURCES[file] = text


class Span(BaseModel):
    """A region of a .flow file; lines and columns are 1-based, end is exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def short(self) -> str:
        return f"{self.line}:{self.column}"


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None
    severity: Severity = "error"
    notes: list[str] = field(default_factory=list)
    help: str | None = None

    def render(self) -> str:
        where = f"{self.span.file}:{self.span.line}:{self.span.column}: " if self.span else ""
        out = [f"{where}{self.severity}[{self.code}]: {self.message}"]
        if self.span is not None:
            lines = _SOURCES.get(self.span.file, "").split("\n")  # as the lexer counts
            if 0 < self.span.line <= len(lines):
                src = lines[self.span.line - 1].rstrip("\r")
                num = str(self.span.line)
                pad = " " * len(num)
                if self.span.end_line == self.span.line:
                    width = max(1, self.span.end_column - self.span.column)
                else:
                    width = max(1, len(src) - self.span.column + 1)
                out.append(f" {pad} |")
                out.append(f" {num} | {src}")
                out.append(f" {pad} | {' ' * (self.span.column - 1)}{'^' * width}")
        out.extend(f"   note: {n}" for n in self.notes)
        if self.help:
            out.append(f"   help: {self.help}")
        return "\n".join(out)

    def to_json(self) -> dict:
        return {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.span.file if self.span else None,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "end_line": self.span.end_line if self.span else None,
            "end_column": self.span.end_column if self.span else None,
            "notes": self.notes,
            "help": self.help,
        }


#: exit statuses of the `flowspec` command
EXIT_OK = 0
EXIT_ERROR = 1  # the spec, the data or a run has an error the user can fix
EXIT_USAGE = 2  # a bad command line, or a file that cannot be opened
EXIT_INTERNAL = 3  # a bug in flowspec (or a plugin): an exception nobody meant to raise
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away, as shells report SIGPIPE


class FlowError(Exception):
    """The root of every exception flowspec raises on purpose.

    ``except flowspec.FlowError`` catches them all; :class:`FlowSpecError` is the one for an
    invalid spec, others say which plugin, option, layer or run failed. ``exit_code`` is the
    status the command line exits with when one reaches it.
    """

    exit_code: ClassVar[int] = EXIT_ERROR


def exit_code(exc: BaseException) -> int:
    """The exit status of the `flowspec` command that stopped with ``exc``."""
    if isinstance(exc, FlowError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, BrokenPipeError):
        return EXIT_BROKEN_PIPE
    if isinstance(exc, UnicodeDecodeError):  # a spec that is not text
        return EXIT_ERROR
    if isinstance(exc, OSError):  # no such file, or one that cannot be read or written
        return EXIT_USAGE
    return EXIT_INTERNAL


class FlowSpecError(FlowError):
    """Raised for an invalid spec; carries every diagnostic found in the file.

    ``path``, ``line`` and ``column`` are those of the first error; ``str()`` is the
    full compiler message, ready to print.
    """

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        first = diagnostics[0]
        self.code = first.code
        self.path = first.span.file if first.span else None
        self.line = first.span.line if first.span else None
        self.column = first.span.column if first.span else None
        super().__init__(self.render())

    def render(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        body = "\n\n".join(d.render() for d in self.diagnostics)
        n = len(errors)
        return f"{body}\n\n{n} error{'s' if n != 1 else ''} found" if n > 1 else body

    def to_json(self) -> str:
        return json.dumps([d.to_json() for d in self.diagnostics], indent=2)


class FlowSyntaxError(FlowSpecError):
    """The text is not a .flow program (E0xx)."""


class FlowNameError(FlowSpecError):
    """Unknown or duplicate names, bad overrides, imports (E1xx)."""


class FlowShapeError(FlowSpecError):
    """Shapes, invertibility, conditions, latents, insert rules (E2xx-E5xx)."""


def error_class(code: str) -> type[FlowSpecError]:
    if code.startswith("E0"):
        return FlowSyntaxError
    if code.startswith("E1"):
        return FlowNameError
    return FlowShapeError


def raise_if_errors(diags: list[Diagnostic]) -> None:
    errors = [d for d in diags if d.severity == "error"]
    if errors:
        # warnings ride along so the user sees everything at once
        ordered = errors + [d for d in diags if d.severity == "warning"]
        raise error_class(errors[0].code)(ordered)


class Collector:
    """Accumulates diagnostics so that all errors of a file are reported at once."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        # one diagnostic per cause: a statement expanded N times (a block called in a loop)
        # reports its error once, with a note counting the instances
        self._seen: dict[tuple, tuple[Diagnostic, int]] = {}

    def _add(self, d: Diagnostic) -> Diagnostic:
        span = d.span
        key = (
            d.severity,
            d.code,
            d.message,
            d.help,
            None if span is None else (span.file, span.line, span.column),
        )
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = (d, 1)
            self.items.append(d)
            return d
        first, count = seen
        count += 1
        self._seen[key] = (first, count)
        note = f"the same {d.severity} in {count} instances of this statement (shown once)"
        if count > 2:
            first.notes[-1] = note
        else:
            first.notes.append(note)
        return first

    def error(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        notes: list[str] | None = None,
        help: str | None = None,
    ) -> Diagnostic:
        return self._add(Diagnostic(code, message, span, "error", list(notes or []), help))

    def warning(
        self,
        code: str,
        message: str,
        span: Span | None,
        *,
        notes: list[str] | None = None,
        help: str | None = None,
    ) -> Diagnostic:
        return self._add(Diagnostic(code, message, span, "warning", list(notes or []), help))

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)


class Abort(FlowError):
    """Internal: stop resolving a construct after its error was recorded (one that escapes
    is a bug)."""

    exit_code = EXIT_INTERNAL


def did_you_mean(name: str, options) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"did you mean `{match[0]}`?" if match else None
