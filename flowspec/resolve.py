"""Resolve a parsed .flow file into the FlowSpec IR.

Resolution evaluates everything the language allows (imports, lets, block calls,
``extends`` with argument overrides, ``for`` / ``if`` / ``x N``, insert rules) into one
flat list of layer instances, each with its stable path (``level2.step07.coupling``),
its validated arguments (defaults filled in from the registry), its span and its trace
of instantiations. Shapes are left to :mod:`flowspec.check`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

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
from .ir import ConditionIR, EncoderIR, FlowSpec, LayerIR, Origin, PriorIR, Setting
from .kinds import DEFAULT_VARIANT, ENCODERS, KINDS, PRIORS, REGISTRIES, heads
from .parse import MAX_INT, parse
from .recipe import validate_settings

#: the language versions a file may declare in its `flowspec X.Y` header
LANGUAGE_VERSIONS = ("0.1", "0.2")
MAX_LAYERS = 20_000
MAX_REPEAT = 10_000
#: Statements and bodies run while expanding one flow: nested loops multiply, and even
#: empty ones must not run for hours.
MAX_WORK = 100_000
MAX_CALL_DEPTH = 32  # blocks calling blocks calling blocks ...
MAX_IMPORT_DEPTH = 32  # files importing files importing files ...


# ---- files --------------------------------------------------------------------------------
@dataclass
class ModuleEnv:
    file: str
    module: ast.Module
    imports: dict[str, ModuleEnv] = field(default_factory=dict)
    lets: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    flows: dict[str, ast.FlowDef] = field(default_factory=dict)

    def scope(self, **local: Any) -> Scope:
        return Scope(dict(local), self.lookup, self.names)

    def lookup(self, ns: str | None, name: str) -> Any:
        env = self if ns is None else self.imports[ns]
        return env.lets[name]

    def names(self, ns: str | None) -> list[str]:
        env = self if ns is None else self.imports.get(ns)
        return list(env.lets) if env else []

    def find(self, ns: str | None, name: str, what: str, span: Span, diags: Collector):
        """Look up a block or flow (``what``), with did-you-mean on failure."""
        if ns is not None and ns not in self.imports:
            diags.error("E107", f"unknown import namespace `{ns}`", span,
                        help=did_you_mean(ns, self.imports) or
                        f'add `import "FILE.flow" as {ns}` at the top of the file')
            raise Abort
        env = self if ns is None else self.imports[ns]
        table = env.blocks if what == "block" else env.flows
        if name in table:
            return env, table[name]
        hint = did_you_mean(name, table)
        if what == "block" and name in env.flows:
            hint = f"`{name}` is a flow; flows are reused with `extends`, blocks are called"
        shown = f"{ns}.{name}" if ns else name
        diags.error("E102" if what == "block" else "E103", f"unknown {what} `{shown}`", span,
                    help=hint)
        raise Abort


class Loader:
    """Loads a file and its imports once each; reports missing files and cycles."""

    def __init__(self, diags: Collector):
        self.diags = diags
        self.envs: dict[str, ModuleEnv] = {}
        self.loading: list[str] = []

    def load_text(self, text: str, file: str) -> ModuleEnv:
        module = parse(text, file)
        env = ModuleEnv(file, module)
        key = os.path.abspath(file) if os.path.exists(file) else file
        self.envs[key] = env
        self.loading.append(key)
        try:
            self._fill(env)
        finally:
            self.loading.pop()
        return env

    def load_file(self, path: str) -> ModuleEnv:
        with open(path, encoding="utf-8") as f:
            return self.load_text(f.read(), path)

    def _fill(self, env: ModuleEnv) -> None:
        version = env.module.version
        if version is not None and version not in LANGUAGE_VERSIONS:
            line = env.module.version_line
            self.diags.error("E011", f"the file is written for flowspec {version}, but this "
                             f"flowspec reads versions {', '.join(LANGUAGE_VERSIONS)}",
                             Span(file=env.file, line=line, column=1, end_line=line,
                                  end_column=10 + len(version)),
                             help=f"write `flowspec {LANGUAGE_VERSIONS[-1]}` (or upgrade "
                             "flowspec if the file needs a newer language)")
        base = os.path.dirname(env.file)
        for item in env.module.items:
            if isinstance(item, ast.Import):
                self._import(env, item, base)
            elif isinstance(item, ast.Let):
                self._define(env, item.name, item.span, env.lets)
                try:
                    env.lets[item.name] = evaluate(item.value, env.scope(), self.diags, words=True)
                except Abort:
                    env.lets[item.name] = 0  # keep going; the error is recorded
            elif isinstance(item, ast.BlockDef):
                self._define(env, item.name, item.span, env.blocks)
                env.blocks[item.name] = item
            elif isinstance(item, ast.FlowDef):
                self._define(env, item.name, item.span, env.flows)
                env.flows[item.name] = item

    def _define(self, env: ModuleEnv, name: str, span: Span, table: dict) -> None:
        if name in table:
            self.diags.error("E110", f"`{name}` is defined twice in this file", span)

    def _import(self, env: ModuleEnv, item: ast.Import, base: str) -> None:
        path = os.path.normpath(os.path.join(base, item.path))
        key = os.path.abspath(path)
        if item.alias in env.imports:
            self.diags.error("E110", f"namespace `{item.alias}` is imported twice", item.span)
            return
        if len(self.loading) >= MAX_IMPORT_DEPTH:
            self.diags.error("E133", f"imports nest more than {MAX_IMPORT_DEPTH} files deep",
                             item.path_span)
            return
        if key in self.loading:
            chain = [os.path.relpath(k) for k in self.loading[self.loading.index(key):]]
            self.diags.error("E132", "import cycle: " + " -> ".join(chain + [chain[0]]),
                             item.path_span, help="move what both files need into a third file")
            return
        if key in self.envs:
            env.imports[item.alias] = self.envs[key]
            return
        if not os.path.isfile(path):
            self.diags.error("E131", f"cannot import `{item.path}`: no such file ({path})",
                             item.path_span, help="import paths are relative to the importing "
                             "file")
            return
        try:
            env.imports[item.alias] = self.load_file(path)
        except OSError as e:
            self.diags.error("E131", f"cannot read `{item.path}`: {e.strerror}", item.path_span)
        except UnicodeDecodeError:
            self.diags.error("E131", f"cannot read `{item.path}`: it is not UTF-8 text",
                             item.path_span, help="import .flow files only")


# ---- flows --------------------------------------------------------------------------------
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
class _Pending:
    layer: LayerIR
    place: str
    kind: str
    variant: str | None
    levels: tuple[int, int] | None
    span: Span
    kind_span: Span


class FlowBuilder:
    def __init__(self, diags: Collector):
        self.diags = diags
        self.layers: list[LayerIR] = []
        self.input: tuple[int, int, int] | None = None
        self.input_span: Span | None = None
        self.prior = PriorIR()
        self.conditions: dict[str, ConditionIR] = {}
        self.expect: tuple[int, int, int] | None = None
        self.expect_span: Span | None = None
        self.train: dict[str, Setting] = {}
        self.inserts: list[_Pending] = []
        self.n_levels = 0
        self.n_steps: dict[int | None, int] = {}
        self.heads = heads()  # the registry does not change while a flow resolves
        self.work = 0
        self.stopped = False  # a limit was hit: abandon the whole flow, report it once

    def _stop(self, message: str, span: Span) -> None:
        self.diags.error("E170", message, span, help="check the repeat counts and loop ranges "
                         "(nested loops multiply)")
        self.stopped = True
        raise Abort

    # -- statements
    def run(self, body: ast.Body, ctx: _Ctx) -> None:
        scope = ctx.scope.child()
        ctx = ctx.with_(scope=scope)
        self.work += 1
        for stmt in body.stmts:
            self.work += 1
            if self.work > MAX_WORK:
                self._stop(f"the flow takes more than {MAX_WORK} statements to expand",
                           stmt.span)
            try:
                self.stmt(stmt, ctx)
            except Abort:
                if self.stopped:
                    raise
                continue
            if len(self.layers) > MAX_LAYERS:
                self._stop(f"the flow has more than {MAX_LAYERS} layers", stmt.span)

    def stmt(self, s: ast.Stmt, ctx: _Ctx) -> None:
        d = self.diags
        if isinstance(s, ast.Let):
            ctx.scope.local[s.name] = evaluate(s.value, ctx.scope, d, words=True)
        elif isinstance(s, ast.Layer):
            self._only_in_body(s, ctx, "layers")
            self.layers.append(self.layer(s, ctx))
        elif isinstance(s, ast.Call):
            self._only_in_body(s, ctx, "block calls")
            self.call(s, ctx)
        elif isinstance(s, ast.For):
            lo = expect_int(s.lo, ctx.scope, d, "a range bound")
            hi = expect_int(s.hi, ctx.scope, d, "a range bound")
            if hi - lo + 1 > MAX_REPEAT:
                d.error("E170", f"the loop runs {hi - lo + 1} times; at most {MAX_REPEAT}",
                        s.span)
                raise Abort
            for i in range(lo, hi + 1):
                self.run(s.body, ctx.with_(scope=ctx.scope.child(**{s.var: i})))
        elif isinstance(s, ast.If):
            cond = evaluate(s.cond, ctx.scope, d)
            if not isinstance(cond, bool):
                d.error("E121", f"`if` needs true or false, got {type_name(cond)}", s.cond.span,
                        help="compare with ==, <, ... to get true or false")
                raise Abort
            branch = s.then if cond else s.orelse
            if isinstance(branch, ast.If):
                self.stmt(branch, ctx)
            elif branch is not None:
                self.run(branch, ctx)
        elif isinstance(s, ast.Group):
            self._only_in_body(s, ctx, f"`{s.kind}` groups")
            self.group(s, ctx)
        elif isinstance(s, ast.Insert):
            self.insert(s, ctx)
        elif isinstance(s, ast.Input):
            self._only_in_flow(s, ctx, "input")
            if self.input is not None and ctx.mode == "flow":
                d.error("E151", "the flow declares its input twice", s.span)
                raise Abort
            self.input_span = s.span
            self.input = self.shape(s.shape, ctx)
        elif isinstance(s, ast.Prior):
            self._only_in_flow(s, ctx, "prior")
            if self.prior.span is not None and ctx.mode == "flow" \
                    and self.prior.span.file == s.span.file:
                self.diags.error("E152", "the flow declares its prior twice", s.span,
                                 notes=[f"the first is at {self.prior.span.short()}"],
                                 help="keep one `prior` line (a flow that extends this one "
                                 "may replace it)")
                raise Abort
            self.prior = self.prior_stmt(s, ctx)
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

    def _only_in_body(self, s: ast.Node, ctx: _Ctx, what: str) -> None:
        if ctx.mode == "extend":
            self.diags.error("E402", f"a flow that extends another cannot add {what}", s.span,
                             help="use `insert LAYER before|after KIND` to change the parent's "
                             "layers")
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
            self.diags.error("E160", f"block `{block.name}` calls itself", s.span,
                             help="blocks cannot recurse; repeat with `x N` or `for`")
            raise Abort
        if len(ctx.calls) >= MAX_CALL_DEPTH:
            self.diags.error("E162", f"block calls nest more than {MAX_CALL_DEPTH} deep", s.span,
                             help="call fewer blocks from blocks")
            raise Abort
        values = bind_params(block.params, s.args, env.scope(), ctx.scope, self.diags,
                             what=f"block `{block.name}`", call_span=s.span)
        origin = self._origin(f"in block `{block.name}`", s.span, ctx)
        inner = ctx.with_(env=env, scope=env.scope(**values), trace=ctx.trace + [origin],
                          mode="block", calls=ctx.calls + (key,))
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
                    d.error("E152", "levels cannot nest", s.span,
                            help="close the outer `level { }` first")
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
        dims = [expect_int(e, ctx.scope, self.diags, "a shape dimension", minimum=1)
                for e in s.dims]
        if len(dims) != 3:
            self.diags.error("E006", f"a shape has 3 dimensions CxHxW, got {len(dims)}", s.span,
                             help="write for example 1x32x32")
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
            d.error("E104", f"unknown layer `{s.name}`", s.name_span, help=(
                hint + " " if hint else "layers: " + ", ".join(sorted(table)) + "; ")
                + "a plugin's layer is loaded with --plugin MODULE (`flowspec kinds` lists "
                "what is loaded)")
            raise Abort
        variants = table[s.name]
        words = list(s.words)
        if None in variants:
            kind = variants[None]
        else:
            if words and isinstance(words[0], ast.Var) and words[0].ns is None:
                v = words[0].name
                if v not in variants:
                    d.error("E104", f"unknown {s.name} kind `{v}`", words[0].span,
                            help=did_you_mean(v, [k for k in variants if k]) or
                            f"one of: {', '.join(sorted(k for k in variants if k))}")
                    raise Abort
                kind = variants[v]
                words.pop(0)
            elif s.name in DEFAULT_VARIANT:
                kind = variants[DEFAULT_VARIANT[s.name]]
            else:
                d.error("E104", f"`{s.name}` needs a kind: one of "
                        f"{', '.join(sorted(k for k in variants if k))}", s.span,
                        help=f"write for example `{s.name} {min(k for k in variants if k)}`")
                raise Abort
        if words:
            d.error("E114", f"unexpected positional argument for `{s.name}`", words[0].span,
                    help="layer arguments are written name=value")
            raise Abort
        raw, spans = self._kwargs(s.kwargs, ctx)
        args = validate_args(kind.Args, raw, spans, s.span, d, what=f"`{s.name}`",
                             notes=[o.text for o in reversed(ctx.trace)])
        return LayerIR(path="", kind=kind.key, args=args, span=s.span, arg_spans=spans,
                       trace=list(ctx.trace), level=ctx.level, step=ctx.step, inserted=inserted)

    def insert(self, s: ast.Insert, ctx: _Ctx) -> None:
        d = self.diags
        layer = self.layer(s.layer, ctx.with_(mode="flow"), inserted=True)
        layer.trace.append(Origin(text=f"inserted by the rule at {s.span.short()}", span=s.span))
        table = self.heads
        if s.kind not in table:
            d.error("E104", f"unknown layer kind `{s.kind}` in insert rule", s.kind_span,
                    help=did_you_mean(s.kind, list(table)))
            raise Abort
        if s.variant is not None and s.variant not in table[s.kind]:
            d.error("E104", f"unknown {s.kind} kind `{s.variant}` in insert rule", s.kind_span,
                    help=did_you_mean(s.variant, [k for k in table[s.kind] if k]))
            raise Abort
        levels = None
        if s.levels is not None:
            levels = (expect_int(s.levels[0], ctx.scope, d, "a level number"),
                      expect_int(s.levels[1], ctx.scope, d, "a level number"))
        self.inserts.append(_Pending(layer, s.place, s.kind, s.variant, levels, s.span,
                                     s.kind_span))

    def apply_inserts(self) -> None:
        after_of: dict[int, int] = {}  # id(inserted layer) -> id(anchor) for `after` rules
        for rule in self.inserts:
            key = rule.kind if rule.variant is None else f"{rule.kind}.{rule.variant}"
            out: list[LayerIR] = []
            matched = 0
            i = 0
            layers = self.layers
            hits = [(cur.kind == key or cur.kind.split(".")[0] == key) and (
                rule.levels is None or (cur.level is not None and
                                        rule.levels[0] <= cur.level <= rule.levels[1]))
                for cur in layers]
            if len(layers) + sum(hits) > MAX_LAYERS:
                self.diags.error("E170", f"with the insert rule at {rule.span.short()} the flow "
                                 f"would have more than {MAX_LAYERS} layers", rule.kind_span,
                                 help="restrict the rule with `in level A..B`, or check the "
                                 "repeat counts")
                return
            while i < len(layers):
                cur = layers[i]
                hit = hits[i]
                i += 1
                if not hit:
                    out.append(cur)
                    continue
                matched += 1
                src = rule.layer  # a copy whose containers are its own (spans are shared)
                new = src.model_copy(update={"args": dict(src.args), "trace": list(src.trace),
                                             "arg_spans": dict(src.arg_spans)})
                new.level, new.step = cur.level, cur.step
                if rule.place == "before":
                    out.extend([new, cur])
                    continue
                out.append(cur)
                # after the anchor and after what earlier rules put after this same anchor
                while i < len(layers) and after_of.get(id(layers[i])) == id(cur):
                    out.append(layers[i])
                    i += 1
                out.append(new)
                after_of[id(new)] = id(cur)
            if matched == 0:
                self._no_match(rule, key)
            self.layers = out

    def _no_match(self, rule: _Pending, key: str) -> None:
        shown = key.replace(".", " ")
        where = "" if rule.levels is None else f" in levels {rule.levels[0]}..{rule.levels[1]}"
        levels = sorted({x.level for x in self.layers if x.level is not None and (
            x.kind == key or x.kind.split(".")[0] == key)})
        present = sorted({x.kind.split(".")[0] for x in self.layers})
        if levels:
            help_ = f"`{shown}` layers are in levels {', '.join(map(str, levels))}"
        else:
            help_ = did_you_mean(rule.kind, present) or (
                "the flow has: " + ", ".join(present) if present else None)
        self.diags.error("E401", f"insert rule matches nothing: no `{shown}` layer{where}",
                         rule.kind_span, help=help_)

    def assign_paths(self) -> None:
        """Stable names: a container's own layers are numbered first, so an insert rule
        never renames a layer that was already there."""
        width = max([2] + [len(str(n)) for n in self.n_steps.values()])
        bases = []
        for layer in self.layers:
            prefix = ""
            if layer.level is not None:
                prefix += f"level{layer.level}."
            if layer.step is not None:
                prefix += f"step{layer.step:0{width}d}."
            bases.append(prefix + KINDS[layer.kind].head)
        used: dict[str, int] = {}
        for inserted in (False, True):
            for layer, base in zip(self.layers, bases):
                if layer.inserted == inserted:
                    used[base] = used.get(base, 0) + 1
                    layer.path = base if used[base] == 1 else f"{base}_{used[base]}"

    # -- other statements
    def prior_stmt(self, s: ast.Prior, ctx: _Ctx) -> PriorIR:
        d = self.diags
        if s.name not in PRIORS:
            d.error("E104", f"unknown prior `{s.name}`", s.span,
                    help=did_you_mean(s.name, PRIORS) or "priors: " + ", ".join(sorted(PRIORS))
                    + "; a plugin's prior is loaded with --plugin MODULE")
            raise Abort
        kind = PRIORS[s.name]
        fields = kind.Args.model_fields
        raw, spans = self._kwargs(s.kwargs, ctx)
        for w in s.words:  # a bare word sets a boolean argument: `prior gaussian learned`
            if isinstance(w, ast.Var) and w.ns is None and w.name in fields \
                    and fields[w.name].annotation is bool:
                raw[w.name] = True
                spans[w.name] = w.span
            else:
                flags = [n for n, f in fields.items() if f.annotation is bool]
                d.error("E114", f"unexpected word in `prior {s.name}`", w.span,
                        help=f"its flags: {', '.join(flags)}" if flags else
                        f"`prior {s.name}` takes only name=value arguments")
                raise Abort
        args = validate_args(kind.Args, raw, spans, s.span, d, what=f"`prior {s.name}`")
        learned, on = bool(args.pop("learned", False)), args.pop("on", None)
        return PriorIR(kind=s.name, learned=learned, on=on, args=args, span=s.span)

    def condition(self, s: ast.Condition, ctx: _Ctx) -> None:
        d = self.diags
        default_encoder = {"image": "rrdb", "labels": "convnet", "class": "embedding"}
        if s.ctype not in default_encoder:
            d.error("E104", f"unknown condition type `{s.ctype}`", s.ctype_span,
                    help=did_you_mean(s.ctype, list(default_encoder))
                    or "use image CxHxW, labels NxHxW or class N")
            raise Abort
        if s.ctype != "class":
            shape = self.shape(s.shape, ctx)
        elif len(s.shape.dims) != 1:
            d.error("E006", "a class condition takes the number of classes, not a shape",
                    s.shape.span, help=f"write `condition {s.name}: class N`, e.g. class 10")
            raise Abort
        else:  # one integer label per sample: held as N x 1 x 1 (one-hot inside)
            shape = (expect_int(s.shape.dims[0], ctx.scope, d, "the number of classes",
                                minimum=2), 1, 1)
        raw, spans = self._kwargs(s.kwargs, ctx)
        unknown = [k for k in raw if k != "encoder"]
        if unknown:
            d.error("E105", f"unknown argument `{unknown[0]}` for a condition", spans[unknown[0]],
                    help=did_you_mean(unknown[0], ["encoder"]))
            raise Abort
        enc = raw.get("encoder", Word(default_encoder[s.ctype]))
        if isinstance(enc, FlowCall):
            self._flow_condition(s, shape, enc, spans.get("encoder", s.span), ctx)
            return
        if isinstance(enc, Word):
            enc = EncoderCall(str(enc), {}, {}, spans.get("encoder", s.span))
        if not isinstance(enc, EncoderCall):
            d.error("E121", f"encoder must be an encoder like rrdb(blocks=8, features=64), got "
                    f"{type_name(enc)}", spans.get("encoder", s.span))
            raise Abort
        if enc.name not in ENCODERS:
            d.error("E104", f"unknown encoder `{enc.name}`", enc.span,
                    help=did_you_mean(enc.name, ENCODERS) or "encoders: " + ", ".join(ENCODERS)
                    + "; a plugin's encoder is loaded with --plugin MODULE")
            raise Abort
        args = validate_args(ENCODERS[enc.name].Args, enc.args, enc.arg_spans, enc.span, d,
                             what=f"encoder `{enc.name}`")
        if s.name in self.conditions and ctx.mode != "extend":
            d.error("E110", f"condition `{s.name}` is declared twice", s.span)
            raise Abort
        self.conditions[s.name] = ConditionIR(name=s.name, type=s.ctype, shape=shape,
                                              encoder=EncoderIR(kind=enc.name, args=args),
                                              span=s.span)

    def _flow_condition(self, s: ast.Condition, shape: tuple[int, int, int], ref: FlowCall,
                        span: Span, ctx: _Ctx) -> None:
        """``encoder=flow(NAME(k=v))``: resolve the named flow (the arguments set its
        parameters, like --set) into the condition's IR; check.py checks it and lines it up
        with the layers that use the condition."""
        d = self.diags
        if s.ctype == "class":
            d.error("E121", "a class condition cannot be modelled by a flow", span,
                    help="flow encoders take `labels NxHxW` or `image CxHxW` conditions")
            raise Abort
        env, target = ctx.env.find(ref.ns, ref.name, "flow", ref.span, d)
        key = (env.file, target.name)
        if key in _FLOW_STACK:
            d.error("E161", f"flow `{target.name}` conditions itself through "
                    "encoder=flow(...)", ref.span)
            raise Abort
        _FLOW_STACK.append(key)
        try:
            inner = resolve(env, target.name, {k: _plain_override(v) for k, v in
                                               ref.args.items()}, d)
        finally:
            _FLOW_STACK.pop()
        if inner is None:
            d.error("E125", f"the flow `{target.name}` of condition `{s.name}` has errors "
                    "(above)", span)
            raise Abort
        if s.name in self.conditions and ctx.mode != "extend":
            d.error("E110", f"condition `{s.name}` is declared twice", s.span)
            raise Abort
        name = f"{ref.ns}.{ref.name}" if ref.ns else ref.name
        args = {"flow": name, **{k: _plain(v) for k, v in ref.args.items()}}
        self.conditions[s.name] = ConditionIR(name=s.name, type=s.ctype, shape=shape,
                                              encoder=EncoderIR(kind="flow", args=args),
                                              span=s.span, flow=inner)

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
        return Setting(value=_plain(value), options={k: _plain(v) for k, v in raw.items()},
                       span=s.span)


def _plain(v: Any) -> Any:
    return str(v) if isinstance(v, Word) else v


def _plain_override(v: Any) -> Any:
    """A flow reference's argument as an override of the named flow's parameter."""
    return v if isinstance(v, (bool, int, float, Word)) or not isinstance(v, str) else Word(v)


#: the flows being resolved as conditions' encoders (a flow that conditions itself is E161)
_FLOW_STACK: list[tuple[str, str]] = []


def no_encoder_call(value: Any, span: Span, diags: Collector) -> None:
    """Encoder calls (``rrdb(...)``) are values only for a condition's ``encoder=``."""
    if isinstance(value, FlowCall):
        diags.error("E121", f"`flow({value.name})` is a flow reference; it can only be a "
                    "condition's encoder", span,
                    help="write it as `condition NAME: labels NxHxW encoder=flow(NAME)`")
        raise Abort
    if isinstance(value, EncoderCall):
        diags.error("E121", f"`{value.name}(...)` is an encoder call; it can only be a "
                    "condition's encoder", span,
                    help="write it as `condition NAME: image CxHxW encoder="
                    f"{value.name}(...)`")
        raise Abort


