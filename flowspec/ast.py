"""The syntax tree of a .flow file, as produced by :mod:`flowspec.parse`.

Plain dataclasses with a span on every node: the resolver reads them, the formatter
prints them back. Nothing here knows about layer kinds. Every class is a ``@_data``: a
dataclass whose ``__eq__`` and ``__repr__`` are :class:`_Data`'s, written once, not
generated per class (a dataclass compiles each method it generates, and thirty classes'
worth of them was a quarter of the time ``flowspec check`` spends importing flowspec).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .errors import Span


class _Data:
    """Field-wise equality and a constructor-like repr, as a dataclass generates them."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in self.__dataclass_fields__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__dataclass_fields__)
        return f"{self.__class__.__qualname__}({fields})"

    __hash__ = None  # mutable, compared by value: unhashable, as a dataclass with eq


def _data(cls):
    return dataclass(cls, repr=False, eq=False)


@_data
class Node(_Data):
    span: Span


# ---- expressions -------------------------------------------------------------------------
@_data
class Lit(Node):
    value: int | float | bool | str
    text: str  # as written, so fmt keeps `8e-4` as `8e-4`


@_data
class ListLit(Node):
    """``[0.5, 0.75]``: a list value (only a train-block option takes one)."""

    items: list[Expr]


@_data
class Var(Node):
    name: str
    ns: str | None = None  # `lib.hidden`


@_data
class KwArg(Node):
    name: str
    value: Expr
    name_span: Span | None = None


@_data
class CallExpr(Node):
    name: str
    ns: str | None
    args: list[KwArg]


@_data
class FlowRef(Node):
    """``flow(NAME(k=v, ...))``: another flow of the file, as a condition's encoder."""

    name: str
    ns: str | None
    args: list[KwArg]


@_data
class BinOp(Node):
    op: str
    left: Expr
    right: Expr


@_data
class UnOp(Node):
    op: str  # "-" or "not"
    operand: Expr


Expr = Lit | Var | CallExpr | FlowRef | BinOp | UnOp | ListLit


@_data
class Shape(Node):
    dims: list[Expr]


@_data
class Domain(Node):
    """The values a parameter may take: ``in A..B`` (``lo``, ``hi``) or ``in [a, b, ...]``."""

    lo: Expr | None = None
    hi: Expr | None = None
    choices: list[Expr] | None = None


@_data
class Param(Node):
    name: str
    default: Expr | None
    domain: Domain | None = None


# ---- statements ---------------------------------------------------------------------------
@_data
class Layer(Node):
    """`NAME word* key=value*`: a layer in a body, a setting in `train { }`."""

    name: str
    words: list[Expr]
    kwargs: list[KwArg]
    name_span: Span | None = None


@_data
class Call(Node):
    name: str
    ns: str | None
    args: list[KwArg]


@_data
class Body(Node):
    stmts: list[Stmt]


@_data
class For(Node):
    var: str
    lo: Expr
    hi: Expr
    body: Body


@_data
class If(Node):
    cond: Expr
    then: Body
    orelse: Body | If | None


@_data
class Group(Node):
    kind: str  # "level" | "step"
    repeat: Expr | None
    body: Body


@_data
class Input(Node):
    shape: Shape


@_data
class Prior(Node):
    name: str
    words: list[Expr]
    kwargs: list[KwArg]


@_data
class Condition(Node):
    name: str
    ctype: str
    shape: Shape
    kwargs: list[KwArg]
    ctype_span: Span | None = None


@_data
class Expect(Node):
    shape: Shape


@_data
class Train(Node):
    settings: list[Layer]


@_data
class Insert(Node):
    layer: Layer
    place: str  # "before" | "after"
    kind: str
    variant: str | None
    levels: tuple[Expr, Expr] | None
    kind_span: Span | None = None


@_data
class Let(Node):
    name: str
    value: Expr


Stmt = Layer | Call | For | If | Group | Input | Prior | Condition | Expect | Train | Insert | Let


# ---- top level ----------------------------------------------------------------------------
@_data
class Import(Node):
    path: str
    alias: str
    path_span: Span | None = None


@_data
class BlockDef(Node):
    name: str
    params: list[Param]
    body: Body


@_data
class FlowDef(Node):
    name: str
    params: list[Param]
    extends: Call | None
    body: Body


@_data
class Comment(_Data):
    line: int
    column: int
    text: str


@_data
class Module(_Data):
    file: str
    version: str | None
    items: list[Import | Let | BlockDef | FlowDef]
    comments: list[Comment] = field(default_factory=list)
    version_line: int = 1


def walk(node: Any) -> Iterator[Any]:
    """Every syntax-tree node under ``node`` (a node, a module's items or any list of them),
    itself included, depth first in the order of the text; iterative, so any nesting the
    parser accepts is walked."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list | tuple):
            stack.extend(reversed(n))
        # (not hasattr(n, "__dataclass_fields__"): on a span, a pydantic model, that raises
        # and catches an AttributeError)
        elif isinstance(n, _Data):
            yield n
            stack.extend(reversed([getattr(n, f) for f in n.__dataclass_fields__]))
