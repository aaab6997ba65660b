"""Values of parameters: defaults, call arguments, ``extends(...)`` arguments and ``--set``.

A block's parameters are bound at each call (:func:`bind_params`); a flow's come from its
``extends`` chain, where the most derived flow's arguments and the command line's
overrides win (:func:`flow_parameters`). Every value is checked against the domain its
parameter declares (``in A..B`` / ``in [...]``). :func:`parse_override` reads a ``--set``
value the way the language writes numbers, booleans and words.
"""

from __future__ import annotations

import math
import re
from typing import Any

from . import ast
from .errors import Abort, Collector, Span, did_you_mean
from .evaluate import (
    EncoderCall,
    FlowCall,
    Scope,
    Word,
    evaluate,
    expect_int,
    format_value,
    type_name,
)
from .loader import ModuleEnv
from .parse import MAX_INT

__all__ = [
    "bind_params",
    "check_domain",
    "flow_parameters",
    "no_encoder_call",
    "parse_override",
    "plain",
    "plain_override",
]


def plain(v: Any) -> Any:
    """A value as the IR holds it: a word is a plain string."""
    return str(v) if isinstance(v, Word) else v


def plain_override(v: Any) -> Any:
    """A flow reference's argument as an override of the named flow's parameter."""
    return v if isinstance(v, (bool, int, float, Word)) or not isinstance(v, str) else Word(v)


def no_encoder_call(value: Any, span: Span, diags: Collector) -> None:
    """Encoder calls (``rrdb(...)``) are values only for a condition's ``encoder=``."""
    if isinstance(value, FlowCall):
        diags.error(
            "E121",
            f"`flow({value.name})` is a flow reference; it can only be a condition's encoder",
            span,
            help="write it as `condition NAME: labels NxHxW encoder=flow(NAME)`",
        )
        raise Abort
    if isinstance(value, EncoderCall):
        diags.error(
            "E121",
            f"`{value.name}(...)` is an encoder call; it can only be a condition's encoder",
            span,
            help=f"write it as `condition NAME: image CxHxW encoder={value.name}(...)`",
        )
        raise Abort


def parse_override(text: str) -> Any:
    """A ``--set`` value as written on the command line: int, float, bool or word."""
    low = text.strip()
    if low in ("true", "false"):
        return low == "true"
    # numbers as the language writes them (Python's int()/float() also take "nan", "inf",
    # "1_000" and 5,000-digit strings it then refuses to print); anything else is a word
    if re.fullmatch(r"-?\d{1,19}", low) and abs(int(low)) <= MAX_INT:
        return int(low)
    if re.fullmatch(r"-?(\d+\.\d+([eE][+-]?\d+)?|\d+[eE][+-]?\d+)", low):
        value = float(low)
        if math.isfinite(value):
            return value
    return Word(low)


def _coerce_override(
    name: str, value: Any, default: Any, flow: str, diags: Collector, span: Span
) -> Any:
    if isinstance(value, str) and not isinstance(value, Word) and isinstance(default, Word):
        value = Word(value)
    if isinstance(default, bool) or isinstance(value, bool):
        ok = isinstance(default, bool) and isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float))
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        diags.error(
            "E123",
            f"--set {name}={format_value(value)}: parameter `{name}` of flow "
            f"`{flow}` takes {type_name(default)} values",
            span,
            help=f"its default is {format_value(default)}",
        )
        raise Abort
    return value