class _Noted:
    """A Collector that adds the same notes to every diagnostic."""

    def __init__(self, diags: Collector, notes: list[str]) -> None:
        self.diags, self.notes = diags, notes

    def error(self, *args: Any, **kw: Any) -> Any:
        kw["notes"] = [*self.notes, *(kw.get("notes") or [])]
        return self.diags.error(*args, **kw)


# Valid argument sets seen before, per Args model: a flow instantiates the same few layer
# statements thousands of times, and pydantic validation dominated resolving them.
_VALID_ARGS: dict[tuple, dict[str, Any]] = {}
_FIELDS: dict[type, dict] = {}


def _registry_of(info: Any) -> str | None:
    extra = info.json_schema_extra
    return extra.get("registry") if isinstance(extra, dict) else None


def _registry_calls(raw: dict[str, Any], spans: dict[str, Span], span: Span, fields: dict,
                    diags: Collector, what: str) -> dict[str, Any]:
    """``net=flowpp(blocks=4)``: a registry argument written as a call becomes ``net`` and
    ``net_args``, the call's arguments checked against the entry's Args."""
    out = dict(raw)
    for name, value in raw.items():
        if not isinstance(value, EncoderCall) or name not in fields:
            continue
        registry = _registry_of(fields[name])
        if registry is None or f"{name}_args" not in fields:
            continue  # pydantic reports the type error
        table = REGISTRIES[registry]
        if value.name not in table:
            diags.error("E122", f"unknown {registry} `{value.name}` for `{name}` of {what}",
                        value.span, help=did_you_mean(value.name, table) or (
                            f"{registry}s: {', '.join(sorted(table))}; a plugin's {registry} "
                            "is loaded with --plugin MODULE"))
            raise Abort
        out[name] = Word(value.name)
        out[f"{name}_args"] = validate_args(table[value.name].Args, value.args,
                                            value.arg_spans, value.span, diags,
                                            what=f"{registry} `{value.name}`")
        spans.setdefault(f"{name}_args", value.span)
    return out


