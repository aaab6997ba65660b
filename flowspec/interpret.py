"""The statement interpreter: a flow's body run into a flat list of layer instances.

:class:`FlowBuilder` runs the statements of a flow (and of the flows it extends) with
their scopes: ``let``, block calls, ``for`` / ``if`` / ``x N``, ``level`` and ``step``
groups, layers, ``input``, ``prior``, ``condition``, ``expect`` and ``train``. Each layer
gets its validated arguments, its span and its trace of instantiations; insert rules are
collected here and applied afterwards (:mod:`flowspec.placement`). A condition's
``encoder=flow(NAME)`` resolves another flow through the ``resolve_flow`` it is given,
with the flows already being resolved as encoders, so a flow that conditions itself is
found without any state outside the call.

It is longer than most modules because it is one class: every statement reads and extends
the same builder (layers, conditions, counters, the work budget).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import ast
from .arguments import validate_args
from .errors import Abort, Collector, Span, did_you_mean
from .evaluate import EncoderCall, FlowCall, Scope, Word, evaluate, expect_int, type_name
from .ir import ConditionIR, EncoderIR, FlowSpec, LayerIR, Origin, PriorIR, Setting
from .kinds import DEFAULT_VARIANT, ENCODERS, KINDS, PRIORS, head_keys
from .loader import ModuleEnv
from .values import bind_params, no_encoder_call, plain, plain_override

__all__ = [
    "MAX_CALL_DEPTH",
    "MAX_LAYERS",
    "MAX_REPEAT",
    "MAX_WORK",
    "FlowBuilder",
    "InsertRule",
    "ResolveFlow",
]

MAX_LAYERS = 20_000
MAX_REPEAT = 10_000
#: Statements and bodies run while expanding one flow: nested loops multiply, and even
#: empty ones must not run for hours.
MAX_WORK = 100_000
MAX_CALL_DEPTH = 32  # blocks calling blocks calling blocks ...

#: Resolves the flow that ``encoder=flow(NAME)`` names: its module, its name, the overrides
#: its arguments make, the diagnostics, and the (file, flow) keys of the flows being
#: resolved as encoders, outermost first. Its IR, or None after reporting errors.
ResolveFlow = Callable[
    [ModuleEnv, str, dict[str, Any], Collector, tuple[tuple[str, str], ...]], FlowSpec | None
]


@dataclass
class _Ctx:
    env: ModuleEnv
    scope: Scope
    trace: list[Origin]
    mode: str  # "flow" builds layers; "extend" only adjusts a parent; "block" inside blocks
    level: int | None = None
    step: int | None = None
    calls: tuple[str, ...] = ()

    def with_(self, **kw: Any) -> _Ctx:
        new = object.__new__(_Ctx)  # no __init__: this runs for every body of every loop
        new.__dict__ = {**self.__dict__, **kw}
        return new


@dataclass
class InsertRule:
    """``insert LAYER before|after KIND [in level A..B]``, kept until the flow has run."""

    layer: LayerIR
    place: str
    kind: str
    variant: str | None
    levels: tuple[int, int] | None
    span: Span
    kind_span: Span


class FlowBuilder:
    """What the statements of one flow (and of those it extends) build: layers in order,
    input, prior, conditions, expected latent, train settings and pending insert rules."""

    def __init__(
        self,
        diags: Collector,
        resolve_flow: ResolveFlow,
        encoders: tuple[tuple[str, str], ...] = (),
    ):
        self.diags = diags
        self.resolve_flow = resolve_flow
        self.encoders = encoders  # the flows being resolved as encoders, outermost first
        self.layers: list[LayerIR] = []
        self.input: tuple[int, int, int] | None = None
        self.input_span: Span | None = None
        self.prior = PriorIR()
        self.conditions: dict[str, ConditionIR] = {}
        self.expect: tuple[int, int, int] | None = None
        self.expect_span: Span | None = None
        self.train: dict[str, Setting] = {}
        self.inserts: list[InsertRule] = []
        self.n_levels = 0
        self.n_steps: dict[int | None, int] = {}
        # head -> variant -> key; the registry does not change while a flow resolves
        self.heads = head_keys()
        self.work = 0
        self.stopped = False  # a limit was hit: abandon the whole flow, report it once

    def _stop(self, message: str, span: Span) -> None:
        self.diags.error(
            "E170",
            message,
            span,
            help="check the repeat counts and loop ranges (nested loops multiply)",
        )
        self.stopped = True
        raise Abort

    def run_flow(
        self, env: ModuleEnv, flow: ast.FlowDef, values: dict[str, Any], *, extending: bool
    ) -> None:
        """Run one flow of an ``extends`` chain (parent first) with its parameters' values;
        ``extending``: a child, which may only adjust what its parents built."""
        ctx = _Ctx(
            env=env, scope=env.scope(**values), trace=[], mode="extend" if extending else "flow"
        )
        self.run(flow.body, ctx)

    # -- statements
    def run(self, body: ast.Body, ctx: _Ctx) -> None:
        scope = ctx.scope.child()
        ctx = ctx.with_(scope=scope)
        self.work += 1
        for stmt in body.stmts:
            self.work += 1
            if self.work > MAX_WORK:
                self._stop(f"the flow takes more than {MAX_WORK} statements to expand", stmt.span)
            try:
                self.stmt(stmt, ctx)
            except Abort:
                if self.stopped:
                    raise
                continue
            if len(self.layers) > MAX_LAYERS:
                self._stop(f"the flow has more than {MAX_LAYERS} layers", stmt.span)

    def stmt(self, s: ast.Stmt, ctx: _Ctx) -> None:
        if isinstance(s, ast.Let):
            ctx.scope.local[s.name] = evaluate(s.value, ctx.scope, self.diags, words=True)
        elif isinstance(s, ast.Layer):
            self._only_in_body(s, ctx, "layers")
            self.layers.append(self.layer(s, ctx))
        elif isinstance(s, ast.Call):
            self._only_in_body(s, ctx, "block calls")
            self.call(s, ctx)
        elif isinstance(s, ast.For):
            self._loop(s, ctx)
        elif isinstance(s, ast.If):
            self._branch(s, ctx)
        elif isinstance(s, ast.Group):
            self._only_in_body(s, ctx, f"`{s.kind}` groups")
            self.group(s, ctx)
        elif isinstance(s, ast.Insert):
            self.insert(s, ctx)
        elif isinstance(s, ast.Input):
            self._only_in_flow(s, ctx, "input")
            self._input(s, ctx)
        elif isinstance(s, ast.Prior):
            self._only_in_flow(s, ctx, "prior")
            self._prior(s, ctx)
        elif isinstance(s, ast.Condition):
            self._only_in_flow(s, ctx, "condition")
            self.condition(s, ctx)
        elif isinstance(s, ast.Expect):
            self._only_in_flow(s, ctx, "expect")
            self.expect = self.shape(s.shape, ctx)
            self.expect_span = s.span
        elif isinstance(s, ast.Train):
            self._only_in_flow(s, ctx, "train")
            for setting in s.settings:
                self.train[setting.name] = self.setting(setting, ctx)
        else:
            raise TypeError(s)

    def _loop(self, s: ast.For, ctx: _Ctx) -> None:
        d = self.diags
        lo = expect_int(s.lo, ctx.scope, d, "a range bound")
        hi = expect_int(s.hi, ctx.scope, d, "a range bound")
        if hi - lo + 1 > MAX_REPEAT:
            d.error("E170", f"the loop runs {hi - lo + 1} times; at most {MAX_REPEAT}", s.span)
            raise Abort
        for i in range(lo, hi + 1):
            self.run(s.body, ctx.with_(scope=ctx.scope.child(**{s.var: i})))

    def _branch(self, s: ast.If, ctx: _Ctx) -> None:
        cond = evaluate(s.cond, ctx.scope, self.diags)
        if not isinstance(cond, bool):
            self.diags.error(
                "E121",
                f"`if` needs true or false, got {type_name(cond)}",
                s.cond.span,
                help="compare with ==, <, ... to get true or false",
            )
            raise Abort
        branch = s.then if cond else s.orelse
        if isinstance(branch, ast.If):
            self.stmt(branch, ctx)
        elif branch is not None:
            self.run(branch, ctx)

    def _input(self, s: ast.Input, ctx: _Ctx) -> None:
        if self.input is not None and ctx.mode == "flow":
            self.diags.error("E151", "the flow declares its input twice", s.span)
            raise Abort
        self.input_span = s.span
        self.input = self.shape(s.shape, ctx)

    def _prior(self, s: ast.Prior, ctx: _Ctx) -> None:
        """The prior line; a flow declares one, though a flow that extends it may replace it."""
        if (
            self.prior.span is not None
            and ctx.mode == "flow"
            and self.prior.span.file == s.span.file
        ):
            self.diags.error(
                "E152",
                "the flow declares its prior twice",
                s.span,
                notes=[f"the first is at {self.prior.span.short()}"],
                help="keep one `prior` line (a flow that extends this one may replace it)",
            )
            raise Abort
        self.prior = self.prior_stmt(s, ctx)

    def _only_in_body(self, s: ast.Node, ctx: _Ctx, what: str) -> None:
        if ctx.mode == "extend":
            self.diags.error(
                "E402",
                f"a flow that extends another cannot add {what}",
                s.span,
                help="use `insert LAYER before|after KIND` to change the parent's layers",
            )
            raise Abort

    def _only_in_flow(self, s: ast.Node, ctx: _Ctx, what: str) -> None:
        if ctx.mode == "block":
            self.diags.error("E153", f"`{what}` belongs in a flow, not in a block", s.span)
            raise Abort

    def _origin(self, text: str, span: Span, ctx: _Ctx) -> Origin:
        where = f" (level {ctx.level})" if ctx.level is not None else ""
        return Origin(text=f"{text}, instantiated at {span.short()}{where}", span=span)

    def call(self, s: ast.Call, ctx: _Ctx) -> None:
        env, block = ctx.env.find(s.ns, s.name, "block", s.span, self.diags)
        key = f"{env.file}:{block.name}"
        if key in ctx.calls:
            self.diags.error(
                "E160",
                f"block `{block.name}` calls itself",
                s.span,
                help="blocks cannot recurse; repeat with `x N` or `for`",
            )
            raise Abort
        if len(ctx.calls) >= MAX_CALL_DEPTH:
            self.diags.error(
                "E162",
                f"block calls nest more than {MAX_CALL_DEPTH} deep",
                s.span,
                help="call fewer blocks from blocks",
            )
            raise Abort
        values = bind_params(
            block.params,
            s.args,
            env.scope(),
            ctx.scope,
            self.diags,
            what=f"block `{block.name}`",
            call_span=s.span,
        )
        origin = self._origin(f"in block `{block.name}`", s.span, ctx)
        inner = ctx.with_(
            env=env,
            scope=env.scope(**values),
            trace=ctx.trace + [origin],
            mode="block",
            calls=ctx.calls + (key,),
        )
        self.run(block.body, inner)

    def group(self, s: ast.Group, ctx: _Ctx) -> None:
        d = self.diags
        n = 1
        if s.repeat is not None:
            n = expect_int(s.repeat, ctx.scope, d, "a repeat count", minimum=0)
            if n > MAX_REPEAT:
                d.error("E170", f"`x {n}` repeats too often; at most {MAX_REPEAT}", s.repeat.span)
                raise Abort
        for _ in range(n):
            if s.kind == "level":
                if ctx.level is not None:
                    d.error(
                        "E152",
                        "levels cannot nest",
                        s.span,
                        help="close the outer `level { }` first",
                    )
                    raise Abort
                self.n_levels += 1
                self.run(s.body, ctx.with_(level=self.n_levels, step=None))
            else:
                if ctx.step is not None:
                    d.error("E152", "steps cannot nest", s.span)
                    raise Abort
                k = self.n_steps.get(ctx.level, 0) + 1
                self.n_steps[ctx.level] = k
                self.run(s.body, ctx.with_(step=k))

    def shape(self, s: ast.Shape, ctx: _Ctx) -> tuple[int, int, int]:
        dims = [
            expect_int(e, ctx.scope, self.diags, "a shape dimension", minimum=1) for e in s.dims
        ]
        if len(dims) != 3:
            self.diags.error(
                "E006",
                f"a shape has 3 dimensions CxHxW, got {len(dims)}",
                s.span,
                help="write for example 1x32x32",
            )
            raise Abort
        return (dims[0], dims[1], dims[2])

    # -- layers
    def _kwargs(self, kwargs: list[ast.KwArg], ctx: _Ctx) -> tuple[dict, dict[str, Span]]:
        values, spans = {}, {}
        for kw in kwargs:
            if kw.name in values:
                self.diags.error("E111", f"argument `{kw.name}` is given twice", kw.span)
                raise Abort
            values[kw.name] = evaluate(kw.value, ctx.scope, self.diags, words=True)
            spans[kw.name] = kw.span
        return values, spans

    def layer(self, s: ast.Layer, ctx: _Ctx, *, inserted: bool = False) -> LayerIR:
        d = self.diags
        table = self.heads
        if s.name not in table:
            hint = did_you_mean(s.name, list(table))
            env = ctx.env
            if s.name in env.blocks:
                hint = f"`{s.name}` is a block: call it as `{s.name}()`"
            d.error(
                "E104",
                f"unknown layer `{s.name}`",
                s.name_span,
                help=(hint + " " if hint else "layers: " + ", ".join(sorted(table)) + "; ")
                + "a plugin's layer is loaded with --plugin MODULE (`flowspec kinds` lists "
                "what is loaded)",
            )
            raise Abort
        variants = table[s.name]
        words = list(s.words)
        if None in variants:
            key = variants[None]
        else:
            if words and isinstance(words[0], ast.Var) and words[0].ns is None:
                v = words[0].name
                if v not in variants:
                    d.error(
                        "E104",
                        f"unknown {s.name} kind `{v}`",
                        words[0].span,
                        help=did_you_mean(v, [k for k in variants if k])
                        or f"one of: {', '.join(sorted(k for k in variants if k))}",
                    )
                    raise Abort
                key = variants[v]
                words.pop(0)
            elif s.name in DEFAULT_VARIANT:
                key = variants[DEFAULT_VARIANT[s.name]]
            else:
                d.error(
                    "E104",
                    f"`{s.name}` needs a kind: one of "
                    f"{', '.join(sorted(k for k in variants if k))}",
                    s.span,
                    help=f"write for example `{s.name} {min(k for k in variants if k)}`",
                )
                raise Abort
        if words:
            d.error(
                "E114",
                f"unexpected positional argument for `{s.name}`",
                words[0].span,
                help="layer arguments are written name=value",
            )
            raise Abort
        kind = KINDS[key]
        raw, spans = self._kwargs(s.kwargs, ctx)
        args = validate_args(
            kind.Args,
            raw,
            spans,
            s.span,
            d,
            what=f"`{s.name}`",
            notes=[o.text for o in reversed(ctx.trace)],
        )
        return LayerIR(
            path="",
            kind=kind.key,
            args=args,
            span=s.span,
            arg_spans=spans,
            trace=list(ctx.trace),
            level=ctx.level,
            step=ctx.step,
            inserted=inserted,
        )

    def insert(self, s: ast.Insert, ctx: _Ctx) -> None:
        d = self.diags
        layer = self.layer(s.layer, ctx.with_(mode="flow"), inserted=True)
        layer.trace.append(Origin(text=f"inserted by the rule at {s.span.short()}", span=s.span))
        table = self.heads
        if s.kind not in table:
            d.error(
                "E104",
                f"unknown layer kind `{s.kind}` in insert rule",
                s.kind_span,
                help=did_you_mean(s.kind, list(table)),
            )
            raise Abort
        if s.variant is not None and s.variant not in table[s.kind]:
            d.error(
                "E104",
                f"unknown {s.kind} kind `{s.variant}` in insert rule",
                s.kind_span,
                help=did_you_mean(s.variant, [k for k in table[s.kind] if k]),
            )
            raise Abort
        levels = None
        if s.levels is not None:
            levels = (
                expect_int(s.levels[0], ctx.scope, d, "a level number"),
                expect_int(s.levels[1], ctx.scope, d, "a level number"),
            )
        self.inserts.append(
            InsertRule(layer, s.place, s.kind, s.variant, levels, s.span, s.kind_span)
        )

    # -- other statements
    def prior_stmt(self, s: ast.Prior, ctx: _Ctx) -> PriorIR:
        d = self.diags
        if s.name not in PRIORS:
            d.error(
                "E104",
                f"unknown prior `{s.name}`",
                s.span,
                help=did_you_mean(s.name, PRIORS)
                or "priors: "
                + ", ".join(sorted(PRIORS))
                + "; a plugin's prior is loaded with --plugin MODULE",
            )
            raise Abort
        kind = PRIORS[s.name]
        fields = kind.Args.model_fields
        raw, spans = self._kwargs(s.kwargs, ctx)
        for w in s.words:  # a bare word sets a boolean argument: `prior gaussian learned`
            if (
                isinstance(w, ast.Var)
                and w.ns is None
                and w.name in fields
                and fields[w.name].annotation is bool
            ):
                raw[w.name] = True
                spans[w.name] = w.span
            else:
                flags = [n for n, f in fields.items() if f.annotation is bool]
                d.error(
                    "E114",
                    f"unexpected word in `prior {s.name}`",
                    w.span,
                    help=f"its flags: {', '.join(flags)}"
                    if flags
                    else f"`prior {s.name}` takes only name=value arguments",
                )
                raise Abort
        args = validate_args(kind.Args, raw, spans, s.span, d, what=f"`prior {s.name}`")
        learned, on = bool(args.pop("learned", False)), args.pop("on", None)
        return PriorIR(kind=s.name, learned=learned, on=on, args=args, span=s.span)

    def condition(self, s: ast.Condition, ctx: _Ctx) -> None:
        d = self.diags
        default_encoder = {"image": "rrdb", "labels": "convnet", "class": "embedding"}
        if s.ctype not in default_encoder:
            d.error(
                "E104",
                f"unknown condition type `{s.ctype}`",
                s.ctype_span,
                help=did_you_mean(s.ctype, list(default_encoder))
                or "use image CxHxW, labels NxHxW or class N",
            )
            raise Abort
        if s.ctype != "class":
            shape = self.shape(s.shape, ctx)
        elif len(s.shape.dims) != 1:
            d.error(
                "E006",
                "a class condition takes the number of classes, not a shape",
                s.shape.span,
                help=f"write `condition {s.name}: class N`, e.g. class 10",
            )
            raise Abort
        else:  # one integer label per sample: held as N x 1 x 1 (one-hot inside)
            shape = (
                expect_int(s.shape.dims[0], ctx.scope, d, "the number of classes", minimum=2),
                1,
                1,
            )
        raw, spans = self._kwargs(s.kwargs, ctx)
        unknown = [k for k in raw if k != "encoder"]
        if unknown:
            d.error(
                "E105",
                f"unknown argument `{unknown[0]}` for a condition",
                spans[unknown[0]],
                help=did_you_mean(unknown[0], ["encoder"]),
            )
            raise Abort
        enc = raw.get("encoder", Word(default_encoder[s.ctype]))
        if isinstance(enc, FlowCall):
            self._flow_condition(s, shape, enc, spans.get("encoder", s.span), ctx)
            return
        if isinstance(enc, Word):
            enc = EncoderCall(str(enc), {}, {}, spans.get("encoder", s.span))
        if not isinstance(enc, EncoderCall):
            d.error(
                "E121",
                f"encoder must be an encoder like rrdb(blocks=8, features=64), got "
                f"{type_name(enc)}",
                spans.get("encoder", s.span),
            )
            raise Abort
        if enc.name not in ENCODERS:
            d.error(
                "E104",
                f"unknown encoder `{enc.name}`",
                enc.span,
                help=did_you_mean(enc.name, ENCODERS)
                or "encoders: "
                + ", ".join(ENCODERS)
                + "; a plugin's encoder is loaded with --plugin MODULE",
            )
            raise Abort
        args = validate_args(
            ENCODERS[enc.name].Args,
            enc.args,
            enc.arg_spans,
            enc.span,
            d,
            what=f"encoder `{enc.name}`",
        )
        if s.name in self.conditions and ctx.mode != "extend":
            d.error("E110", f"condition `{s.name}` is declared twice", s.span)
            raise Abort
        self.conditions[s.name] = ConditionIR(
            name=s.name,
            type=s.ctype,
            shape=shape,
            encoder=EncoderIR(kind=enc.name, args=args),
            span=s.span,
        )

    def _flow_condition(
        self, s: ast.Condition, shape: tuple[int, int, int], ref: FlowCall, span: Span, ctx: _Ctx
    ) -> None:
        """``encoder=flow(NAME(k=v))``: resolve the named flow (the arguments set its
        parameters, like --set) into the condition's IR; check.py checks it and lines it up
        with the layers that use the condition."""
        d = self.diags
        if s.ctype == "class":
            d.error(
                "E121",
                "a class condition cannot be modelled by a flow",
                span,
                help="flow encoders take `labels NxHxW` or `image CxHxW` conditions",
            )
            raise Abort
        env, target = ctx.env.find(ref.ns, ref.name, "flow", ref.span, d)
        key = (env.file, target.name)
        if key in self.encoders:
            d.error(
                "E161",
                f"flow `{target.name}` conditions itself through encoder=flow(...)",
                ref.span,
            )
            raise Abort
        inner = self.resolve_flow(
            env,
            target.name,
            {k: plain_override(v) for k, v in ref.args.items()},
            d,
            self.encoders + (key,),
        )
        if inner is None:
            d.error(
                "E125",
                f"the flow `{target.name}` of condition `{s.name}` has errors (above)",
                span,
            )
            raise Abort
        if s.name in self.conditions and ctx.mode != "extend":
            d.error("E110", f"condition `{s.name}` is declared twice", s.span)
            raise Abort
        name = f"{ref.ns}.{ref.name}" if ref.ns else ref.name
        args = {"flow": name, **{k: plain(v) for k, v in ref.args.items()}}
        self.conditions[s.name] = ConditionIR(
            name=s.name,
            type=s.ctype,
            shape=shape,
            encoder=EncoderIR(kind="flow", args=args),
            span=s.span,
            flow=inner,
        )

    def setting(self, s: ast.Layer, ctx: _Ctx) -> Setting:
        d = self.diags
        if len(s.words) > 1:
            d.error("E114", f"`{s.name}` takes one value", s.words[1].span)
            raise Abort
        value = evaluate(s.words[0], ctx.scope, d, words=True) if s.words else None
        if s.words:
            no_encoder_call(value, s.words[0].span, d)
        raw, spans = self._kwargs(s.kwargs, ctx)
        for k, v in raw.items():
            no_encoder_call(v, spans[k], d)
        return Setting(
            value=plain(value), options={k: plain(v) for k, v in raw.items()}, span=s.span
        )
