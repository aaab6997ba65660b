"""The fuzzer's generator of valid specs (:func:`random_spec`): random levels, steps,
blocks, conditions, priors and insert rules, each layer given a shape it accepts, so that
every generated text resolves. It takes a :class:`Chooser`: tests drive it from hypothesis,
``bench/fuzz.py`` (through :mod:`fuzzing`) from :class:`random.Random`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from flowspec.kinds import KINDS


class Chooser:
    """The random decisions of :func:`random_spec`; subclassed for hypothesis."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def choice(self, options: list) -> Any:
        return options[self.rng.randrange(len(options))]

    def boolean(self, p: float = 0.5) -> bool:
        return self.rng.random() < p


Shape = tuple[int, int, int]


@dataclass
class GenLayer:
    """One layer of the generated model: its source text and the shape it sees."""

    kind: str  # registry key: "coupling.affine", "attention.isdp", ...
    text: str  # as written in the spec (argument values may be parameters)
    shape: Shape  # input shape
    out: Shape
    level: int


@dataclass
class GenSpec:
    text: str
    flow: str  # the flow to build (the most derived one)
    input: Shape
    latent: Shape
    conditions: dict[str, tuple[str, Shape]] = field(default_factory=dict)
    features: set[str] = field(default_factory=set)  # language features used


