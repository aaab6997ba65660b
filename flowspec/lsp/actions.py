"""Quick fixes: apply a diagnostic's did-you-mean, add ``flip=true`` for W004.

Each fix is a list of edits ``(range, new text)`` in the document's protocol positions.
"""

from __future__ import annotations

import difflib
import re

from .. import ast, codes
from .document import Analysis, Document, Pos
from .hover import kind_of
from .navigate import node_at

__all__ = ["Fix", "fixes"]

Edit = tuple[tuple[Pos, Pos], str]
Fix = tuple[str, list[Edit]]  # (title, edits)

_DID_YOU_MEAN = re.compile(r"did you mean `([^`]+)`\?")
_NAME = re.compile(r"[A-Za-z_][\w\-]*")


def _replace_name(doc: Document, rng: tuple[Pos, Pos], wanted: str) -> Fix | None:
    """Replace the name in ``rng`` closest to ``wanted`` (the range may hold a statement)."""
    (sl, sc), (el, ec) = rng
    best: tuple[float, int, int, int] | None = None
    for n in range(sl, el + 1):
        text = doc.line(n)
        lo = doc.from_utf16(n, sc) if n == sl else 0
        hi = doc.from_utf16(n, ec) if n == el else len(text)
        for m in _NAME.finditer(text, lo, max(lo, hi)):
            if m.group(0) == wanted:
                continue
            score = difflib.SequenceMatcher(None, m.group(0), wanted).ratio()
            if best is None or score > best[0]:
                best = (score, n, m.start(), m.end())
    if best is None or best[0] < 0.5:
        return None
    _, n, a, b = best
    edit = (((n, doc.to_utf16(n, a)), (n, doc.to_utf16(n, b))), wanted)
    return f"change `{doc.line(n)[a:b]}` to `{wanted}`", [edit]


def _flip(doc: Document, analysis: Analysis, rng: tuple[Pos, Pos]) -> Fix | None:
    """Add ``flip=true`` to the coupling the W004 warning points at."""
    module = analysis.module
    if module is None:
        return None
    (line, char), _ = rng
    col = doc.from_utf16(line, char) + 1
    for n in node_at(module, line + 1, col):
        if isinstance(n, ast.Layer):
            key = kind_of(n)
            from ..kinds import KINDS

            if key is None or "flip" not in KINDS[key].Args.model_fields:
                return None
            if any(k.name == "flip" for k in n.kwargs):
                return None
            end = doc.span_range(n.span)[1]
            return f"add `flip=true` to `{key.replace('.', ' ')}`", [((end, end), " flip=true")]
    return None


def fixes(
    doc: Document, analysis: Analysis, code: str, rng: tuple[Pos, Pos], help_text: str | None
) -> list[Fix]:
    """The fixes for one diagnostic (its code, range and help line)."""
    out: list[Fix] = []
    m = _DID_YOU_MEAN.search(help_text or "")
    if m:
        # `lib.glow_step`: the name after the namespace is what was misspelt
        fix = _replace_name(doc, rng, m.group(1).rsplit(".", 1)[-1])
        if fix is not None:
            out.append(fix)
    if code == codes.W_UNMIXED:
        fix = _flip(doc, analysis, rng)
        if fix is not None:
            out.append(fix)
    return out
