"""Shape inference and invertibility checks on the IR, before any torch module exists.

Walks the flat layer list with the running C×H×W, asks each kind for its output shape
and its invertibility conditions, checks conditions are declared where they are used,
and that the latents add up to the input. Every violation becomes a diagnostic with the
layer's instantiation trace as notes.
"""

from __future__ import annotations

import math

from .errors import Collector, Span, did_you_mean
from .ir import FlowSpec, LatentIR, LayerIR
from .kinds import KINDS, Issue, split_latent

#: More layers than this of a kind with a ``stack_remedy`` (iMap, iSDP), all with the remedy
#: off, get warning W003: the paper (appendix H) found their inverses unstable in deep flows.
DEEP_STACK = 8


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


def _notes(layer: LayerIR) -> list[str]:
    notes = [o.text for o in reversed(layer.trace)]
    notes.append(f"layer `{layer.path}`")
    return notes


def _report(diags: Collector, issue: Issue, layer: LayerIR) -> None:
    span: Span = layer.arg_spans.get(issue.arg, layer.span) if issue.arg else layer.span
    diags.error(issue.code, issue.message, span, notes=_notes(layer), help=issue.help)


def check(spec: FlowSpec, diags: Collector) -> FlowSpec:
    """Fill in shapes and latents; report every violation into ``diags``."""
    conds = {c.name: c for c in spec.conditions}
    used: set[str] = set()
    shape = spec.input
    latents: list[LatentIR] = []
    broken = False
    for layer in spec.layers:
        kind = KINDS[layer.kind]
        on = layer.args.get("on")
        if kind.conditional == "required" and on is None:
            diags.error("E301", f"`{kind.head}` is conditional and needs `on=CONDITION`",
                        layer.span, notes=_notes(layer),
                        help=("add on=" + next(iter(conds))) if conds else
                        "declare one: condition NAME: image CxHxW encoder=rrdb(...)")
        if on is not None:
            if on not in conds:
                diags.error("E302", f"`on={on}` names no declared condition",
                            layer.arg_spans.get("on", layer.span), notes=_notes(layer),
                            help=did_you_mean(on, conds) or (
                                "declare it: condition " + on + ": image CxHxW encoder=rrdb()"))
            used.add(on)
        if broken:
            continue
        args = kind.Args(**layer.args)
        for issue in kind.issues(shape, args):
            _report(diags, issue, layer)
            broken = True
        out = kind.out_shape(shape, args)
        if isinstance(out, Issue):
            _report(diags, out, layer)
            broken = True
            continue
        layer.in_shape, layer.out_shape = shape, out
        if layer.kind == "split":
            latents.append(LatentIR(name=f"z{len(latents) + 1}", shape=split_latent(shape),
                                    source=layer.path))
        shape = out
    if spec.prior.on is not None:
        used.add(spec.prior.on)
        if spec.prior.on not in conds:
            diags.error("E302", f"the prior's `on={spec.prior.on}` names no declared condition",
                        spec.prior.span, help=did_you_mean(spec.prior.on, conds))
    if broken:
        return spec
    latents.append(LatentIR(name=f"z{len(latents) + 1}", shape=shape, source="prior"))
    spec.latents = latents
    total = sum(math.prod(z.shape) for z in latents)
    if total != math.prod(spec.input):
        diags.error("E206", f"the latents hold {total} numbers but the input has "
                    f"{math.prod(spec.input)}", spec.input_span,
                    help="a layer changed the dimension; this is a bug in a layer's shape rule")
    if spec.expect_latent is not None and tuple(spec.expect_latent) != tuple(shape):
        diags.error("E205", f"the final latent is {_fmt(shape)}, but the flow expects "
                    f"{_fmt(spec.expect_latent)}", spec.expect_span or spec.span,
                    help="the levels, squeezes and splits produce "
                    f"{', '.join(_fmt(z.shape) for z in latents)}")
    for name, cond in conds.items():
        if name not in used:
            diags.warning("W002", f"condition `{name}` is declared but no layer uses it",
                          cond.span, help=f"add on={name} to the layers it should condition")
    _deep_stacks(spec, diags)
    return spec


def _deep_stacks(spec: FlowSpec, diags: Collector) -> None:
    """W003, once per source statement: a deep stack of layers whose kind names a
    ``stack_remedy`` argument, with that argument off."""
    plain = [layer for layer in spec.layers
             if KINDS[layer.kind].stack_remedy
             and not layer.args.get(KINDS[layer.kind].stack_remedy)]
    if len(plain) <= DEEP_STACK:
        return
    heads = sorted({KINDS[layer.kind].head for layer in plain})
    what = "/".join(f"`{h}`" for h in heads)
    by_statement: dict[tuple[str, int, int], list[LayerIR]] = {}
    for layer in plain:
        by_statement.setdefault((layer.span.file, layer.span.line, layer.span.column),
                                []).append(layer)
    for layers in by_statement.values():
        first = layers[0]
        kind = KINDS[first.kind]
        arg = kind.stack_remedy
        words = " ".join(w for w in (kind.head, kind.variant) if w)
        last = layers[-1].path
        share = "" if len(layers) == len(plain) else f" ({len(layers)} from this line)"
        diags.warning(
            "W003", f"{len(plain)} {what} layers without {arg}=true{share}: their inverses "
            f"lose float32 precision as the stack grows (more than {DEEP_STACK} is deep)",
            first.span,
            notes=[*_notes(first), f"{len(layers)} layers, `{first.path}` ... `{last}`"],
            help=f"write `{words} {arg}=true`: a bounded, identity-plus-branch form whose "
            "log-det is still exact")