def _isdp_options(shape: Shape) -> list[tuple[int, int]]:
    """(heads, patches) pairs valid at ``shape``: sqrt(patches) divides H and W, heads <= P/2."""
    c, h, w = shape
    out = []
    for g in (1, 2, 4):
        if h % g or w % g:
            continue
        p = c * (h // g) * (w // g)
        out += [(heads, g * g) for heads in range(1, min(3, p // 2) + 1)]
    return out


def _attention(ch: Chooser, shapes: list[Shape]) -> tuple[str, str] | None:
    """An attention layer valid at every shape of ``shapes`` (kind, text), or None."""
    kinds = []
    if all(s[0] >= 2 for s in shapes):
        kinds.append("imap")
    common = None
    for s in shapes:
        opts = set(_isdp_options(s))
        common = opts if common is None else common & opts
    if common:
        kinds.append("isdp")
    if not kinds:
        return None
    mask = ch.choice(["", " mask=checkerboard", " mask=complement"])
    kind = ch.choice(kinds)
    if "residual" in KINDS[f"attention.{kind}"].Args.model_fields and ch.boolean(0.3):
        mask += " residual=true"  # the bounded form, where the registry has it
    if kind == "imap":
        return "attention.imap", "attention imap" + mask + ch.choice(["", " act=sigmoid"])
    heads, patches = ch.choice(sorted(common))
    text = "attention isdp"
    if heads != 1 or ch.boolean(0.3):
        text += f" heads={heads}"
    if patches != 4 or ch.boolean(0.3):
        text += f" patches={patches}"
    return "attention.isdp", text + mask


def _step_layer(
    ch: Chooser, shapes: list[Shape], conds: list[str], hid: str, attention: bool = True
) -> tuple[str, str]:
    """A shape-preserving layer valid at every shape of ``shapes``: (kind, text)."""
    c_min = min(s[0] for s in shapes)
    options = ["actnorm", "invconv", "permute", "coupling", "coupling"]
    if attention:
        options.append("attention")
    if conds:
        options.append("injector")
    while True:
        kind = ch.choice(options)
        if kind == "actnorm":
            return "actnorm", "actnorm"
        if kind == "invconv":
            return "invconv", "invconv" + ch.choice(["", " lu=true", " lu=false"])
        if kind == "permute":
            return "permute", "permute" + ch.choice(["", " mode=reverse", " mode=shuffle"])
        if kind == "injector":
            return "injector", f"injector on={ch.choice(conds)} hidden={hid}"
        if kind == "attention":
            att = _attention(ch, shapes)
            if att is not None:
                return att
            continue
        variant = ch.choice(["affine", "additive", "mixture"])
        on = f" on={ch.choice(conds)}" if conds and ch.boolean() else ""
        net = ch.choice(["", "", " net=glow", " net=resnet"])
        if variant == "mixture":
            if c_min < 2:
                continue
            comps = ch.integer(1, 3)
            return "coupling.mixture", f"coupling mixture hidden={hid} components={comps}{net}{on}"
        mask = "" if c_min >= 2 and ch.boolean() else " mask=checkerboard"
        if c_min >= 2 and mask and ch.boolean(0.3):
            mask = " mask=channel"
        head = "coupling" if variant == "affine" and ch.boolean(0.3) else f"coupling {variant}"
        return f"coupling.{variant}", f"{head} hidden={hid}{mask}{net}{on}"


def _template(
    ch: Chooser, shapes: list[Shape], conds: list[str], hid: str
) -> list[tuple[str, str]]:
    """The layers of one step: at most one attention layer, for numerical reasons only
    (each iSDP scales its half by up to ~2.7 at initialisation, and a deep stack of them
    with no actnorm in between grows activations past what a 1e-10 absolute inverse
    tolerance can hold)."""
    out: list[tuple[str, str]] = []
    for _ in range(ch.integer(1, 4)):
        att = not any(k.startswith("attention") for k, _ in out)
        out.append(_step_layer(ch, shapes, conds, hid, attention=att))
    return out


def _squeeze(shape: Shape) -> Shape:
    c, h, w = shape
    return (4 * c, h // 2, w // 2)


def _split(shape: Shape) -> Shape:
    c, h, w = shape
    return (c - c // 2, h, w)


def _conditions(
    ch: Chooser, h0: int, w0: int, feats: set[str]
) -> tuple[dict[str, tuple[str, Shape]], list[str]]:
    """Maybe an image condition, a label-map one or both: the conditions and their lines."""
    conds: dict[str, tuple[str, Shape]] = {}
    cond_lines = []
    if ch.boolean(0.4):
        feats.add("condition")
        if ch.boolean():
            cc = ch.integer(1, 3)
            hh, ww = ch.choice([(h0, w0), (h0 // 2, w0 // 2), (h0 // 4, w0 // 4)])
            conds["lr"] = ("image", (cc, hh, ww))
            enc = ch.choice(["rrdb(blocks=1, features=4)", "rrdb(features=3, blocks=1)"])
            cond_lines.append(f"condition lr: image {cc}x{hh}x{ww} encoder={enc}")
        if not conds or ch.boolean(0.3):
            n = ch.integer(2, 4)
            conds["seg"] = ("labels", (n, h0, w0))
            cond_lines.append(
                f"condition seg: labels {n} x {h0} x {w0} encoder=convnet(blocks=1, features=4)"
            )
    return conds, cond_lines


def _plan_levels(
    ch: Chooser, shape: Shape, n_levels: int, names: list[str]
) -> tuple[list[dict], Shape]:
    """The levels (squeeze?, K steps, split?) from the input ``shape``, and the final latent."""
    levels: list[dict] = []
    for li in range(1, n_levels + 1):
        squeeze = (
            shape[1] % 2 == 0
            and shape[2] % 2 == 0
            and (li == 1 and shape[0] == 1 or ch.boolean(0.8))
        )
        inner = _squeeze(shape) if squeeze else shape
        k = ch.integer(1, 3)
        split = li < n_levels and inner[0] >= 2 and ch.boolean(0.7)
        levels.append(
            {
                "squeeze": squeeze,
                "shape": inner,
                "K": k,
                "split": split,
                "split_on": ch.choice(names) if names and split and ch.boolean() else None,
                "split_fixed": ch.boolean(0.3),
            }
        )
        shape = _split(inner) if split else inner
    return levels, shape


def _blocks(
    ch: Chooser, templates: list[list[tuple[str, str]]], shared: bool, feats: set[str]
) -> tuple[list[str], list[list[str]]]:
    """Maybe turn the step templates into blocks with parameters: the blocks' lines and each
    level's step body."""
    block_lines: list[str] = []
    use_block = ch.boolean(0.5)
    step_body: list[list[str]] = []
    for i, tmpl in enumerate(templates):
        lines = [t for _, t in tmpl]
        if use_block and (not shared or i == 0):
            feats.add("block")
            bname = f"step_{i}" if not shared else "step_all"
            params = "hidden = 3" + (", extra = 1" if ch.boolean(0.3) else "")
            if ch.boolean(0.3):
                feats.add("let")
                body = ["let width = hidden"] + [
                    t.replace("hidden=hidden", "hidden=width") for t in lines
                ]
            else:
                body = lines
            if ch.boolean(0.2):
                feats.add("if")
                body = ["if hidden > 0 {", *["  " + b for b in body], "} else {", "  actnorm", "}"]
            block_lines += [f"block {bname}({params}) {{", *["  " + b for b in body], "}", ""]
            step_body.append([f"{bname}(hidden=hidden)"])
        elif use_block and shared:
            step_body.append(step_body[0])
        else:
            step_body.append(lines)
    # unused blocks are only warnings: sometimes add one
    if ch.boolean(0.1):
        block_lines += ["block unused(n = 1) {", "  actnorm", "}", ""]
    return block_lines, step_body


def _prior(ch: Chooser, names: list[str]) -> str:
    prior = "prior gaussian"
    if ch.boolean(0.6):
        prior += " learned"
        if names and ch.boolean(0.6):
            prior += f" on={ch.choice(names)}"
    return prior


def _level_lines(ch: Chooser, lv: dict, steps: list[str], split_cond: str | None) -> list[str]:
    """The body of one level: squeeze?, ``step x K { ... }``, split? (under ``split_cond``)."""
    out = []
    if lv["squeeze"]:
        out.append("squeeze" + ("" if ch.boolean(0.8) else " factor=2"))
    k = "K" if ch.boolean(0.5) else str(lv["K"])
    if k == "K":
        out.append(f"let K = {lv['K']}")
    out.append(f"step x {k} {{")
    out += ["  " + s for s in steps]
    out.append("}")
    if lv["split"]:
        s = "split"
        if lv["split_fixed"]:
            s += " prior=fixed"
        elif ch.boolean(0.5):
            s += " prior=learned"
        if lv["split_on"]:
            s += f" on={lv['split_on']}"
        out.append(s if split_cond is None else f"if {split_cond} {{ {s} }}")
    return out


def _level_groups(
    ch: Chooser, levels: list[dict], step_body: list[list[str]], shared: bool, feats: set[str]
) -> list[str]:
    """The flow's levels: one ``for`` loop over a shared body, or one group per level."""
    body: list[str] = []
    if shared:  # one loop body for every level: the same squeeze, template, K and split
        for lv in levels:
            lv["K"] = levels[0]["K"]
        inner = _level_lines(ch, levels[0], step_body[0], "l < L")
        body.append("for l in 1..L {")
        body += ["  level {", *["    " + s for s in inner], "  }"]
        body.append("}")
    else:
        for lv, steps in zip(levels, step_body):
            if len(levels) == 1 and ch.boolean(0.3):
                body += _level_lines(ch, lv, steps, None)  # no level group at all
                feats.add("no-level")
                continue
            body += ["level {", *["  " + s for s in _level_lines(ch, lv, steps, None)], "}"]
    return body


def _insert_rules(
    ch: Chooser, levels: list[dict], templates: list[list[tuple[str, str]]], n_levels: int
) -> list[str]:
    """Zero to two insert rules (for this flow, or for a child that extends it)."""
    flat = _flatten(levels, templates)
    rules: list[str] = []
    for _ in range(ch.choice([0, 0, 1, 1, 2])):
        rule = _insert_rule(ch, flat, n_levels, MAX_ATTENTION)
        if rule is not None:
            rules.append(rule)
    return rules


def random_spec(ch: Chooser) -> GenSpec:
    """A random valid .flow text (its shapes computed here), tiny enough for Jacobians."""
    feats: set[str] = set()
    c0 = ch.integer(1, 3)
    h0, w0 = ch.choice([(8, 8), (8, 16), (4, 8), (8, 8)])
    n_levels = ch.integer(1, 3)
    conds, cond_lines = _conditions(ch, h0, w0, feats)
    names = list(conds)
    levels, latent = _plan_levels(ch, (c0, h0, w0), n_levels, names)
    # a step template shared by all levels (rendered with `for`) or one per level
    shared = (
        n_levels > 1
        and ch.boolean(0.5)
        and len({lv["squeeze"] for lv in levels}) == 1
        and (len({lv["split"] for lv in levels[:-1]}) <= 1)
        and not levels[-1]["split"]
    )
    hid = "hidden"
    templates: list[list[tuple[str, str]]] = []
    if shared:
        feats.add("for")
        shapes = [lv["shape"] for lv in levels]
        templates = [_template(ch, shapes, names, hid)] * n_levels
    else:
        templates = [_template(ch, [lv["shape"]], names, hid) for lv in levels]
    hidden = ch.integer(2, 5)
    block_lines, step_body = _blocks(ch, templates, shared, feats)
    prior = _prior(ch, names)
    # -- the flow body
    body: list[str] = []
    input_txt = ch.choice([f"{c0}x{h0}x{w0}", f"{c0} x {h0} x {w0}"])
    if ch.boolean(0.3):
        feats.add("let")
        body.append(f"let width = {w0}")
        input_txt = f"{c0} x {h0} x width"
    body.append(f"input {input_txt}")
    body += cond_lines
    if ch.boolean(0.8) or prior != "prior gaussian":
        body.append(prior)
    body += _level_groups(ch, levels, step_body, shared, feats)
    rules = _insert_rules(ch, levels, templates, n_levels)
    if ch.boolean(0.2):
        body.append(f"expect latent {latent[0]}x{latent[1]}x{latent[2]}")
    if ch.boolean(0.15):
        body += ["train {", "  task generation", "  batch 2", "  optimizer adam lr=1e-3", "}"]
    params = f"L = {n_levels}, hidden = {hidden}"
    extends = rules and ch.boolean(0.5)
    if rules:
        feats.add("insert")
    if not extends:
        body += rules
    flow_lines = [f"flow base({params}) {{", *["  " + b for b in body], "}"]
    flow = "base"
    if extends:
        feats.add("extends")
        flow = "child"
        arg = f"(hidden={hidden})" if ch.boolean() else ""
        flow_lines += ["", f"flow child extends base{arg} {{", *["  " + r for r in rules], "}"]
    text = (
        "\n".join(["flowspec 0.1", "# generated by bench/fuzz.py", *block_lines, *flow_lines])
        + "\n"
    )
    return GenSpec(text, flow, (c0, h0, w0), latent, conds, feats)


def _flatten(levels: list[dict], templates: list[list[tuple[str, str]]]) -> list[GenLayer]:
    out: list[GenLayer] = []
    for li, (lv, tmpl) in enumerate(zip(levels, templates), start=1):
        s = lv["shape"]
        if lv["squeeze"]:
            before = (s[0] // 4, s[1] * 2, s[2] * 2)
            out.append(GenLayer("squeeze", "squeeze", before, s, li))
        for _ in range(lv["K"]):
            out += [GenLayer(k, t, s, s, li) for k, t in tmpl]
        if lv["split"]:
            out.append(GenLayer("split", "split", s, _split(s), li))
    return out


MAX_ATTENTION = 8  # attention layers per generated model (see _template)


def _insert_rule(ch: Chooser, flat: list[GenLayer], n_levels: int, cap: int) -> str | None:
    """`insert attention ... before|after KIND [in level A..B]`, valid at every match; the
    inserted layer is added to ``flat`` (later rules may match it)."""
    anchors = sorted({x.kind for x in flat})
    kind = ch.choice(anchors)
    key = kind.split(".")[0] if "." in kind and ch.boolean(0.5) else kind
    place = ch.choice(["before", "after"])
    levels = None
    if n_levels > 1 and ch.boolean(0.5):
        a = ch.integer(1, n_levels)
        levels = (a, ch.integer(a, n_levels))

    def hit(x: GenLayer) -> bool:
        return (x.kind == key or x.kind.split(".")[0] == key) and (
            levels is None or levels[0] <= x.level <= levels[1]
        )

    matches = [x for x in flat if hit(x)]
    if not matches or len(matches) + sum(x.kind.startswith("attention") for x in flat) > cap:
        return None
    shapes = [x.shape if place == "before" else x.out for x in matches]
    att = _attention(ch, shapes)
    if att is None:
        return None
    new_kind, text = att
    out: list[GenLayer] = []
    for x in flat:
        if hit(x):
            s = x.shape if place == "before" else x.out
            new = GenLayer(new_kind, text, s, s, x.level)
            out += [new, x] if place == "before" else [x, new]
        else:
            out.append(x)
    flat[:] = out
    where = "" if levels is None else f" in level {levels[0]}..{levels[1]}"
    return f"insert {text} {place} {key.replace('.', ' ')}{where}"
