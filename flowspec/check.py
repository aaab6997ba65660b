"""Shape inference and invertibility checks on the IR, before any torch module exists.

Walks the flat layer list with the running C×H×W, asks each kind for its output shape
and its invertibility conditions, checks conditions are declared where they are used
(and their encoders' own conditions on the input), that the latents add up to the input,
and that the recipe asks nothing of the model that it lacks (:func:`recipe.check_recipe`).
Every violation becomes a diagnostic with the layer's instantiation trace as notes.
"""

from __future__ import annotations

import math

from . import codes
from .errors import Collector, Span, did_you_mean
from .ir import ConditionIR, FlowSpec, LatentIR, LayerIR
from .kinds import ENCODERS, KINDS, Issue, LayerKind
from .recipe import check_recipe

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


def check(spec: FlowSpec, diags: Collector, checked: dict[int, bool] | None = None) -> FlowSpec:
    """Fill in shapes and latents; report every violation into ``diags``.

    ``checked``, shared by the calls of one analysis, records the flows checked so far (by
    ``id``) and whether they were free of errors: a flow that conditions several others
    (one IR object, see :func:`flowspec.resolve.resolve`) is checked once."""
    checked = {} if checked is None else checked
    if id(spec) in checked:
        return spec
    before = _errors(diags)
    conds = {c.name: c for c in spec.conditions}
    flows_ok = all(_check_condition_flow(c, diags, checked) for c in spec.conditions if c.flow)
    _check_encoders(spec, diags)
    check_recipe(spec, diags)
    used: set[str] = set()
    shape = spec.input
    latents: list[LatentIR] = []
    broken = False
    for layer in spec.layers:
        kind = KINDS[layer.kind]
        _check_on(layer, kind, conds, used, diags)
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
        if kind.emits_latent:
            latents.append(
                LatentIR(
                    name=f"z{len(latents) + 1}",
                    shape=kind.latent_shape(shape, args),
                    source=layer.path,
                )
            )
        shape = out
    if spec.prior.on is not None:
        used.add(spec.prior.on)
        if spec.prior.on not in conds:
            diags.error(
                codes.E_UNKNOWN_CONDITION,
                f"the prior's `on={spec.prior.on}` names no declared condition",
                spec.prior.span,
                help=did_you_mean(spec.prior.on, conds),
            )
    if broken:
        checked[id(spec)] = False
        return spec
    latents.append(LatentIR(name=f"z{len(latents) + 1}", shape=shape, source="prior"))
    spec.latents = latents
    _check_latents(spec, latents, shape, diags)
    _unused_conditions(conds, used, diags)
    if flows_ok:
        _line_up(spec, diags)
    _deep_stacks(spec, diags)
    if not diags.has_errors:  # about a model that could be built, not a broken spec
        _untouched_entries(spec, diags)
    checked[id(spec)] = _errors(diags) == before
    return spec


def _errors(diags: Collector) -> int:
    return sum(d.severity == "error" for d in diags.items)


def _check_encoders(spec: FlowSpec, diags: Collector) -> None:
    """The conditions' encoders (not flows: :func:`_check_condition_flow`) on their inputs."""
    for c in spec.conditions:
        if c.flow is None:
            for issue in ENCODERS[c.encoder.kind].issues(
                tuple(c.shape), c.encoder.args, tuple(spec.input)
            ):
                diags.error(issue.code, issue.message, c.span, help=issue.help)


def _check_on(
    layer: LayerIR,
    kind: LayerKind,
    conds: dict[str, ConditionIR],
    used: set[str],
    diags: Collector,
) -> None:
    """A layer's ``on=``: given where the kind needs it, naming a declared condition (added
    to ``used``)."""
    on = layer.args.get("on")
    if kind.conditional == "required" and on is None:
        diags.error(
            codes.E_NEEDS_CONDITION,
            f"`{kind.head}` is conditional and needs `on=CONDITION`",
            layer.span,
            notes=_notes(layer),
            help=("add on=" + next(iter(conds)))
            if conds
            else "declare one: condition NAME: image CxHxW encoder=rrdb(...)",
        )
    if on is not None:
        if on not in conds:
            diags.error(
                codes.E_UNKNOWN_CONDITION,
                f"`on={on}` names no declared condition",
                layer.arg_spans.get("on", layer.span),
                notes=_notes(layer),
                help=did_you_mean(on, conds)
                or ("declare it: condition " + on + ": image CxHxW encoder=rrdb()"),
            )
        used.add(on)