def validate_args(model, raw: dict[str, Any], spans: dict[str, Span], span: Span,
                  diags: Collector, *, what: str, notes: list[str] | None = None
                  ) -> dict[str, Any]:
    """Check ``raw`` against a kind's pydantic Args; every problem becomes a diagnostic
    (with ``notes``: where the statement was instantiated)."""
    diags = _Noted(diags, notes) if notes else diags
    # the type is part of the key: True == 1 and hash alike, but only one is a valid bool
    key = (model, *((k, type(v), v) for k, v in raw.items()))
    try:
        known = _VALID_ARGS.get(key)
    except TypeError:  # an unhashable value: validate it the slow way
        key, known = None, None
    if known is not None:
        return dict(known)
    fields = _FIELDS.get(model)
    if fields is None:
        fields = _FIELDS[model] = model.model_fields
    raw = _registry_calls(raw, spans, span, fields, diags, what)
    clean = {}
    ok = True
    for name, value in raw.items():
        if name not in fields:
            diags.error("E105", f"unknown argument `{name}` for {what}", spans.get(name, span),
                        help=did_you_mean(name, fields) or (
                            "arguments: " + ", ".join(fields) if fields else
                            f"{what} takes no arguments"))
            ok = False
            continue
        ann = fields[name].annotation
        if ann is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        clean[name] = _plain(value)
    if not ok:
        raise Abort
    try:
        valid = model(**clean).model_dump()
    except ValidationError as err:
        for e in err.errors():
            name = str(e["loc"][0]) if e["loc"] else ""
            given = raw.get(name)
            where = spans.get(name, span)
            if e["type"] in ("literal_error", "enum"):
                choices = e.get("ctx", {}).get("expected", "")
                diags.error("E122", f"invalid value {format_value(given)} for `{name}` of "
                            f"{what}", where, help=f"expected {choices}".replace("'", "")
                            if not getattr(given, "hint", None) else given.hint)
            elif e["type"] == "value_error":  # an Args validator said why (plugins too)
                why = str(e.get("ctx", {}).get("error", e["msg"]))
                diags.error("E122", f"invalid value {format_value(given)} for `{name}` of "
                            f"{what}: {why}", where)
            elif e["type"] in ("greater_than_equal", "less_than_equal", "greater_than",
                               "less_than"):
                diags.error("E122", f"`{name}` of {what} is out of range: {e['msg'].lower()}, "
                            f"got {format_value(given)}", where)
            else:
                want = fields[name].annotation if name in fields else None
                want_s = {int: "an integer", float: "a number", bool: "true or false",
                          str: "a name or string"}.get(want, str(want).replace("typing.", ""))
                diags.error("E121", f"`{name}` of {what} must be {want_s}, got "
                            f"{type_name(given)}", where, help=getattr(given, "hint", None))
        raise Abort from None
    for name, info in fields.items():
        registry = _registry_of(info)
        if registry and valid[name] not in REGISTRIES[registry]:
            table = REGISTRIES[registry]
            diags.error("E122", f"unknown {registry} `{valid[name]}` for `{name}` of {what}",
                        spans.get(name, span), help=did_you_mean(str(valid[name]), table) or (
                            f"{registry}s: {', '.join(sorted(table))}; a plugin's {registry} "
                            "is loaded with --plugin MODULE"))
            raise Abort
        if registry and f"{name}_args" in fields and not valid[f"{name}_args"]:
            # a bare `net=NAME`: the entry's defaults, so the IR holds every argument
            valid[f"{name}_args"] = REGISTRIES[registry][valid[name]].Args().model_dump()
    if key is not None:
        if len(_VALID_ARGS) > 10_000:
            _VALID_ARGS.clear()
        _VALID_ARGS[key] = valid
    return dict(valid)


