"""Canonical formatting of .flow files that keeps every comment.

The style is the one the shipped specs and the docs are written in: two-space indentation,
one statement per line, ``key=value`` without spaces, ``name = default`` in parameter lists,
spaces around binary operators and shapes written ``1 x 32 x 32``. Blank lines the author
left between statements and comment blocks are kept (several become one), and top-level
definitions are always separated by one. A line longer than :data:`LINE_LENGTH` is broken
after the commas of its bracketed lists (see :mod:`flowspec.fmt_layout`), and a list the
author broke over lines stays broken where it was.

Comments are re-attached by line: a comment on its own line stays above the statement that
follows it, a trailing comment stays at the end of its line. ``fmt(fmt(x)) == fmt(x)`` and
formatting never changes the IR.
"""

from __future__ import annotations

from . import ast
from .fmt_layout import Doc, Group, render
from .parse import parse

_PREC = {
    "or": 1,
    "and": 2,
    "==": 4,
    "!=": 4,
    "<": 4,
    "<=": 4,
    ">": 4,
    ">=": 4,
    "+": 5,
    "-": 5,
    "*": 6,
    "//": 6,
    "%": 6,
}


def expr(e: ast.Expr, parent: int = 0) -> str:
    if isinstance(e, ast.Lit):
        return e.text
    if isinstance(e, ast.Var):
        return f"{e.ns}.{e.name}" if e.ns else e.name
    if isinstance(e, ast.CallExpr):
        name = f"{e.ns}.{e.name}" if e.ns else e.name
        return f"{name}({', '.join(f'{a.name}={expr(a.value)}' for a in e.args)})"
    if isinstance(e, ast.FlowRef):
        name = f"{e.ns}.{e.name}" if e.ns else e.name
        args = f"({', '.join(f'{a.name}={expr(a.value)}' for a in e.args)})" if e.args else ""
        return f"flow({name}{args})"
    if isinstance(e, ast.UnOp):
        inner = expr(e.operand, 7 if e.op == "-" else 3)
        s = f"-{inner}" if e.op == "-" else f"not {inner}"
        return f"({s})" if parent > (7 if e.op == "-" else 3) else s
    if isinstance(e, ast.ListLit):
        return "[" + ", ".join(expr(item) for item in e.items) + "]"
    if isinstance(e, ast.BinOp):
        p = _PREC[e.op]
        # left-associative: the right operand needs brackets at equal precedence
        s = f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
        return f"({s})" if parent > p else s
    raise TypeError(e)


def _quote(text: str) -> str:
    """A string literal that parses back to ``text``."""
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\t", "\\t")
        .replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _shape(s: ast.Shape) -> str:
    return " x ".join(
        expr(d) if isinstance(d, (ast.Lit, ast.Var)) else f"({expr(d)})" for d in s.dims
    )


# ---- documents: text with the bracketed lists a long line may break in ---------------------
def _lines(nodes: list) -> list[tuple[int, int]]:
    return [(n.span.line, n.span.end_line) for n in nodes]


def _args(open_: str, kws: list[ast.KwArg], close: str = ")") -> Group:
    return Group(open_, [_kw(k) for k in kws], close, _lines(kws))


def _value(e: ast.Expr) -> Doc:
    """A keyword's value: a call's or a flow reference's arguments may break."""
    if isinstance(e, ast.CallExpr) and e.args:
        return [_args(f"{e.ns}.{e.name}(" if e.ns else f"{e.name}(", e.args)]
    if isinstance(e, ast.FlowRef) and e.args:
        name = f"{e.ns}.{e.name}" if e.ns else e.name
        return [_args(f"flow({name}(", e.args, "))")]
    return [expr(e)]


def _kw(k: ast.KwArg) -> Doc:
    return [f"{k.name}=", *_value(k.value)]


def _spaced(pieces: list[Doc]) -> Doc:
    out: Doc = []
    for i, piece in enumerate(pieces):
        out += ([" "] if i else []) + piece
    return out


def _words(head: list[str], words: list[ast.Expr], kws: list[ast.KwArg]) -> Doc:
    return _spaced([[h] for h in head] + [[expr(w)] for w in words] + [_kw(k) for k in kws])


