"""Evaluation of .flow expressions: ints, floats, bools, strings and words.

A bare name is a variable when one is in scope and otherwise a *word* (``on=lr``,
``mask=checkerboard``) -- but only where a word may stand (layer arguments); in
arithmetic, conditions and ranges an unknown name is an error with a did-you-mean.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import ast, codes
from .errors import Abort, Collector, Span, did_you_mean
from .parse import MAX_INT

Value = int | float | bool | str


class Word(str):
    """A bare name used as a value (``affine``, ``lr``); remembers near-miss variables.

    The did-you-mean ``hint`` is only computed when an error message asks for it: words
    are evaluated for every layer instance, and difflib is slow.
    """

    _names: Callable[[], list[str]] | None = None

    @property
    def hint(self) -> str | None:
        return did_you_mean(str(self), self._names()) if self._names is not None else None


@dataclass
class EncoderCall:
    name: str
    args: dict[str, Any]
    arg_spans: dict[str, Span]
    span: Span


@dataclass
class FlowCall:
    """The value of ``flow(NAME(k=v))``: a reference to another flow (a condition's encoder),
    with its arguments evaluated where it is written."""

    name: str
    ns: str | None
    args: dict[str, Any]
    arg_spans: dict[str, Span]
    span: Span


@dataclass
class Scope:
    """Variables visible at a point: locals (params, loop variables, lets) over globals."""

    local: dict[str, Any]
    lookup_global: Callable[[str | None, str], Any]  # raises KeyError
    global_names: Callable[[str | None], list[str]] = field(default=lambda ns: [])

    def child(self, **extra: Any) -> Scope:
        return Scope({**self.local, **extra}, self.lookup_global, self.global_names)

    def names(self) -> list[str]:
        return list(self.local) + self.global_names(None)


def type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, Word):
        return f"word `{v}`"
    if isinstance(v, str):
        return "string"
    if isinstance(v, EncoderCall):
        return "encoder call"
    if isinstance(v, FlowCall):
        return "flow reference"
    return type(v).__name__


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Word):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(v)


_PLAIN = re.compile(r"[A-Za-z_][\w.\-/]*")


def display_value(v: Any) -> str:
    """An argument's value as a user would write it in a table or a diagram: strings that
    read as words bare (``mask=checkerboard``), others quoted."""
    from .kinds import Spelled

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Spelled):
        return str(v)
    if isinstance(v, str):
        return v if _PLAIN.fullmatch(v) else '"' + v.replace('"', '\\"') + '"'
    return repr(v)


_ARITH = {"+", "-", "*", "//", "%"}
_COMPARE = {"==", "!=", "<", "<=", ">", ">="}


def evaluate(e: ast.Expr, scope: Scope, diags: Collector, *, words: bool = False) -> Any:
    """Value of ``e``; records a diagnostic and raises :class:`Abort` on error."""
    if isinstance(e, ast.Lit):
        return e.value
    if isinstance(e, ast.Var):
        return _variable(e, scope, diags, words)
    if isinstance(e, ast.CallExpr):
        args, spans = {}, {}
        for kw in e.args:
            args[kw.name] = evaluate(kw.value, scope, diags, words=True)
            spans[kw.name] = kw.value.span
        name = f"{e.ns}.{e.name}" if e.ns else e.name
        return EncoderCall(name, args, spans, e.span)
    if isinstance(e, ast.FlowRef):
        args, spans = {}, {}
        for kw in e.args:
            args[kw.name] = evaluate(kw.value, scope, diags, words=True)
            spans[kw.name] = kw.value.span
        return FlowCall(e.name, e.ns, args, spans, e.span)
    if isinstance(e, ast.UnOp):
        return _unop(e, evaluate(e.operand, scope, diags), diags)
    if isinstance(e, ast.ListLit):
        return [evaluate(item, scope, diags) for item in e.items]
    if isinstance(e, ast.BinOp):
        a = evaluate(e.left, scope, diags)
        b = evaluate(e.right, scope, diags)
        return _binop(e, a, b, diags)
    raise TypeError(f"not an expression: {e!r}")


def _variable(e: ast.Var, scope: Scope, diags: Collector, words: bool) -> Any:
    """A name's value: a local, a global of its namespace, or (with ``words``) the bare word
    itself; anything else is E-unknown-name with a did-you-mean."""
    if e.ns is None and e.name in scope.local:
        return scope.local[e.name]
    try:
        return scope.lookup_global(e.ns, e.name)
    except KeyError:
        pass
    if e.ns is None and words:
        w = Word(e.name)
        w._names = scope.names
        return w
    where = f"`{e.ns}.{e.name}`" if e.ns else f"`{e.name}`"
    options = scope.global_names(e.ns) if e.ns else scope.names()
    diags.error(
        codes.E_UNKNOWN_NAME,
        f"unknown name {where}",
        e.span,
        help=did_you_mean(e.name, options),
    )
    raise Abort


def _unop(e: ast.UnOp, v: Any, diags: Collector) -> Any:
    """``-v`` of a number, ``not v`` of a boolean."""
    if e.op == "-":
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return -v
        diags.error(codes.E_TYPE, f"cannot negate {type_name(v)}", e.span)
        raise Abort
    if isinstance(v, bool):
        return not v
    diags.error(codes.E_TYPE, f"`not` needs true or false, got {type_name(v)}", e.span)
    raise Abort


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _binop(e: ast.BinOp, a: Any, b: Any, diags: Collector) -> Any:
    op = e.op
    if op in ("and", "or"):
        if isinstance(a, bool) and isinstance(b, bool):
            return (a and b) if op == "and" else (a or b)
        diags.error(
            codes.E_TYPE,
            f"`{op}` needs true or false on both sides, got {type_name(a)} and {type_name(b)}",
            e.span,
        )
        raise Abort
    if op in _COMPARE:
        if op in ("==", "!=") or (_is_num(a) and _is_num(b)):
            if op in ("==", "!="):
                same = (a == b) and (isinstance(a, bool) == isinstance(b, bool))
                return same if op == "==" else not same
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        diags.error(
            codes.E_TYPE, f"cannot compare {type_name(a)} and {type_name(b)} with `{op}`", e.span
        )
        raise Abort
    if op in _ARITH:
        if (
            op == "+"
            and isinstance(a, str)
            and isinstance(b, str)
            and not (isinstance(a, Word) or isinstance(b, Word))
        ):
            return a + b
        if not (_is_num(a) and _is_num(b)):
            diags.error(
                codes.E_TYPE,
                f"cannot apply `{op}` to {type_name(a)} and {type_name(b)}",
                e.span,
                help="arithmetic works on numbers"
                if not (isinstance(a, Word) or isinstance(b, Word))
                else "a bare name that is not a variable is a word; check its spelling",
            )
            raise Abort
        if op in ("//", "%"):
            if not (isinstance(a, int) and isinstance(b, int)):
                diags.error(codes.E_TYPE, f"`{op}` works on integers", e.span)
                raise Abort
            if b == 0:
                diags.error(codes.E_DIVISION, "division by zero", e.right.span)
                raise Abort
            return a // b if op == "//" else a % b
        result = {"+": a + b, "-": a - b, "*": a * b}[op]
        if abs(result) > MAX_INT if isinstance(result, int) else not math.isfinite(result):
            diags.error(
                codes.E_OVERFLOW,
                f"`{op}` overflows: the result is too large",
                e.span,
                help=f"integers are at most {MAX_INT} (2**63 - 1), floats about 1.8e308",
            )
            raise Abort
        return result
    raise TypeError(op)


def expect_int(
    e: ast.Expr, scope: Scope, diags: Collector, what: str, *, minimum: int | None = None
) -> int:
    v = evaluate(e, scope, diags)
    if not isinstance(v, int) or isinstance(v, bool):
        diags.error(codes.E_TYPE, f"{what} must be an integer, got {type_name(v)}", e.span)
        raise Abort
    if minimum is not None and v < minimum:
        diags.error(codes.E_VALUE, f"{what} must be at least {minimum}, got {v}", e.span)
        raise Abort
    return v
