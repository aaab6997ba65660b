"""Resolve a parsed .flow file into the FlowSpec IR.

Resolution evaluates everything the language allows (imports, lets, block calls,
``extends`` with argument overrides, ``for`` / ``if`` / ``x N``, insert rules) into one
flat list of layer instances, each with its stable path (``level2.step07.coupling``),
its validated arguments (defaults filled in from the registry), its span and its trace
of instantiations. Shapes are left to :mod:`flowspec.check`.

The stages, one module each: :mod:`flowspec.loader` (files and imports),
:mod:`flowspec.values` (parameters and ``--set`` overrides), :mod:`flowspec.interpret`
(the statements, with :mod:`flowspec.arguments` checking each kind's arguments) and
:mod:`flowspec.placement` (insert rules and paths). This module picks the flow and its
``extends`` chain and runs them in that order.
"""

from __future__ import annotations

from typing import Any

from . import ast
from .errors import Abort, Collector, did_you_mean
from .interpret import FlowBuilder
from .ir import FlowSpec
from .loader import ModuleEnv
from .placement import apply_inserts, assign_paths
from .recipe import validate_settings
from .values import flow_parameters, plain

__all__ = ["resolve"]


#: Flows already resolved in one analysis, by file, name and parameters (see :func:`resolve`).
Memo = dict[tuple[str, str | None, str], FlowSpec | None]


def resolve(
    env: ModuleEnv,
    flow_name: str | None,
    overrides: dict[str, Any],
    diags: Collector,
    *,
    memo: Memo | None = None,
) -> FlowSpec | None:
    """The IR of flow ``flow_name`` of ``env`` (its only flow when None) with its
    parameters ``overrides`` set, or None after reporting its errors to ``diags``.

    ``memo``, shared by the calls of one analysis, resolves each flow once for given
    parameters: a flow that conditions several others (``encoder=flow(NAME)``) and is
    checked on its own too is one IR object, and its diagnostics are reported once."""
    memo = {} if memo is None else memo
    return _resolve(env, flow_name, overrides, diags, (), memo)


def _resolve(
    env: ModuleEnv,
    flow_name: str | None,
    overrides: dict[str, Any],
    diags: Collector,
    encoders: tuple[tuple[str, str], ...],
    memo: Memo,
) -> FlowSpec | None:
    """:func:`resolve`, within the flows being resolved as conditions' encoders."""
    key = (env.file, flow_name, repr(sorted(overrides.items())))
    if key not in memo:
        memo[key] = _resolve_once(env, flow_name, overrides, diags, encoders, memo)
    return memo[key]


def _resolve_once(
    env: ModuleEnv,
    flow_name: str | None,
    overrides: dict[str, Any],
    diags: Collector,
    encoders: tuple[tuple[str, str], ...],
    memo: Memo,
) -> FlowSpec | None:
    flows = env.flows
    if not flows:
        diags.error(
            "E103",
            f"`{env.file}` defines no flow",
            None,
            help="add `flow NAME { input CxHxW ... }`",
        )
        return None
    if flow_name is None:
        if len(flows) > 1:
            diags.error(
                "E113",
                f"`{env.file}` defines several flows ({', '.join(flows)}); choose one",
                None,
                help="pass --flow NAME (or flow=NAME)",
            )
            return None
        flow_name = next(iter(flows))
    if flow_name not in flows:
        diags.error(
            "E103",
            f"no flow `{flow_name}` in `{env.file}`",
            None,
            help=did_you_mean(flow_name, flows) or f"flows: {', '.join(flows)}",
        )
        return None
    chain = _extends_chain(env, flows[flow_name], diags)
    if chain is None:
        return None
    head = chain[-1][1]
    values = flow_parameters(chain, overrides, diags)
    if values is None:
        return None

    def resolve_flow(fenv, name, values, d, chain):  # a condition's flow, memoised
        return _resolve(fenv, name, values, d, chain, memo)

    builder = FlowBuilder(diags, resolve_flow, encoders)
    for i, (fenv, f) in enumerate(chain):
        # a child sees its parents' parameters too
        scope_vals = {k: v for vals in values[: i + 1] for k, v in vals.items()}
        try:
            builder.run_flow(fenv, f, scope_vals, extending=i > 0)
        except Abort:
            return None
    layers = apply_inserts(builder.layers, builder.inserts, diags)
    assign_paths(layers, builder.n_steps)
    if builder.input is None:
        if builder.input_span is None:  # else the input statement reported its own error
            diags.error(
                "E207",
                f"flow `{flow_name}` has no `input` statement",
                head.span,
                help="add `input CxHxW`, e.g. `input 1x32x32`",
            )
        return None
    validate_settings(builder.train, diags)
    params = {k: plain(v) for vals in values for k, v in vals.items()}
    return FlowSpec(
        name=flow_name,
        file=env.file,
        params=params,
        input=builder.input,
        input_span=builder.input_span,
        prior=builder.prior,
        conditions=list(builder.conditions.values()),
        layers=layers,
        expect_latent=builder.expect,
        expect_span=builder.expect_span,
        train=builder.train,
        span=head.span,
    )


def _extends_chain(
    env: ModuleEnv, flow: ast.FlowDef, diags: Collector
) -> list[tuple[ModuleEnv, ast.FlowDef]] | None:
    """``flow`` and the flows it extends, parent first, or None after an error."""
    chain: list[tuple[ModuleEnv, ast.FlowDef]] = [(env, flow)]
    seen = {(env.file, flow.name)}
    try:
        while chain[0][1].extends is not None:
            ext = chain[0][1].extends
            penv, parent = chain[0][0].find(ext.ns, ext.name, "flow", ext.span, diags)
            if (penv.file, parent.name) in seen:
                diags.error("E161", f"flow `{parent.name}` extends itself", ext.span)
                return None
            seen.add((penv.file, parent.name))
            chain.insert(0, (penv, parent))
    except Abort:
        return None
    return chain