def _check_latents(
    spec: FlowSpec, latents: list[LatentIR], shape: tuple[int, ...], diags: Collector
) -> None:
    """The latents hold as many numbers as the input, and the final one (``shape``, the
    prior's) has the shape of ``expect latent``."""
    total = sum(math.prod(z.shape) for z in latents)
    if total != math.prod(spec.input):
        diags.error(
            codes.E_LATENT_SIZE,
            f"the latents hold {total} numbers but the input has {math.prod(spec.input)}",
            spec.input_span,
            help="a layer changed the dimension; this is a bug in a layer's shape rule",
        )
    if spec.expect_latent is not None and tuple(spec.expect_latent) != tuple(shape):
        diags.error(
            codes.E_LATENT_SHAPE,
            f"the final latent is {_fmt(shape)}, but the flow expects {_fmt(spec.expect_latent)}",
            spec.expect_span or spec.span,
            help="the levels, squeezes and splits produce "
            f"{', '.join(_fmt(z.shape) for z in latents)}",
        )


def _unused_conditions(conds: dict[str, ConditionIR], used: set[str], diags: Collector) -> None:
    for name, cond in conds.items():
        if name not in used:
            diags.warning(
                codes.W_UNUSED_CONDITION,
                f"condition `{name}` is declared but no layer uses it",
                cond.span,
                help=f"add on={name} to the layers it should condition",
            )


def _check_condition_flow(c: ConditionIR, diags: Collector, checked: dict[int, bool]) -> bool:
    """Check the flow of a condition written ``encoder=flow(NAME)``: it must be valid,
    unconditional, and take the condition as it is fed (an image as is; a label map one-hot,
    ``N`` channels, or drawn in colour, 3 channels)."""
    check(c.flow, diags, checked)
    if not checked[id(c.flow)]:
        return False
    name = c.flow.name
    if c.flow.conditions:
        diags.error(
            codes.E_CONDITION_FLOW_CONDITIONAL,
            f"flow `{name}` models condition `{c.name}`, so it must be "
            "unconditional, but it declares condition "
            f"`{c.flow.conditions[0].name}`",
            c.span,
        )
        return False
    _, h, w = c.shape
    fed = [tuple(c.shape)] if c.type == "image" else [tuple(c.shape), (3, h, w)]
    if tuple(c.flow.input) not in fed:
        want = " or ".join(_fmt(f) for f in fed)
        diags.error(
            codes.E_CONDITION_FLOW_SHAPE,
            f"condition `{c.name}` ({c.declared()}) is fed to flow `{name}` "
            f"as {want}, but that flow's input is {_fmt(c.flow.input)}",
            c.span,
            help="a label map reaches its flow one-hot (N channels) or drawn in colour "
            "(3 channels); an image as it is",
        )
        return False
    return True


def _line_up(spec: FlowSpec, diags: Collector) -> None:
    """E312: every layer conditioned on a flow gets the output of that flow's layer at the
    same position (level, step, place in the step), which must exist and have the layer's
    H×W. Layers added by insert rules have no position."""
    flows = {c.name: c for c in spec.conditions if c.flow}
    if not flows:
        return
    positions = spec.positions()
    users = [(layer, layer.args.get("on")) for layer in spec.layers]
    users.append((None, spec.prior.on))
    for layer, on in users:
        c = flows.get(on)
        if c is None:
            continue
        span = spec.prior.span if layer is None else layer.arg_spans.get("on", layer.span)
        notes = [] if layer is None else _notes(layer)
        what = "the prior" if layer is None else f"`{layer.path}`"
        if layer is not None and layer.path not in positions:
            diags.error(
                codes.E_CONDITION_TAP,
                f"{what} is added by an insert rule, so it has no place in "
                f"flow `{c.flow.name}` to take its condition from",
                span,
                notes=notes,
                help="write the layer in the flow's steps instead",
            )
            continue
        if (layer.in_shape if layer is not None else spec.latents) in (None, []):
            continue  # a shape error was reported
        position = None if layer is None else positions[layer.path]
        tap = c.flow.tap_shape(position)
        hw = (spec.latents[-1].shape if layer is None else layer.in_shape)[1:]
        where = "its final latent" if layer is None else _where(position)
        if tap is None:
            diags.error(
                codes.E_CONDITION_TAP,
                f"{what} takes condition `{c.name}` from flow "
                f"`{c.flow.name}`, which has no layer at {where}",
                span,
                notes=notes,
                help="the two flows must have the same levels and steps; write the "
                "conditioned layers in the same places of both",
            )
        elif tuple(tap[1:]) != tuple(hw):
            diags.error(
                codes.E_CONDITION_TAP,
                f"{what} is {_fmt(hw)} but flow `{c.flow.name}` hands on {_fmt(tap)} at {where}",
                span,
                notes=notes,
                help="give both flows the same height, width, squeezes and levels",
            )


