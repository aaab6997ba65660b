"""One open .flow file: its text, positions in UTF-16 code units, and its analysis.

The protocol counts a line's characters in UTF-16 code units; the compiler's spans count
code points (1-based). :class:`Document` converts between them, and :func:`analyse` runs
the same front end as ``flowspec check`` (every flow of the file) and keeps what the
editor features read: the syntax tree of the last text that parsed, the loaded imports,
the checked flows and the diagnostics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

from .. import ast
from ..api import analyze
from ..errors import Collector, Diagnostic, FlowSpecError, Span
from ..ir import FlowSpec
from ..loader import Loader, ModuleEnv

__all__ = ["Analysis", "Document", "Pos", "analyse", "uri_to_path", "path_to_uri"]

#: (line, character): 0-based, the character in UTF-16 code units, as the protocol counts
Pos = tuple[int, int]


def uri_to_path(uri: str) -> str:
    """The file a ``file://`` URI names (other schemes: the URI itself, a name only)."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return uri
    return unquote(parsed.path)


def path_to_uri(path: str) -> str:
    from pathlib import Path

    return Path(os.path.abspath(path)).as_uri()


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class Document:
    """The text of an open file, with code-point <-> UTF-16 position conversion."""

    def __init__(self, uri: str, text: str, version: int | None = None):
        self.uri = uri
        self.path = uri_to_path(uri)
        self.text = text
        self.version = version
        self.lines = text.split("\n")  # as the lexer counts lines

    def line(self, n: int) -> str:
        """Line ``n`` (0-based) without its ``\\r``; "" past the end."""
        return self.lines[n].rstrip("\r") if 0 <= n < len(self.lines) else ""

    def to_utf16(self, line: int, column: int) -> int:
        """A 0-based code-point column of 0-based ``line`` in UTF-16 units."""
        return _utf16_len(self.line(line)[: max(0, column)])

    def from_utf16(self, line: int, character: int) -> int:
        """A UTF-16 ``character`` of ``line`` as a 0-based code-point column (one that falls
        inside a surrogate pair, or past the end, is clamped)."""
        text, units = self.line(line), 0
        for i, ch in enumerate(text):
            if units >= character:
                return i
            units += 2 if ord(ch) > 0xFFFF else 1
        return len(text)

    def span_range(self, span: Span) -> tuple[Pos, Pos]:
        """A compiler span (1-based, end exclusive, code points) as a protocol range."""
        last = max(0, len(self.lines) - 1)
        sl, el = min(max(span.line - 1, 0), last), min(max(span.end_line - 1, 0), last)
        start = (sl, self.to_utf16(sl, span.column - 1))
        end = (el, self.to_utf16(el, span.end_column - 1))
        return start, max(start, end)

    def prefix(self, pos: Pos) -> str:
        """The text of the position's line before it."""
        return self.line(pos[0])[: self.from_utf16(*pos)]

    def word_at(self, pos: Pos) -> tuple[str, int, int]:
        """The identifier (dots allowed: ``lib.glow_step``) under ``pos``: text, start, end
        code-point columns."""
        text, col = self.line(pos[0]), self.from_utf16(*pos)
        ok = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.")
        start = col
        while start > 0 and text[start - 1] in ok:
            start -= 1
        end = col
        while end < len(text) and text[end] in ok:
            end += 1
        return text[start:end], start, end


@dataclass
class Analysis:
    """What the front end found in one version of a document."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    specs: list[FlowSpec] = field(default_factory=list)
    env: ModuleEnv | None = None  # None: the text did not parse
    crashed: str | None = None  # an internal error of the compiler, reported, never raised

    @property
    def module(self) -> ast.Module | None:
        return self.env.module if self.env is not None else None

    def all_specs(self) -> list[FlowSpec]:
        """The checked flows and the flows of their conditions (``encoder=flow(...)``)."""
        out: list[FlowSpec] = []
        todo = list(self.specs)
        while todo:
            spec = todo.pop()
            out.append(spec)
            todo.extend(c.flow for c in spec.conditions if c.flow is not None)
        return out


def _load_env(doc: Document) -> ModuleEnv | None:
    """The file's syntax tree and its imports, loaded (errors are analyze's to report)."""
    try:
        return Loader(Collector()).load_text(doc.text, doc.path)
    except FlowSpecError:
        return None


def analyse(doc: Document) -> Analysis:
    """Run ``flowspec check``'s front end on the document's text; never raises."""
    try:
        specs, diags = analyze(doc.path, text=doc.text, all_flows=True)
        env = _load_env(doc)
    except RecursionError:
        return Analysis(crashed="the file nests too deeply to analyse")
    except Exception as e:  # noqa: BLE001 - a compiler bug must not stop the server
        return Analysis(crashed=f"internal error of the compiler: {type(e).__name__}: {e}")
    return Analysis(diagnostics=list(diags), specs=specs, env=env)


def node_contains(span: Span | None, line: int, column: int) -> bool:
    """Whether 1-based ``line``/``column`` lies in ``span`` (end inclusive, for a cursor
    just after a word)."""
    if span is None:
        return False
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)