def bind_params(
    params: list[ast.Param],
    args: list[ast.KwArg],
    def_scope: Scope,
    call_scope: Scope,
    diags: Collector,
    *,
    what: str,
    call_span: Span,
    preset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Values of ``params``: defaults (in the defining scope) overridden by ``args``."""
    names = [p.name for p in params]
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for kw in args:
        if kw.name not in names:
            diags.error(
                "E105",
                f"unknown argument `{kw.name}` for {what}",
                kw.name_span,
                help=did_you_mean(kw.name, names)
                or ("parameters: " + ", ".join(names) if names else f"{what} takes no parameters"),
            )
            raise Abort
        given[kw.name] = evaluate(kw.value, call_scope, diags, words=True)
    for p in params:
        if preset and p.name in preset:
            values[p.name] = preset[p.name]
        elif p.name in given:
            values[p.name] = given[p.name]
        elif p.default is not None:
            values[p.name] = evaluate(p.default, def_scope, diags, words=True)
        else:
            diags.error(
                "E109",
                f"{what} needs a value for `{p.name}`",
                call_span,
                help=f"pass it as {p.name}=...",
            )
            raise Abort
        origin = f"passed at {call_span.short()}" if p.name in given else None
        check_domain(p, values[p.name], def_scope, diags, origin)
    return values


def check_domain(
    p: ast.Param, value: Any, scope: Scope, diags: Collector, origin: str | None
) -> None:
    """E124 when ``value`` is outside the values ``p`` declares (``in A..B`` / ``in [...]``)."""
    d = p.domain
    if d is None:
        return
    notes = [f"the value was {origin}"] if origin else []
    if d.choices is not None:
        choices = [evaluate(c, scope, diags, words=True) for c in d.choices]
        given, options = plain(value), [plain(c) for c in choices]
        if not any(type(given) is type(c) and given == c for c in options):
            shown = ", ".join(format_value(c) for c in choices)
            diags.error(
                "E124",
                f"parameter `{p.name}` is {format_value(value)}, but it takes one of {shown}",
                p.span,
                notes=notes,
                help=did_you_mean(str(value), [str(c) for c in choices]) or f"use one of {shown}",
            )
            raise Abort
        return
    lo = expect_int(d.lo, scope, diags, "a range bound")
    hi = expect_int(d.hi, scope, diags, "a range bound")
    if isinstance(value, bool) or not isinstance(value, int):
        diags.error(
            "E124",
            f"parameter `{p.name}` takes an integer in {lo}..{hi}, got {type_name(value)}",
            p.span,
            notes=notes,
        )
        raise Abort
    if not lo <= value <= hi:
        diags.error(
            "E124",
            f"parameter `{p.name}` is {value}, outside its declared range {lo}..{hi}",
            p.span,
            notes=notes,
            help=f"use a value in {lo}..{hi}",
        )
        raise Abort


def flow_parameters(
    chain: list[tuple[ModuleEnv, ast.FlowDef]], overrides: dict[str, Any], diags: Collector
) -> list[dict[str, Any]] | None:
    """The parameter values of each flow of an ``extends`` chain (parent first, the flow
    asked for last), or None after reporting why there are none.

    Child first: ``extends(...)`` arguments (evaluated in the child's scope) set parameters
    declared anywhere up the chain; ``--set`` overrides win over both.
    """
    head = chain[-1][1]
    flow_name = head.name
    _check_declared(chain, overrides, diags)
    if diags.has_errors:
        return None
    try:
        values: list[dict[str, Any]] = [{} for _ in chain]
        preset: dict[str, Any] = {}
        all_defaults = [
            {p.name: evaluate(p.default, fenv.scope(), diags, words=True) for p in f.params}
            for fenv, f in chain
        ]
        for (_, f), defaults in zip(chain, all_defaults):
            for p in f.params:  # parameters end up in the IR: plain values only
                no_encoder_call(defaults[p.name], p.default.span, diags)
        for i in range(len(chain) - 1, -1, -1):  # the most derived declaration types it
            for name in overrides:
                if name in all_defaults[i] and name not in preset:
                    preset[name] = _coerce_override(
                        name, overrides[name], all_defaults[i][name], flow_name, diags, head.span
                    )
        for i in range(len(chain) - 1, -1, -1):
            fenv, f = chain[i]
            values[i] = {n: preset.get(n, v) for n, v in all_defaults[i].items()}
            if f.extends is not None and f.extends.args:
                _extends_args(chain, i, fenv.scope(**values[i]), preset, diags)
        final = {k: v for vals in values for k, v in vals.items()}
        for fenv, f in chain:
            for p in f.params:
                origin = (
                    "set by the flow that extends it"
                    if p.name in preset and p.name not in overrides
                    else None
                )
                check_domain(p, final[p.name], fenv.scope(), diags, origin)
    except Abort:
        return None
    return values


def _check_declared(
    chain: list[tuple[ModuleEnv, ast.FlowDef]], overrides: dict[str, Any], diags: Collector
) -> None:
    """Every ``--set`` override names a parameter of the chain, and every parameter has a
    default."""
    head = chain[-1][1]
    declared = {p.name: p for _, f in chain for p in f.params}
    for name in overrides:
        if name not in declared:
            diags.error(
                "E108",
                f"--set {name}: flow `{head.name}` has no parameter `{name}`",
                head.span,
                help=did_you_mean(name, declared)
                or (
                    "parameters: " + ", ".join(declared)
                    if declared
                    else "the flow declares no parameters"
                ),
            )
    for _, f in chain:
        for p in f.params:
            if p.default is None:
                diags.error(
                    "E112",
                    f"flow parameter `{p.name}` needs a default value",
                    p.span,
                    help=f"write `{p.name} = VALUE`",
                )


def _extends_args(
    chain: list[tuple[ModuleEnv, ast.FlowDef]],
    i: int,
    scope: Scope,
    preset: dict[str, Any],
    diags: Collector,
) -> None:
    """The ``extends(...)`` arguments of flow ``i`` (evaluated in its ``scope``) into
    ``preset``, where a more derived flow's value or an override is not already."""
    inherited = [p.name for _, g in chain[:i] for p in g.params]
    for kw in chain[i][1].extends.args:
        if kw.name not in inherited:
            diags.error(
                "E105",
                f"unknown argument `{kw.name}` for flow `{chain[i - 1][1].name}`",
                kw.name_span,
                help=did_you_mean(kw.name, inherited)
                or (
                    "parameters: " + ", ".join(inherited)
                    if inherited
                    else "it takes no parameters"
                ),
            )
            raise Abort
        value = evaluate(kw.value, scope, diags, words=True)
        no_encoder_call(value, kw.value.span, diags)
        preset.setdefault(kw.name, value)