def _where(position) -> str:
    level, step, k = position
    parts = ([f"level {level}"] if level is not None else []) + (
        [f"step {step}"] if step is not None else []
    )
    return f"layer {k + 1} of {', '.join(parts) or 'the flow'}"


def _deep_stacks(spec: FlowSpec, diags: Collector) -> None:
    """W003, once per source statement: a deep stack of layers whose kind names a
    ``stack_remedy`` argument, with that argument off."""
    plain = [
        layer
        for layer in spec.layers
        if KINDS[layer.kind].stack_remedy and not layer.args.get(KINDS[layer.kind].stack_remedy)
    ]
    if len(plain) <= DEEP_STACK:
        return
    heads = sorted({KINDS[layer.kind].head for layer in plain})
    what = "/".join(f"`{h}`" for h in heads)
    by_statement: dict[tuple[str, int, int], list[LayerIR]] = {}
    for layer in plain:
        by_statement.setdefault((layer.span.file, layer.span.line, layer.span.column), []).append(
            layer
        )
    for layers in by_statement.values():
        first = layers[0]
        kind = KINDS[first.kind]
        remedy = kind.remedy_hint()
        words = " ".join(w for w in (kind.head, kind.variant) if w)
        last = layers[-1].path
        share = "" if len(layers) == len(plain) else f" ({len(layers)} from this line)"
        diags.warning(
            codes.W_DEEP_STACK,
            f"{len(plain)} {what} layers without {remedy}{share}: their inverses "
            f"lose float32 precision as the stack grows (more than {DEEP_STACK} is deep)",
            first.span,
            notes=[*_notes(first), f"{len(layers)} layers, `{first.path}` ... `{last}`"],
            help=f"write `{words} {remedy}`: a bounded, identity-plus-branch form whose "
            "log-det is still exact",
        )


# ---- W004: entries that no coupling reaches ----------------------------------------------
#
# Definition. Cut the flow at every layer that changes the shape (squeeze, split: a
# "reshape") and at its ends. An entry of a piece's output is *untouched* when it is a
# function of one single entry of the piece's input: every layer of the piece acted on it
# entrywise (actnorm, injector, logit, a coupling's kept half, ...) or only moved it
# (permute), and no layer made it depend on other entries (a coupling's transformed half
# depends on the kept half, an invconv mixes the channels of a pixel, attention mixes its
# free entries). In the piece's Jacobian such an output's row has a single non-zero entry:
# those entries of the data never meet the rest before the next reshape. W004 fires for a
# piece in which some layer did condition entries on others (so it is meant to be a flow)
# and entries are left untouched, e.g. a stack of couplings that all transform the same
# half.
#
# Every built-in mask is a function of the channel c and the pixel parity p = (h + w) % 2,
# so the analysis tracks a C x 2 table ``alone[c][p]`` (are those entries still untouched)
# rather than every entry. A kind takes part by declaring the classmethod
# ``alone_after(shape, args, alone) -> alone`` in its own file (the couplings, logit,
# actnorm, invconv, permute, injector, attention, ...); a kind without it counts as making
# every entry depend on others (so an unknown plugin never causes a false warning). Limits: it
# assumes a coupling network sees its whole kept half (Glow's and the ResNet's 3x3
# convolutions do) and it counts an invconv as mixing even when a checkerboard coupling
# would want pixels, not channels, mixed.