def bind_params(params: list[ast.Param], args: list[ast.KwArg], def_scope: Scope,
                call_scope: Scope, diags: Collector, *, what: str, call_span: Span,
                preset: dict[str, Any] | None = None) -> dict[str, Any]:
    """Values of ``params``: defaults (in the defining scope) overridden by ``args``."""
    names = [p.name for p in params]
    values: dict[str, Any] = {}
    given: dict[str, Any] = {}
    for kw in args:
        if kw.name not in names:
            diags.error("E105", f"unknown argument `{kw.name}` for {what}", kw.name_span,
                        help=did_you_mean(kw.name, names) or (
                            "parameters: " + ", ".join(names) if names else
                            f"{what} takes no parameters"))
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
            diags.error("E109", f"{what} needs a value for `{p.name}`", call_span,
                        help=f"pass it as {p.name}=...")
            raise Abort
        origin = f"passed at {call_span.short()}" if p.name in given else None
        check_domain(p, values[p.name], def_scope, diags, origin)
    return values


def check_domain(p: ast.Param, value: Any, scope: Scope, diags: Collector,
                 origin: str | None) -> None:
    """E124 when ``value`` is outside the values ``p`` declares (``in A..B`` / ``in [...]``)."""
    d = p.domain
    if d is None:
        return
    notes = [f"the value was {origin}"] if origin else []
    if d.choices is not None:
        choices = [evaluate(c, scope, diags, words=True) for c in d.choices]
        plain, options = _plain(value), [_plain(c) for c in choices]
        if not any(type(plain) is type(c) and plain == c for c in options):
            shown = ", ".join(format_value(c) for c in choices)
            diags.error("E124", f"parameter `{p.name}` is {format_value(value)}, but it takes "
                        f"one of {shown}", p.span, notes=notes,
                        help=did_you_mean(str(value), [str(c) for c in choices]) or
                        f"use one of {shown}")
            raise Abort
        return
    lo = expect_int(d.lo, scope, diags, "a range bound")
    hi = expect_int(d.hi, scope, diags, "a range bound")
    if isinstance(value, bool) or not isinstance(value, int):
        diags.error("E124", f"parameter `{p.name}` takes an integer in {lo}..{hi}, got "
                    f"{type_name(value)}", p.span, notes=notes)
        raise Abort
    if not lo <= value <= hi:
        diags.error("E124", f"parameter `{p.name}` is {value}, outside its declared range "
                    f"{lo}..{hi}", p.span, notes=notes, help=f"use a value in {lo}..{hi}")
        raise Abort


