"""Canonical formatting of .flow files that keeps every comment.

Two-space indentation, one statement per line, ``key=value`` without spaces, spaces
around binary operators. Comments are re-attached by line: a comment on its own line
stays above the statement that follows it, a trailing comment stays at the end of its
statement's line. ``fmt(fmt(x)) == fmt(x)`` and formatting never changes the IR.
"""

from __future__ import annotations

from . import ast
from .parse import parse

_PREC = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
         "+": 5, "-": 5, "*": 6, "//": 6, "%": 6}


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
    if isinstance(e, ast.BinOp):
        p = _PREC[e.op]
        # left-associative: the right operand needs brackets at equal precedence
        s = f"{expr(e.left, p)} {e.op} {expr(e.right, p + 1)}"
        return f"({s})" if parent > p else s
    raise TypeError(e)


def _quote(text: str) -> str:
    """A string literal that parses back to ``text``."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\t", "\\t").replace("\r", "\\r"))
    return f'"{escaped}"'


def _shape(s: ast.Shape) -> str:
    if all(isinstance(d, ast.Lit) for d in s.dims):
        return "x".join(expr(d) for d in s.dims)
    return " x ".join(expr(d) if isinstance(d, (ast.Lit, ast.Var)) else f"({expr(d)})"
                      for d in s.dims)


def _kw(kws: list[ast.KwArg]) -> list[str]:
    return [f"{k.name}={expr(k.value)}" for k in kws]


def _layer(s: ast.Layer) -> str:
    return " ".join([s.name] + [expr(w) for w in s.words] + _kw(s.kwargs))


def _domain(d: ast.Domain | None) -> str:
    if d is None:
        return ""
    if d.choices is not None:
        return " in [" + ", ".join(expr(c) for c in d.choices) + "]"
    return f" in {expr(d.lo)}..{expr(d.hi)}"


def _params(ps: list[ast.Param]) -> str:
    if not ps:
        return ""
    return "(" + ", ".join((p.name if p.default is None else f"{p.name} = {expr(p.default)}")
                           + _domain(p.domain) for p in ps) + ")"


class _Printer:
    def __init__(self, comments: list[ast.Comment]):
        self.comments = sorted(comments, key=lambda c: (c.line, c.column))
        self.out: list[str] = []
        self.last_line = 0

    def _pending(self, before_line: int) -> list[ast.Comment]:
        taken = [c for c in self.comments if c.line < before_line]
        self.comments = [c for c in self.comments if c.line >= before_line]
        return taken

    def _trailing(self, line: int) -> str:
        taken = [c for c in self.comments if c.line == line]
        self.comments = [c for c in self.comments if c.line != line]
        return "".join(f"  {c.text}" for c in taken)

    def leading(self, line: int, indent: str) -> None:
        prev = self.last_line
        for c in self._pending(line):
            if prev and c.line > prev + 1 and self.out and self.out[-1] != "":
                self.out.append("")
            self.out.append(f"{indent}{c.text}")
            prev = c.line

    def line(self, text: str, indent: str, src_line: int, end_line: int | None = None) -> None:
        self.leading(src_line, indent)
        trail = "".join(self._trailing(n) for n in range(src_line, (end_line or src_line) + 1))
        self.out.append(f"{indent}{text}{trail}")
        self.last_line = end_line or src_line

    def body(self, head: str, body: ast.Body, indent: str, src_line: int) -> None:
        self.leading(src_line, indent)
        if not body.stmts and not any(c.line < body.span.end_line for c in self.comments):
            self.out.append(f"{indent}{head} {{ }}{self._trailing(src_line)}")
            self.last_line = body.span.end_line
            return
        self.out.append(f"{indent}{head} {{{self._trailing(src_line)}")
        self.last_line = src_line
        for s in body.stmts:
            self.stmt(s, indent + "  ")
        self.leading(body.span.end_line, indent + "  ")
        self.out.append(f"{indent}}}{self._trailing(body.span.end_line)}")
        self.last_line = body.span.end_line

    def stmt(self, s: ast.Stmt, indent: str) -> None:
        ln = s.span.line
        if isinstance(s, ast.Layer):
            self.line(_layer(s), indent, ln, s.span.end_line)
        elif isinstance(s, ast.Call):
            name = f"{s.ns}.{s.name}" if s.ns else s.name
            self.line(f"{name}({', '.join(_kw(s.args))})", indent, ln, s.span.end_line)
        elif isinstance(s, ast.Let):
            self.line(f"let {s.name} = {expr(s.value)}", indent, ln, s.span.end_line)
        elif isinstance(s, ast.Input):
            self.line(f"input {_shape(s.shape)}", indent, ln)
        elif isinstance(s, ast.Expect):
            self.line(f"expect latent {_shape(s.shape)}", indent, ln)
        elif isinstance(s, ast.Prior):
            parts = ["prior", s.name] + [expr(w) for w in s.words] + _kw(s.kwargs)
            self.line(" ".join(parts), indent, ln)
        elif isinstance(s, ast.Condition):
            parts = [f"condition {s.name}: {s.ctype} {_shape(s.shape)}"] + _kw(s.kwargs)
            self.line(" ".join(parts), indent, ln, s.span.end_line)
        elif isinstance(s, ast.Insert):
            kind = s.kind + (f" {s.variant}" if s.variant else "")
            text = f"insert {_layer(s.layer)} {s.place} {kind}"
            if s.levels:
                text += f" in level {expr(s.levels[0])}..{expr(s.levels[1])}"
            self.line(text, indent, ln)
        elif isinstance(s, ast.Train):
            fake = ast.Body(s.span, s.settings)
            self.body("train", fake, indent, ln)
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
        if isinstance(s.orelse, ast.If):
            self._if(s.orelse, indent, "if")
        else:
            self.body("else", s.orelse, indent, s.orelse.span.line)
        head, _, head_comment = self.out[mark].lstrip().partition("  #")
        comments = "".join(f"  #{c}" for c in (comment, head_comment) if c)
        self.out[mark] = f"{code} else {head}{comments}" if isinstance(s.orelse, ast.If) \
            else f"{code} {head}{comments}"

    def item(self, item, first: bool) -> None:
        if not first and self.out and self.out[-1] != "":
            if isinstance(item, (ast.BlockDef, ast.FlowDef)) or not isinstance(
                    self._last_item, type(item)):
                self.out.append("")
        self._last_item = item
        ln = item.span.line
        if isinstance(item, ast.Import):
            self.line(f"import {_quote(item.path)} as {item.alias}", "", ln)
        elif isinstance(item, ast.Let):
            self.line(f"let {item.name} = {expr(item.value)}", "", ln, item.span.end_line)
        elif isinstance(item, ast.BlockDef):
            self.body(f"block {item.name}{_params(item.params)}", item.body, "", ln)
        elif isinstance(item, ast.FlowDef):
            head = f"flow {item.name}{_params(item.params)}"
            if item.extends is not None:
                e = item.extends
                name = f"{e.ns}.{e.name}" if e.ns else e.name
                head += f" extends {name}" + (f"({', '.join(_kw(e.args))})" if e.args else "")
            self.body(head, item.body, "", ln)


def format_module(module: ast.Module) -> str:
    p = _Printer(module.comments)
    p._last_item = None
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