Alone = list[list[bool]]


def _alone_after(layer: LayerIR, alone: Alone) -> Alone:
    kind: type[LayerKind] = KINDS[layer.kind]
    rule = getattr(kind, "alone_after", None)
    shape = tuple(layer.in_shape)
    out = rule(shape, kind.Args(**layer.args), alone) if rule else None
    if out is None or len(out) != len(alone):
        return [[False, False] for _ in alone]
    return out


def _pieces(spec: FlowSpec) -> list[tuple[list[LayerIR], LayerIR | None]]:
    """The runs of shape-preserving layers, each with the reshape that ends it (None: the
    prior)."""
    out: list[tuple[list[LayerIR], LayerIR | None]] = []
    run: list[LayerIR] = []
    for layer in spec.layers:
        if KINDS[layer.kind].emits_latent or tuple(layer.in_shape) != tuple(layer.out_shape):
            out.append((run, layer))
            run = []
        else:
            run.append(layer)
    out.append((run, None))
    return [(run, end) for run, end in out if run]


def _describe(alone: Alone) -> str:
    """Which (channel, pixel parity) classes are untouched, in words."""
    c = len(alone)
    both = [ch for ch in range(c) if all(alone[ch])]
    if all(alone[ch][0] for ch in range(c)) and not any(alone[ch][1] for ch in range(c)):
        return "every channel at the pixels with h + w even"
    if all(alone[ch][1] for ch in range(c)) and not any(alone[ch][0] for ch in range(c)):
        return "every channel at the pixels with h + w odd"
    if both and all(not any(alone[ch]) for ch in range(c) if ch not in both):
        return "channel" + ("s " if len(both) > 1 else " ") + _ranges(both)
    return "; ".join(
        f"channel {ch} at the pixels with h + w {'even' if p == 0 else 'odd'}"
        for ch in range(c)
        for p in (0, 1)
        if alone[ch][p]
    )


def _ranges(values: list[int]) -> str:
    parts, start = [], values[0]
    for a, b in zip(values, values[1:] + [None]):
        if b != a + 1:
            parts.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ", ".join(parts)


def _untouched_entries(spec: FlowSpec, diags: Collector) -> None:
    """W004, once per piece between reshapes (see the definition above)."""
    for run, end in _pieces(spec):
        c, h, w = run[0].in_shape
        weight = ((h * w + 1) // 2, h * w // 2)  # pixels of even and of odd parity
        alone: Alone = [[True, weight[1] > 0] for _ in range(c)]
        first: LayerIR | None = None
        left = _count(alone, weight)
        for layer in run:
            alone = _alone_after(layer, alone)
            now = _count(alone, weight)
            if first is None and now < left:
                first = layer
            left = now
            if left == 0:  # every entry is touched, and stays so
                break
        if first is None or left == 0:
            continue
        total = c * h * w
        masks = {layer.args.get("mask") for layer in run if "flip" in layer.args}
        where = f" of level {first.level}" if first.level is not None else ""
        stop = f"`{end.path}`" if end is not None else "the prior"
        if masks == {"checkerboard"}:
            help_ = (
                "write `flip=true` on every other checkerboard coupling, so that the next "
                "one transforms the pixels this one keeps"
            )
        else:
            help_ = (
                "write `flip=true` on every other coupling, so that the next one "
                "transforms the other half, or mix the channels in between with an "
                "`invconv` or a `permute`"
            )
        diags.warning(
            codes.W_UNMIXED,
            f"{100 * left / total:.0f}% of the {_fmt((c, h, w))} entries{where} "
            f"({left} of {total}) pass unchanged from `{run[0].path}` to {stop}: no coupling "
            "transforms them and no layer mixes them with the others",
            first.span,
            notes=[*_notes(first), f"untouched: {_describe(alone)}"],
            help=help_,
        )


def _count(alone: Alone, weight: tuple[int, int]) -> int:
    return sum(weight[p] for row in alone for p, a in enumerate(row) if a)