# ---- entry point --------------------------------------------------------------------------
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


def _coerce_override(name: str, value: Any, default: Any, flow: str, diags: Collector,
                     span: Span) -> Any:
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
        diags.error("E123", f"--set {name}={format_value(value)}: parameter `{name}` of flow "
                    f"`{flow}` takes {type_name(default)} values", span,
                    help=f"its default is {format_value(default)}")
        raise Abort
    return value


def resolve(env: ModuleEnv, flow_name: str | None, overrides: dict[str, Any],
            diags: Collector) -> FlowSpec | None:
    flows = env.flows
    if not flows:
        diags.error("E103", f"`{env.file}` defines no flow", None,
                    help="add `flow NAME { input CxHxW ... }`")
        return None
    if flow_name is None:
        if len(flows) > 1:
            diags.error("E113", f"`{env.file}` defines several flows ({', '.join(flows)}); "
                        "choose one", None, help="pass --flow NAME (or flow=NAME)")
            return None
        flow_name = next(iter(flows))
    if flow_name not in flows:
        diags.error("E103", f"no flow `{flow_name}` in `{env.file}`", None,
                    help=did_you_mean(flow_name, flows) or f"flows: {', '.join(flows)}")
        return None
    # the extends chain, parent first
    chain: list[tuple[ModuleEnv, ast.FlowDef]] = [(env, flows[flow_name])]
    seen = {(env.file, flow_name)}
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
    head = chain[-1][1]
    declared = {p.name: p for _, f in chain for p in f.params}
    for name in overrides:
        if name not in declared:
            diags.error("E108", f"--set {name}: flow `{flow_name}` has no parameter `{name}`",
                        head.span, help=did_you_mean(name, declared) or (
                            "parameters: " + ", ".join(declared) if declared else
                            "the flow declares no parameters"))
    for _, f in chain:
        for p in f.params:
            if p.default is None:
                diags.error("E112", f"flow parameter `{p.name}` needs a default value", p.span,
                            help=f"write `{p.name} = VALUE`")
    if diags.has_errors:
        return None
    # parameters, child first: extends(...) arguments (evaluated in the child's scope) set
    # parameters declared anywhere up the chain; --set overrides win over both
    try:
        values: list[dict[str, Any]] = [{} for _ in chain]
        preset: dict[str, Any] = {}
        all_defaults = [{p.name: evaluate(p.default, fenv.scope(), diags, words=True)
                         for p in f.params} for fenv, f in chain]
        for (_, f), defaults in zip(chain, all_defaults):
            for p in f.params:  # parameters end up in the IR: plain values only
                no_encoder_call(defaults[p.name], p.default.span, diags)
        for i in range(len(chain) - 1, -1, -1):  # the most derived declaration types it
            for name in overrides:
                if name in all_defaults[i] and name not in preset:
                    preset[name] = _coerce_override(name, overrides[name], all_defaults[i][name],
                                                    flow_name, diags, head.span)
        for i in range(len(chain) - 1, -1, -1):
            fenv, f = chain[i]
            values[i] = {n: preset.get(n, v) for n, v in all_defaults[i].items()}
            if f.extends is not None and f.extends.args:
                inherited = [p.name for _, g in chain[:i] for p in g.params]
                scope = fenv.scope(**values[i])
                for kw in f.extends.args:
                    if kw.name not in inherited:
                        diags.error("E105", f"unknown argument `{kw.name}` for flow "
                                    f"`{chain[i - 1][1].name}`", kw.name_span,
                                    help=did_you_mean(kw.name, inherited) or (
                                        "parameters: " + ", ".join(inherited) if inherited
                                        else "it takes no parameters"))
                        raise Abort
                    value = evaluate(kw.value, scope, diags, words=True)
                    no_encoder_call(value, kw.value.span, diags)
                    preset.setdefault(kw.name, value)
        final = {k: v for vals in values for k, v in vals.items()}
        for fenv, f in chain:
            for p in f.params:
                origin = ("set by the flow that extends it" if p.name in preset
                          and p.name not in overrides else None)
                check_domain(p, final[p.name], fenv.scope(), diags, origin)
    except Abort:
        return None
    builder = FlowBuilder(diags)
    for i, (fenv, f) in enumerate(chain):
        # a child sees its parents' parameters too
        scope_vals = {k: v for vals in values[: i + 1] for k, v in vals.items()}
        ctx = _Ctx(env=fenv, scope=fenv.scope(**scope_vals), trace=[],
                   mode="flow" if i == 0 else "extend")
        try:
            builder.run(f.body, ctx)
        except Abort:
            return None
    builder.apply_inserts()
    builder.assign_paths()
    if builder.input is None:
        if builder.input_span is None:  # else the input statement reported its own error
            diags.error("E207", f"flow `{flow_name}` has no `input` statement", head.span,
                        help="add `input CxHxW`, e.g. `input 1x32x32`")
        return None
    validate_settings(builder.train, diags)
    params = {k: _plain(v) for vals in values for k, v in vals.items()}
    return FlowSpec(name=flow_name, file=env.file, params=params, input=builder.input,
                    input_span=builder.input_span, prior=builder.prior,
                    conditions=list(builder.conditions.values()), layers=builder.layers,
                    expect_latent=builder.expect, expect_span=builder.expect_span, train=builder.train, span=head.span)
