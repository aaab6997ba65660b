"""The syntax tree of a .flow file, as produced by :mod:`flowspec.parse`.

Plain dataclasses with a span on every node: the resolver reads them, the formatter
prints them back. Nothing here knows about layer kinds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Span


@dataclass
class Node:
    span: Span


# ---- expressions -------------------------------------------------------------------------
@dataclass
class Lit(Node):
    value: int | float | bool | str
    text: str  # as written, so fmt keeps `8e-4` as `8e-4`


@dataclass
class ListLit(Node):
    """``[0.5, 0.75]``: a list value (only a train-block option takes one)."""

    items: list[Expr]


@dataclass
class Var(Node):
    name: str
    ns: str | None = None  # `lib.hidden`


@dataclass
class KwArg(Node):
    name: str
    value: Expr
    name_span: Span | None = None


@dataclass
class CallExpr(Node):
    name: str
    ns: str | None
    args: list[KwArg]


@dataclass
class FlowRef(Node):
    """``flow(NAME(k=v, ...))``: another flow of the file, as a condition's encoder."""

    name: str
    ns: str | None
    args: list[KwArg]


@dataclass
class BinOp(Node):
    op: str
    left: Expr
    right: Expr


@dataclass
class UnOp(Node):
    op: str  # "-" or "not"
    operand: Expr


Expr = Lit | Var | CallExpr | FlowRef | BinOp | UnOp | ListLit


@dataclass
class Shape(Node):
    dims: list[Expr]


@dataclass
class Domain(Node):
    """The values a parameter may take: ``in A..B`` (``lo``, ``hi``) or ``in [a, b, ...]``."""

    lo: Expr | None = None
    hi: Expr | None = None
    choices: list[Expr] | None = None


@dataclass
class Param(Node):
    name: str
    default: Expr | None
    domain: Domain | None = None


# ---- statements ---------------------------------------------------------------------------
@dataclass
class Layer(Node):
    """`NAME word* key=value*`: a layer in a body, a setting in `train { }`."""

    name: str
    words: list[Expr]
    kwargs: list[KwArg]
    name_span: Span | None = None


@dataclass
class Call(Node):
    name: str
    ns: str | None
    args: list[KwArg]


@dataclass
class Body(Node):
    stmts: list[Stmt]


@dataclass
class For(Node):
    var: str
    lo: Expr
    hi: Expr
    body: Body


@dataclass
class If(Node):
    cond: Expr
    then: Body
    orelse: Body | If | None


@dataclass
class Group(Node):
    kind: str  # "level" | "step"
    repeat: Expr | None
    body: Body


@dataclass
class Input(Node):
    shape: Shape


@dataclass
class Prior(Node):
    name: str
    words: list[Expr]
    kwargs: list[KwArg]


@dataclass
class Condition(Node):
    name: str
    ctype: str
    shape: Shape
    kwargs: list[KwArg]
    ctype_span: Span | None = None


@dataclass
class Expect(Node):
    shape: Shape


@dataclass
class Train(Node):
    settings: list[Layer]


@dataclass
class Insert(Node):
    layer: Layer
    place: str  # "before" | "after"
    kind: str
    variant: str | None
    levels: tuple[Expr, Expr] | None
    kind_span: Span | None = None


@dataclass
class Let(Node):
    name: str
    value: Expr


Stmt = Layer | Call | For | If | Group | Input | Prior | Condition | Expect | Train | Insert | Let


# ---- top level ----------------------------------------------------------------------------
@dataclass
class Import(Node):
    path: str
    alias: str
    path_span: Span | None = None


@dataclass
class BlockDef(Node):
    name: str
    params: list[Param]
    body: Body


@dataclass
class FlowDef(Node):
    name: str
    params: list[Param]
    extends: Call | None
    body: Body


@dataclass
class Comment:
    line: int
    column: int
    text: str


@dataclass
class Module:
    file: str
    version: str | None
    items: list[Import | Let | BlockDef | FlowDef]
    comments: list[Comment] = field(default_factory=list)
    version_line: int = 1