def _param(p: ast.Param) -> Doc:
    out: Doc = [p.name if p.default is None else f"{p.name} = {expr(p.default)}"]
    d = p.domain
    if d is not None and d.choices is not None:
        out += [" in ", Group("[", [[expr(c)] for c in d.choices], "]", _lines(d.choices))]
    elif d is not None:
        out.append(f" in {expr(d.lo)}..{expr(d.hi)}")
    return out


def _params(ps: list[ast.Param]) -> Doc:
    return [Group("(", [_param(p) for p in ps], ")", _lines(ps))] if ps else []


def _ref(ns: str | None, name: str) -> str:
    return f"{ns}.{name}" if ns else name


class _Printer:
    def __init__(self, comments: list[ast.Comment]):
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.out: list[str] = []
        self.last_line = 0
        self.opened = False  # the last line printed opens a body: no blank line after it
        self.last_item: object = None

    def _pending(self, before_line: int) -> list[ast.Comment]:
        taken = [c for c in self.comments if c.line < before_line]
        self.comments = [c for c in self.comments if c.line >= before_line]
        return taken

    def _notes(self, first: int, last: int) -> dict[int, str]:
        """The trailing comments of source lines ``first..last``, taken from the queue."""
        taken = [c for c in self.comments if first <= c.line <= last]
        self.comments = [c for c in self.comments if not first <= c.line <= last]
        notes: dict[int, str] = {}
        for c in taken:
            notes[c.line] = notes.get(c.line, "") + f"  {c.text}"
        return notes

    def _blank_if_gap(self, line: int) -> None:
        """Keep one blank line where the author left at least one."""
        if (
            self.last_line
            and line > self.last_line + 1
            and not self.opened
            and self.out
            and self.out[-1] != ""
        ):
            self.out.append("")

    def leading(self, line: int, indent: str) -> None:
        for c in self._pending(line):
            self._blank_if_gap(c.line)
            self.out.append(f"{indent}{c.text}")
            self.last_line = c.line
            self.opened = False
        self._blank_if_gap(line)

    def _emit(self, doc: Doc, indent: str, first: int, last: int) -> None:
        notes = self._notes(first, last)
        text, used = render(doc, len(indent), len(indent), notes)
        rest = [n for n in sorted(notes) if n not in used]
        # the last line's comment trails the statement; others (one comment a line) go above
        self.out += [f"{indent}{notes[n].lstrip()}" for n in rest[:-1]]
        self.out.append(f"{indent}{text}{notes[rest[-1]] if rest else ''}")

    def line(
        self, doc: Doc | str, indent: str, src_line: int, end_line: int | None = None
    ) -> None:
        self.leading(src_line, indent)
        self._emit([doc] if isinstance(doc, str) else doc, indent, src_line, end_line or src_line)
        self.last_line = end_line or src_line
        self.opened = False

    def body(self, head: Doc | str, body: ast.Body, indent: str, src_line: int) -> None:
        head = [head] if isinstance(head, str) else head
        self.leading(src_line, indent)
        if not body.stmts and not any(c.line < body.span.end_line for c in self.comments):
            self._emit([*head, " { }"], indent, src_line, body.span.end_line)
            self.last_line = body.span.end_line
            self.opened = False
            return
        self._emit([*head, " {"], indent, src_line, body.span.line)
        self.last_line = body.span.line
        self.opened = True
        for s in body.stmts:
            self.stmt(s, indent + "  ")
        self.leading(body.span.end_line, indent + "  ")
        if self.out[-1] == "":
            self.out.pop()  # no blank line before a closing brace
        self.out.append(f"{indent}}}{''.join(self._notes(*[body.span.end_line] * 2).values())}")
        self.last_line = body.span.end_line
        self.opened = False

    def stmt(self, s: ast.Stmt, indent: str) -> None:
        ln, end = s.span.line, s.span.end_line
        if isinstance(s, ast.Layer):
            self.line(_words([s.name], s.words, s.kwargs), indent, ln, end)
        elif isinstance(s, ast.Call):
            self.line([_args(f"{_ref(s.ns, s.name)}(", s.args)], indent, ln, end)
        elif isinstance(s, ast.Let):
            self.line([f"let {s.name} = ", *_value(s.value)], indent, ln, end)
        elif isinstance(s, ast.Input):
            self.line(f"input {_shape(s.shape)}", indent, ln)
        elif isinstance(s, ast.Expect):
            self.line(f"expect latent {_shape(s.shape)}", indent, ln)
        elif isinstance(s, ast.Prior):
            self.line(_words(["prior", s.name], s.words, s.kwargs), indent, ln, end)
        elif isinstance(s, ast.Condition):
            head = f"condition {s.name}: {s.ctype} {_shape(s.shape)}"
            self.line(_words([head], [], s.kwargs), indent, ln, end)
        elif isinstance(s, ast.Insert):
            kind = s.kind + (f" {s.variant}" if s.variant else "")
            tail = f"{s.place} {kind}"
            if s.levels:
                tail += f" in level {expr(s.levels[0])}..{expr(s.levels[1])}"
            layer = _words([s.layer.name], s.layer.words, s.layer.kwargs)
            self.line(_spaced([["insert"], layer, [tail]]), indent, ln, end)
        elif isinstance(s, ast.Train):
            self.body("train", ast.Body(s.span, s.settings), indent, ln)
        elif isinstance(s, ast.Group):
            head = s.kind + (f" x {expr(s.repeat)}" if s.repeat is not None else "")
            self.body(head, s.body, indent, ln)
        elif isinstance(s, ast.For):
            self.body(f"for {s.var} in {expr(s.lo)}..{expr(s.hi)}", s.body, indent, ln)
        elif isinstance(s, ast.If):
            self._if(s, indent, "if")
        else:
            raise TypeError(s)

    def _if(self, s: ast.If, indent: str, word: str) -> None:
        self.body(f"{word} {expr(s.cond)}", s.then, indent, s.span.line)
        if s.orelse is None:
            return
        closing = self.out.pop()  # `}` joins the else on one line; its comment moves last
        code, _, comment = closing.partition("  #")
        mark = len(self.out)
        self.opened = True
        if isinstance(s.orelse, ast.If):
            self._if(s.orelse, indent, "if")
        else:
            self.body("else", s.orelse, indent, s.orelse.span.line)
        head, _, head_comment = self.out[mark].lstrip().partition("  #")
        comments = "".join(f"  #{c}" for c in (comment, head_comment) if c)
        self.out[mark] = (
            f"{code} else {head}{comments}"
            if isinstance(s.orelse, ast.If)
            else f"{code} {head}{comments}"
        )

    def item(self, item: ast.Import | ast.Let | ast.BlockDef | ast.FlowDef, first: bool) -> None:
        if not first and self.out and self.out[-1] != "":
            if isinstance(item, (ast.BlockDef, ast.FlowDef)) or not isinstance(
                self.last_item, type(item)
            ):
                self.out.append("")
        self.last_item = item
        ln = item.span.line
        if isinstance(item, ast.Import):
            self.line(f"import {_quote(item.path)} as {item.alias}", "", ln)
        elif isinstance(item, ast.Let):
            self.line([f"let {item.name} = ", *_value(item.value)], "", ln, item.span.end_line)
        elif isinstance(item, ast.BlockDef):
            # `()` even without parameters: a block is used as `name()`
            params = _params(item.params) or ["()"]
            self.body([f"block {item.name}", *params], item.body, "", ln)
        elif isinstance(item, ast.FlowDef):
            head: Doc = [f"flow {item.name}", *_params(item.params)]
            if item.extends is not None:
                e = item.extends
                head.append(f" extends {_ref(e.ns, e.name)}")
                if e.args:
                    head.append(_args("(", e.args))
            self.body(head, item.body, "", ln)


def format_module(module: ast.Module) -> str:
    p = _Printer(module.comments)
    if module.version is not None:
        p.line(f"flowspec {module.version}", "", module.version_line)
    for i, item in enumerate(module.items):
        p.item(item, i == 0 and module.version is None)
    p.leading(10**9, "")
    text = "\n".join(p.out).strip("\n")
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def format_text(text: str, file: str = "<string>") -> str:
    return format_module(parse(text, file))
