"""Where the formatter breaks a long line: after the commas of its bracketed lists.

A statement is a *document*: text with the bracketed, comma-separated lists (parameters,
keyword arguments, choices) in which the grammar allows a newline. A document that fits in
:data:`LINE_LENGTH` columns and that the author wrote on one line is printed on one line.
Otherwise its lists are filled greedily, each continuation line aligned one column after the
list's opening bracket, as the shipped specs write a long flow header::

    flow marflow_mnist(L = 3 in 1..8, K = 4 in 1..256, hidden = 96, components = 32,
                       blocks = 10, features = 32, size = 32, channels = 1, dropout = 0.2) {

When that column leaves too little room (a list that starts far right), the list breaks
after its bracket instead and its lines are indented four columns past the statement's.
Whichever of the two has no line over the limit and the fewer lines wins, the aligned form
on a tie. Where the author broke a list between two items it stays broken there, and the
comments there (at the end of the line, or on lines of their own) stay there. The layout
depends only on the widths and on those breaks, which it reproduces, so formatting twice
gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass

LINE_LENGTH = 99  # the project's Python line length (ruff), so specs read like its code


@dataclass
class Group:
    """``open item, item, ... close``, breakable after each comma."""

    open: str
    items: list[Doc]
    close: str
    lines: list[tuple[int, int]]  # each item's first and last source line


Doc = list  # of str | Group


def flat(doc: Doc) -> str:
    return "".join(
        p if isinstance(p, str) else p.open + ", ".join(flat(i) for i in p.items) + p.close
        for p in doc
    )


def _breaks(g: Group) -> list[bool]:
    """Whether the author began each item on a later line than the one before ended."""
    return [j > 0 and g.lines[j][0] > g.lines[j - 1][1] for j in range(len(g.items))]


def _broken(doc: Doc) -> bool:
    return any(
        isinstance(p, Group) and (any(_breaks(p)) or any(_broken(i) for i in p.items)) for p in doc
    )


def _end_col(text: str, col: int) -> int:
    return len(text) - text.rindex("\n") - 1 if "\n" in text else col + len(text)


def _rest(doc: Doc) -> int:
    """Columns that must follow a list on its last line: the text up to the next list."""
    width = 0
    for p in doc:
        if isinstance(p, Group):
            return width + len(p.open)
        width += len(p)
    return width


def render(doc: Doc, col: int, indent: int, notes: dict[int, str]) -> tuple[str, set[int]]:
    """``doc`` laid out from column ``col`` of a statement indented ``indent`` columns.

    ``notes`` are trailing comments by source line; returns the text and the lines whose
    comment it placed (after an item the author ended a line with).
    """
    out, used = [], set()
    for k, part in enumerate(doc):
        text = part
        if isinstance(part, Group):
            text, placed = _group(part, col, indent, _rest(doc[k + 1 :]), notes)
            used |= placed
        out.append(text)
        col = _end_col(text, col)
    return "".join(out), used


def _group(
    g: Group, col: int, indent: int, rest: int, notes: dict[int, str]
) -> tuple[str, set[int]]:
    text = flat([g])
    if not g.items or (not _broken([g]) and col + len(text) + rest <= LINE_LENGTH):
        return text, set()
    aligned = col + len(g.open)
    modes = [False] + ([True] if indent + 4 < aligned else [])

    def score(hanging: bool) -> tuple[int, int]:
        lines = _fill(g, col, hanging, indent, rest, {})[0].split("\n")
        widths = [col + len(lines[0])] + [len(s) for s in lines[1:]]
        widths[-1] += rest
        return sum(w > LINE_LENGTH for w in widths), len(lines)

    best = min(modes, key=score)  # min keeps the first (aligned) on a tie
    return _fill(g, col, best, indent, rest, notes)


def _fill(
    g: Group, col: int, hanging: bool, indent: int, rest: int, notes: dict[int, str]
) -> tuple[str, set[int]]:
    cont = indent + 4 if hanging else col + len(g.open)
    parts, used = [g.open], set()
    if hanging:
        parts.append("\n" + " " * cont)
    cur = cont
    breaks = _breaks(g)
    last = len(g.items) - 1
    for j, item in enumerate(g.items):
        tail = g.close if j == last else ","
        need = len(flat(item)) + len(tail) + (rest if j == last else 0)
        if j > 0:
            if breaks[j] or cur + 1 + need > LINE_LENGTH:
                # comments on their own lines between the two items stay between them
                between = [n for n in sorted(notes) if g.lines[j - 1][1] < n < g.lines[j][0]]
                parts += [f"\n{' ' * cont}{notes[n].lstrip()}" for n in between]
                used.update(between)
                parts.append("\n" + " " * cont)
                cur = cont
            else:
                parts.append(" ")
                cur += 1
        if _broken(item) or cur + need > LINE_LENGTH:
            text, placed = render(item, cur, cont, notes)
            used |= placed
        else:
            text = flat(item)
        parts.append(text + tail)
        cur = _end_col(text + tail, cur)
        end = g.lines[j][1]
        if j < last and breaks[j + 1] and end in notes:
            parts.append(notes[end])
            used.add(end)
    return "".join(parts), used
