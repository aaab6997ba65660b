"""The lark side of parsing (internal): the parser, and its tree made into :mod:`flowspec.ast`.

One cached LALR parser over ``grammar/flow.lark`` (:func:`parser`; its tables are cached
between runs), and the transformer (:class:`_ToAst`) of lark's parse tree into the syntax
tree, with positions kept on every node: string escapes, number literals within range
(:data:`MAX_INT`, E008), non-recursive so that deep trees do not hit the recursion limit.
:func:`flowspec.parse.parse` drives both.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree

from . import ast, codes
from .errors import Diagnostic, Span


@lru_cache(maxsize=1)
def _grammar_text() -> str:
    return (Path(__file__).parent / "grammar" / "flow.lark").read_text()


def _cache_file() -> str | bool:
    """Where lark keeps the LALR tables between runs (building them is most of the start-up
    time of ``flowspec check``): ``$FLOWSPEC_CACHE_DIR``, else ``$XDG_CACHE_HOME/flowspec``,
    else ``~/.cache/flowspec``; ``FLOWSPEC_CACHE_DIR=""`` turns the cache off. The file
    carries a hash of the grammar, lark's version and Python's, so a stale one is rebuilt;
    a folder that cannot be created means no cache."""
    import os

    folder = os.environ.get("FLOWSPEC_CACHE_DIR")
    if folder is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "flowspec")
    if not folder:
        return False
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return False
    return os.path.join(folder, "grammar.lark-cache")


@lru_cache(maxsize=1)
def parser() -> Lark:
    return Lark(
        _grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=False,
        cache=_cache_file(),
    )


def _span(file: str, meta) -> Span:
    return Span(
        file=file,
        line=meta.line,
        column=meta.column,
        end_line=meta.end_line,
        end_column=meta.end_column,
    )


#: Integers are at most this (torch's int64): a longer literal is an error, not a bignum.
MAX_INT = 2**63 - 1

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|.)", re.DOTALL)


def _unescape(tok: str) -> str:
    r"""The value of a STRING token: ``\n \t \r \" \\ \xHH \uHHHH`` are escapes, any
    other backslash stays as written (``"C:\data"``), non-ASCII text is kept as is."""

    def one(m: re.Match) -> str:
        e = m.group(1)
        if len(e) > 1:
            code = int(e[1:], 16)
            return m.group(0) if 0xD800 <= code <= 0xDFFF else chr(code)  # no lone surrogates
        return _ESCAPES.get(e, m.group(0))

    return _ESCAPE.sub(one, tok[1:-1])


class _ToAst:
    """Lark's parse tree to the syntax tree: each rule's node is handed, children first, to
    the method of the rule's name as ``(meta, children)``; a rule without one stays a lark
    ``Tree``, and tokens pass through. Iterative, so deep trees do not hit the recursion
    limit (lark's own ``Transformer_NonRecursive`` walks alike, at about twice the cost)."""

    def __init__(self, file: str):
        self.file = file
        self.errors: list[Diagnostic] = []
        self._logic_op = ""

    def transform(self, tree: Tree):
        handlers = {name: getattr(self, name) for name in _RULES}
        order: list = []  # every node, parents before their children, last child first
        todo = [tree]
        while todo:
            node = todo.pop()
            order.append(node)
            if isinstance(node, Tree):
                todo += node.children
        done: list = []  # results, first child first
        for node in reversed(order):
            if isinstance(node, Tree):
                n = len(node.children)
                children = done[-n:] if n else []
                if n:
                    del done[-n:]
                f = handlers.get(node.data)
                done.append(
                    Tree(node.data, children, node.meta) if f is None else f(node.meta, children)
                )
            else:
                done.append(node)
        return done[0]

    def _num(self, tok: Token) -> int | float:
        """An INT or FLOAT token's value; out-of-range literals are reported (E008)."""
        text = str(tok)
        if any(c in text for c in ".eE"):
            value = float(text)
            if math.isfinite(value):
                return value
            limit = "the largest float is about 1.8e308"
        else:
            value = int(text) if len(text) <= 19 else MAX_INT + 1
            if value <= MAX_INT:
                return value
            limit = f"integers are at most {MAX_INT} (2**63 - 1)"
        shown = text if len(text) <= 24 else text[:20] + "..."
        self.errors.append(
            Diagnostic(
                codes.E_NUMBER, f"the number {shown} is too large", self.tsp(tok), help=limit
            )
        )
        return 0

    def sp(self, meta) -> Span:
        return _span(self.file, meta)

    def tsp(self, tok: Token) -> Span:
        return Span(
            file=self.file,
            line=tok.line,
            column=tok.column,
            end_line=tok.end_line,
            end_column=tok.end_column,
        )

    # ---- expressions
    def int_lit(self, meta, c):
        return ast.Lit(self.sp(meta), self._num(c[0]), str(c[0]))

    def float_lit(self, meta, c):
        return ast.Lit(self.sp(meta), self._num(c[0]), str(c[0]))

    def string_lit(self, meta, c):
        return ast.Lit(self.sp(meta), _unescape(str(c[0])), str(c[0]))

    def true_lit(self, meta, c):
        return ast.Lit(self.sp(meta), True, "true")

    def false_lit(self, meta, c):
        return ast.Lit(self.sp(meta), False, "false")

    def ref(self, meta, c):
        return (None, str(c[0])) if len(c) == 1 else (str(c[0]), str(c[1]))

    def var(self, meta, c):
        if isinstance(c[0], Token):  # a bare NAME as a shape dim
            return ast.Var(self.tsp(c[0]), str(c[0]))
        ns, name = c[0]
        return ast.Var(self.sp(meta), name, ns)

    def call_expr(self, meta, c):
        ns, name = c[0]
        return ast.CallExpr(self.sp(meta), name, ns, c[1])

    def flow_ref(self, meta, c):
        ns, name = c[0]
        return ast.FlowRef(self.sp(meta), name, ns, c[1] if len(c) > 1 else [])

    def args(self, meta, c):
        return list(c)

    def kwarg(self, meta, c):
        return ast.KwArg(self.sp(meta), str(c[0]), c[1], self.tsp(c[0]))

    setting_kwarg = kwarg

    def list_value(self, meta, c):
        return ast.ListLit(self.sp(meta), list(c))

    def _chain(self, meta, c):
        node = c[0]
        i = 1
        while i < len(c):
            if isinstance(c[i], Token) and c[i].type in ("COMP_OP", "ADD_OP", "MUL_OP"):
                op, rhs = str(c[i]), c[i + 1]
                i += 2
            else:  # "and"/"or" are anonymous and filtered out
                op, rhs = self._logic_op, c[i]
                i += 1
            node = ast.BinOp(self.sp(meta), op, node, rhs)
        return node

    def or_expr(self, meta, c):
        self._logic_op = "or"
        return self._chain(meta, c)

    def and_expr(self, meta, c):
        self._logic_op = "and"
        return self._chain(meta, c)

    def comparison(self, meta, c):
        return self._chain(meta, c)

    sum = product = comparison

    def not_op(self, meta, c):
        return ast.UnOp(self.sp(meta), "not", c[0])

    def neg(self, meta, c):
        return ast.UnOp(self.sp(meta), "-", c[0])

    # ---- statements
    def word(self, meta, c):
        tok = c[0]
        sp = self.tsp(tok)
        if tok.type == "NAME":
            return ast.Var(sp, str(tok))
        if tok.type == "STRING":
            return ast.Lit(sp, _unescape(str(tok)), str(tok))
        return ast.Lit(sp, self._num(tok), str(tok))

    def layer(self, meta, c):
        name = c[0]
        words = [x for x in c[1:] if not isinstance(x, ast.KwArg)]
        kwargs = [x for x in c[1:] if isinstance(x, ast.KwArg)]
        return ast.Layer(self.sp(meta), str(name), words, kwargs, self.tsp(name))

    setting = layer  # a train-block line: a layer's form

    def call(self, meta, c):
        ns, name = c[0]
        return ast.Call(self.sp(meta), name, ns, c[1])

    def body(self, meta, c):
        return ast.Body(self.sp(meta), list(c))

    def range(self, meta, c):
        return (c[0], c[1])

    def for_stmt(self, meta, c):
        lo, hi = c[1]
        return ast.For(self.sp(meta), str(c[0]), lo, hi, c[2])

    def if_stmt(self, meta, c):
        return ast.If(self.sp(meta), c[0], c[1], c[2] if len(c) > 2 else None)

    def repeat(self, meta, c):
        return c[0]

    def group(self, meta, c):
        if len(c) == 3:
            return ast.Group(self.sp(meta), str(c[0]), c[1], c[2])
        return ast.Group(self.sp(meta), str(c[0]), None, c[1])

    def shape(self, meta, c):
        if len(c) == 1 and isinstance(c[0], Token) and c[0].type == "SHAPE":
            sp = self.tsp(c[0])
            return ast.Shape(
                sp,
                [
                    ast.Lit(
                        sp,
                        self._num(
                            Token(
                                "INT",
                                d,
                                line=sp.line,
                                column=sp.column,
                                end_line=sp.end_line,
                                end_column=sp.end_column,
                            )
                        ),
                        d,
                    )
                    for d in str(c[0]).split("x")
                ],
            )
        dims = []
        for d in c:
            if isinstance(d, Token):
                dims.append(ast.Lit(self.tsp(d), self._num(d), str(d)))
            else:
                dims.append(d)
        return ast.Shape(self.sp(meta), dims)

    def input_stmt(self, meta, c):
        return ast.Input(self.sp(meta), c[0])

    def prior_stmt(self, meta, c):
        words = [x for x in c[1:] if not isinstance(x, ast.KwArg)]
        kwargs = [x for x in c[1:] if isinstance(x, ast.KwArg)]
        return ast.Prior(self.sp(meta), str(c[0]), words, kwargs)

    def condition_stmt(self, meta, c):
        return ast.Condition(
            self.sp(meta), str(c[0]), str(c[1]), c[2], list(c[3:]), self.tsp(c[1])
        )

    def expect_stmt(self, meta, c):
        return ast.Expect(self.sp(meta), c[0])

    def train_stmt(self, meta, c):
        return ast.Train(self.sp(meta), list(c))

    def kind_ref(self, meta, c):
        return (str(c[0]), str(c[1]) if len(c) > 1 else None, self.sp(meta))

    def in_levels(self, meta, c):
        return c[0]

    def insert_stmt(self, meta, c):
        kind, variant, ksp = c[2]
        levels = c[3] if len(c) > 3 else None
        return ast.Insert(self.sp(meta), c[0], str(c[1]), kind, variant, levels, ksp)

    def let_stmt(self, meta, c):
        return ast.Let(self.sp(meta), str(c[0]), c[1])

    # ---- top level
    def param(self, meta, c):
        domain = c[-1] if len(c) > 1 and isinstance(c[-1], ast.Domain) else None
        rest = c[1:-1] if domain is not None else c[1:]
        return ast.Param(self.sp(meta), str(c[0]), rest[0] if rest else None, domain)

    def domain_range(self, meta, c):
        lo, hi = c[0]
        return ast.Domain(self.sp(meta), lo=lo, hi=hi)

    def domain_choices(self, meta, c):
        return ast.Domain(self.sp(meta), choices=list(c))

    def params(self, meta, c):
        return list(c)

    def import_stmt(self, meta, c):
        return ast.Import(self.sp(meta), _unescape(str(c[0])), str(c[1]), self.tsp(c[0]))

    def extends(self, meta, c):
        ns, name = c[0]
        return ast.Call(self.sp(meta), name, ns, c[1] if len(c) > 1 else [])

    def block_def(self, meta, c):
        params = c[1] if len(c) == 3 else []
        return ast.BlockDef(self.sp(meta), str(c[0]), params, c[-1])

    def flow_def(self, meta, c):
        params = next((x for x in c[1:-1] if isinstance(x, list)), [])
        ext = next((x for x in c[1:-1] if isinstance(x, ast.Call)), None)
        return ast.FlowDef(self.sp(meta), str(c[0]), params, ext, c[-1])

    def header(self, meta, c):
        return ("header", str(c[0]), c[0].line)

    def start(self, meta, c):
        version, line = None, 1
        items = []
        for x in c:
            if isinstance(x, tuple) and x[0] == "header":
                version, line = x[1], x[2]
            else:
                items.append(x)
        return version, items, line


#: The rules :class:`_ToAst` has a handler for: its public methods but the walk and the
#: span helpers.
_RULES = tuple(
    n
    for n in dir(_ToAst)
    if not n.startswith("_")
    and n not in ("transform", "sp", "tsp")
    and callable(getattr(_ToAst, n))
)
