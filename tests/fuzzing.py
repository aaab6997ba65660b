"""The front-end fuzzer's library: a generator of valid specs, a mutator of .flow texts, and
the oracle every mutant must satisfy (bench/fuzz.py runs it long; tests/test_fuzz.py and
tests/test_lsp.py run it bounded).

Each mutant is a shipped spec (``specs/**/*.flow``) or a randomly generated valid spec with
one to three random edits: delete, duplicate, swap or move tokens and lines; change
numbers (0, -1, huge, float, 5,000 digits); change names (misspell, another identifier
of the file, a keyword, a layer or argument name); insert random characters, braces,
quotes and odd Unicode; cut the file short. Some are analysed for one flow by name with
a ``--set``-style override. The oracle for every mutant:

* ``flowspec.api.analyze`` returns (it never raises), within the slow limit in CPU seconds;
* every diagnostic is a :class:`~flowspec.errors.Diagnostic` whose span points into its
  file (``1 <= line <= lines + 1``, ``column >= 1``), and rendering the diagnostics (the
  text of a :class:`~flowspec.errors.FlowSpecError`, and its JSON) works;
* every N-th mutant also goes through ``flowspec check FILE [--format json]`` in-process,
  which must exit 1 exactly when ``analyze`` finds errors (0 otherwise) and never raise;
* a mutant that parses can be formatted, the result parses, and formatting it again
  changes nothing (counted apart, as "fmt findings": fmt.py is not the front end).

The generator of valid specs (:func:`random_spec`) takes a :class:`Chooser`: tests drive it
from hypothesis, bench/fuzz.py from :class:`random.Random`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowspec import parse_override
from flowspec.api import analyze
from flowspec.errors import Diagnostic, FlowSpecError, raise_if_errors
from flowspec.fmt import format_text
from flowspec.kinds import KINDS
from flowspec.parse import parse

ROOT = Path(__file__).resolve().parents[1]

SPECS = ROOT / "specs"


# ==== a generator of valid specs ===========================================================
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


# ==== mutation =============================================================================
_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"'  # strings
    r"|#[^\n]*"  # comments
    r"|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"  # numbers
    r"|[A-Za-z_][A-Za-z0-9_]*"  # names
    r"|\.\.|==|!=|<=|>=|//"  # two-character operators
    r"|\r?\n|[ \t]+|.",
    re.DOTALL,
)

KEYWORDS = [
    "flowspec",
    "import",
    "as",
    "let",
    "block",
    "flow",
    "extends",
    "for",
    "in",
    "if",
    "else",
    "level",
    "step",
    "x",
    "input",
    "prior",
    "condition",
    "expect",
    "latent",
    "train",
    "insert",
    "before",
    "after",
    "true",
    "false",
    "and",
    "or",
    "not",
]
LAYER_WORDS = [
    "actnorm",
    "invconv",
    "permute",
    "coupling",
    "affine",
    "additive",
    "mixture",
    "injector",
    "attention",
    "imap",
    "isdp",
    "squeeze",
    "split",
    "gaussian",
    "learned",
    "image",
    "labels",
    "rrdb",
    "convnet",
    "hidden",
    "heads",
    "patches",
    "mask",
    "on",
    "lu",
    "mode",
    "net",
    "components",
    "factor",
    "prior",
    "blocks",
    "features",
    "checkerboard",
    "complement",
    "channel",
    "shuffle",
    "reverse",
    "task",
    "data",
    "bits",
    "batch",
    "optimizer",
    "steps",
    "lib",
    "glow_step",
]
NUMBERS = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "4",
    "7",
    "16",
    "10000",
    "10001",
    "99999",
    "4096",
    "2147483648",
    "99999999999999999999999999",
    "1" + "0" * 400,
    "9" * 5000,
    "0.5",
    "1.0",
    "2.5",
    "1e308",
    "1e999",
    "1e-999",
    "8e-4",
    "007",
    "0x10",
    "1_000",
    "3.",
    ".5",
    "nan",
    "inf",
]
CHARS = list("{}()[]\"';:,.=+-*/%<>!#\\@$&|?^~`\t\n x") + [
    "\r",
    "\r\n",
    "\x00",
    "\x0b",
    "\x0c",
    "\u00a0",
    "\u2028",
    "\u00e9",
    "\U0001f600",
    "\ufeff",
    "..",
    "//",
    "==",
    '""',
    '"\\',
    "{}",
    "()",
    "x 2",
    " x ",
    ";;",
    "\n}\n",
    "{\n",
]
OVERRIDES = [
    "0",
    "-1",
    "2",
    "99999999999999999999999",
    "1e999",
    "nan",
    "inf",
    "true",
    "x",
    "2.5",
    "",
    "rrdb(blocks=1)",
    "1x8x8",
]
GLUE = [
    "(",
    ")",
    "{",
    "}",
    ",",
    "=",
    ":",
    ";",
    ".",
    "..",
    "\n",
    "x",
    "-",
    "+",
    '"',
    "#",
    "not",
    "level",
    "step",
    "flow f {",
    "insert attention imap after",
    "extends",
]


#: Edit operators and how often each is drawn: most keep the text parseable (numbers,
#: names, whole lines) so that the resolver and checker see as many mutants as the parser.
OPS = [
    "delete",
    "duplicate",
    "swap",
    "move",
    "number",
    "name",
    "char",
    "glue",
    "line",
    "cut",
    "string",
]
WEIGHTS = [2, 1.5, 2, 1, 5, 6, 1.5, 1, 3, 0.5, 1]


def _class(tok: str) -> str:
    c = tok[:1]
    return (
        "num" if c.isdigit() else "name" if c.isalpha() or c == "_" else "str" if c == '"' else tok
    )


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _significant(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if not t.isspace()]


def _misspell(rng: random.Random, word: str) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    op = rng.randrange(4)
    letters = "abcdefghijklmnopqrstuvwxyz_0123456789-"
    if op == 0 and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + rng.choice(letters) + word[i:]
    if op == 2:
        return word[:i] + rng.choice(letters) + word[i + 1 :]
    if len(word) > 1:
        j = min(i + 1, len(word) - 1)
        w = list(word)
        w[i], w[j] = w[j], w[i]
        return "".join(w)
    return word + word


def _rename(rng: random.Random, toks: list[str], sig: list[int], i: int) -> None:
    """Change a name token (in place): misspell it, or put another name of the file, a
    keyword or a layer word there."""
    names = [k for k in sig if toks[k][:1].isalpha() or toks[k][:1] == "_"]
    k = rng.choice(names) if names else i
    r = rng.random()
    if r < 0.35:
        toks[k] = _misspell(rng, toks[k])
    elif r < 0.6:
        toks[k] = toks[rng.choice(names)] if names else "x"
    elif r < 0.8:
        toks[k] = rng.choice(KEYWORDS)
    else:
        toks[k] = rng.choice(LAYER_WORDS)


def _edit_line(rng: random.Random, toks: list[str]) -> list[str]:
    """Delete, duplicate or swap whole lines; the tokens of the result."""
    lines = "".join(toks).split("\n")
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    how = rng.randrange(3)
    if how == 0:
        del lines[a]
    elif how == 1:
        lines.insert(a, lines[b])
    else:
        lines[a], lines[b] = lines[b], lines[a]
    return tokens("\n".join(lines))


def mutate(rng: random.Random, text: str, edits: int | None = None) -> tuple[str, list[str]]:
    """``text`` with 1-3 random edits (mostly one; or exactly ``edits``); also returns
    their names."""
    toks = tokens(text)
    assert "".join(toks) == text
    done: list[str] = []
    for _ in range(edits or rng.choice([1, 1, 1, 2, 2, 3])):
        sig = _significant(toks) or [0]
        if not toks:
            toks = [""]
        op = rng.choices(OPS, WEIGHTS)[0]
        i = rng.choice(sig)
        if op == "delete":
            del toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[i] + rng.choice(["", " ", "\n"]))
        elif op == "swap":  # with a token of the same class, a random one, or the next one
            same = [k for k in sig if _class(toks[k]) == _class(toks[i])]
            r = rng.random()
            j = (
                rng.choice(same)
                if r < 0.5
                else rng.choice(sig)
                if r < 0.75
                else sig[min(sig.index(i) + 1, len(sig) - 1)]
            )
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "move":
            t = toks.pop(i)
            toks.insert(rng.randrange(len(toks) + 1), t)
        elif op == "number":
            nums = [k for k in sig if toks[k][:1].isdigit()]
            k = rng.choice(nums) if nums else i
            toks[k] = rng.choice(NUMBERS)
        elif op == "name":
            _rename(rng, toks, sig, i)
        elif op == "char":
            toks.insert(rng.randrange(len(toks) + 1), rng.choice(CHARS))
        elif op == "glue":
            toks.insert(rng.randrange(len(toks) + 1), " " + rng.choice(GLUE) + " ")
        elif op == "line":
            toks = _edit_line(rng, toks)
        elif op == "cut":
            toks = toks[: rng.randrange(len(toks) + 1)]
        elif op == "string":
            strs = [k for k in sig if toks[k].startswith('"')]
            k = rng.choice(strs) if strs else i
            toks[k] = rng.choice(
                [
                    '""',
                    '"lib/steps.flow"',
                    '"demo.flow"',
                    '"."',
                    '"/"',
                    '"nonexistent.flow"',
                    '"lib"',
                    '"\\u00e9"',
                    '"\\x"',
                    '"\\N"',
                    '"\\777"',
                    '"a\\"b"',
                    '"lib/../lib/steps.flow"',
                ]
            )
        done.append(op)
    return "".join(toks), done


# ==== the oracle ===========================================================================
class Failure(Exception):
    """The front end misbehaved on a mutant."""


#: Errors about the request rather than the text, which have no place in the file: no such
#: flow / no flow at all (E103), several flows and none chosen (E113), unreadable file (E131).
UNPLACED = {"E103", "E113", "E131"}


class FmtFailure(Failure):
    """``fmt`` misbehaved on a mutant that parses (reported apart: fmt.py is not the parser)."""


def check_diagnostics(diags: list, file: str, text: str) -> None:
    """Every diagnostic is a Diagnostic with a span inside its file; rendering works."""
    sources: dict[str, str] = {file: text}
    for d in diags:
        if not isinstance(d, Diagnostic):
            raise Failure(f"not a Diagnostic: {d!r}")
        if d.severity not in ("error", "warning"):
            raise Failure(f"bad severity {d.severity!r}")
        if d.span is None:
            if d.severity == "error" and d.code not in UNPLACED:
                raise Failure(f"error without a position: [{d.code}] {d.message}")
            continue
        if d.span.file not in sources:
            try:
                sources[d.span.file] = Path(d.span.file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError, ValueError):
                raise Failure(
                    f"[{d.code}] points into a file that is not there: {d.span.file!r}"
                ) from None
        n = sources[d.span.file].count("\n") + 1
        if not (1 <= d.span.line <= n + 1) or d.span.column < 1:
            raise Failure(
                f"bad position {d.span.file}:{d.span.line}:{d.span.column} "
                f"({n} lines) for [{d.code}] {d.message}"
            )
        if (d.span.end_line, d.span.end_column) < (d.span.line, d.span.column):
            raise Failure(f"span ends before it starts: {d.span} for [{d.code}]")
        d.render()
        json.dumps(d.to_json())
    if any(d.severity == "error" for d in diags):
        try:
            raise_if_errors(diags)
        except FlowSpecError as e:
            str(e)
            e.to_json()
        else:
            raise Failure("raise_if_errors did not raise")


def check_mutant(
    text: str,
    file: str,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    fmt: bool = True,
    cli_dir: Path | None = None,
) -> str | None:
    """Run the oracle on one mutant; returns the code of its first error, None if it
    resolves.

    Raises :class:`Failure` or whatever exception the front end let escape. ``flow`` and
    ``overrides`` are passed to ``analyze`` (without ``flow``: every flow is checked).
    ``cli_dir``: also run ``flowspec check`` on the mutant saved there (under the seed's
    file name).
    """
    specs, diags = analyze(file, flow, overrides, text=text, all_flows=flow is None)
    check_diagnostics(diags, file, text)
    errors = [d for d in diags if d.severity == "error"]
    if not errors and flow is not None and len(specs) != 1:
        raise Failure(f"analyze(flow={flow!r}) gave {len(specs)} specs and no error")
    if fmt:
        check_fmt(text, file)
    if cli_dir is not None:
        run_cli(text, cli_dir / Path(file).name, json_format=len(text) % 2 == 1)
    return errors[0].code if errors else None


def check_fmt(text: str, file: str) -> None:
    """A text that parses formats, its formatting parses, and formatting is idempotent."""
    try:
        parse(text, file)
    except FlowSpecError as e:
        check_diagnostics(e.diagnostics, file, text)
        return
    try:
        once = format_text(text, file)
        twice = format_text(once, file)
    except FlowSpecError as e:
        raise FmtFailure(
            f"fmt wrote a text that does not parse: {e.diagnostics[0].message}"
        ) from None
    except Exception as e:
        raise FmtFailure(f"fmt raised {type(e).__name__}: {e}") from e
    if once != twice:
        raise FmtFailure("fmt is not idempotent")


def run_cli(text: str, path: Path, *, json_format: bool = False) -> int:
    """``flowspec check PATH [--format json]`` in-process on ``text`` saved at ``path``
    (internal errors re-raised); it must exit 1 exactly when ``analyze`` of that file finds
    errors, and its JSON must parse."""
    from flowspec.cli import main

    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    _, diags = analyze(path, all_flows=True)  # the file as the CLI reads it (newlines!)
    expect_error = any(d.severity == "error" for d in diags)
    old = os.environ.get("FLOWSPEC_DEBUG")
    os.environ["FLOWSPEC_DEBUG"] = "1"
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                rc = main(["check", str(path)] + (["--format", "json"] if json_format else []))
            except SystemExit as e:
                raise Failure(f"flowspec check exited via SystemExit({e.code!r})") from None
    finally:
        if old is None:
            os.environ.pop("FLOWSPEC_DEBUG", None)
        else:
            os.environ["FLOWSPEC_DEBUG"] = old
    if rc not in (0, 1):
        raise Failure(f"flowspec check returned {rc}: {err.getvalue()[-500:]}")
    if rc != int(expect_error):
        raise Failure(
            f"flowspec check returned {rc} but analyze found "
            f"{'errors' if expect_error else 'none'}"
        )
    if json_format:
        try:
            payload = json.loads(out.getvalue())
        except ValueError as e:
            raise Failure(f"flowspec check --format json printed no JSON: {e}") from None
        if payload.get("ok") != (rc == 0):
            raise Failure("flowspec check --format json: `ok` disagrees with the exit code")
    return rc


def cli_folder() -> Path:
    """A scratch copy of specs/, so that imports of mutants resolve as they do in place."""
    folder = Path(tempfile.mkdtemp(prefix="flowspec-fuzz-"))
    shutil.copytree(SPECS, folder / "specs")
    return folder / "specs"


# ==== the driver ===========================================================================
def seeds(rng: random.Random, n_generated: int = 40) -> list[tuple[str, str]]:
    """(file name, text) of the texts to mutate: shipped specs and generated ones.

    Generated specs are given a file name inside specs/ so that nothing depends on it
    except imports, which they do not use.
    """
    out = [
        (str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
        for p in sorted(SPECS.rglob("*.flow"))
    ]
    chooser = Chooser(rng)
    out += [(f"specs/generated_{i}.flow", random_spec(chooser).text) for i in range(n_generated)]
    return out


@dataclass
class Report:
    tried: int = 0
    resolved: int = 0
    errors: int = 0
    cli_runs: int = 0
    failures: list[dict] = field(default_factory=list)
    fmt_failures: list[dict] = field(default_factory=list)
    slowest: float = 0.0  # CPU seconds
    slowest_wall: float = 0.0
    slowest_what: str = ""
    by_code: dict[str, int] = field(default_factory=dict)


def fuzz(
    n: int,
    seed: int,
    *,
    time_limit: float | None = None,
    out: Path | None = None,
    slow: float = 2.0,
    cli_every: int = 10,
    fmt: bool = True,
    max_edits: int = 3,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Try ``n`` mutants drawn with ``seed``; see the module docstring for the oracle."""
    rng = random.Random(seed)
    corpus = seeds(random.Random(seed + 1))
    report = Report()
    folder = cli_folder()
    start = time.perf_counter()
    old_cwd = os.getcwd()
    os.chdir(ROOT)  # file names of seeds are relative to the repository
    try:
        for i in range(n):
            if time_limit is not None and time.perf_counter() - start > time_limit:
                break
            file, base = corpus[rng.randrange(len(corpus))]
            text, ops = mutate(rng, base, None if max_edits <= 3 else rng.randint(1, max_edits))
            flow, sets = None, None
            if rng.random() < 0.15:  # one flow by name, maybe with --set style overrides
                names = re.findall(r"flow\s+([A-Za-z_]\w*)", text) or ["nope"]
                flow = rng.choice(names + ["nope"])
                if rng.random() < 0.5:
                    params = re.findall(r"[(,]\s*([A-Za-z_]\w*)\s*=", text) or ["K"]
                    sets = {rng.choice(params + ["nope"]): rng.choice(OVERRIDES)}
            overrides = {k: parse_override(v) for k, v in sets.items()} if sets else None
            report.tried += 1
            t0, c0 = time.perf_counter(), time.process_time()
            cli = bool(cli_every and i % cli_every == 0)
            report.cli_runs += cli
            try:
                code = check_mutant(
                    text,
                    file,
                    flow=flow,
                    overrides=overrides,
                    fmt=fmt,
                    cli_dir=folder if cli else None,
                )
                # CPU time, not wall time: the machine may be shared
                dt = time.process_time() - c0
                if dt > slow:
                    raise Failure(f"slow: {dt:.2f} s of CPU")
            except Exception as e:  # noqa: BLE001 - anything but diagnostics is a finding
                dt = time.process_time() - c0
                kind = "Failure" if isinstance(e, Failure) else type(e).__name__
                fail = {
                    "index": i,
                    "seed": seed,
                    "file": file,
                    "flow": flow,
                    "set": sets,
                    "ops": ops,
                    "kind": kind,
                    "message": str(e)[:500],
                    "traceback": traceback.format_exc()[-3000:],
                    "seconds": round(dt, 3),
                }
                fmt_only = isinstance(e, FmtFailure)
                (report.fmt_failures if fmt_only else report.failures).append(fail)
                if out is not None:
                    save(out / f"{'fmt' if fmt_only else 'failure'}_{seed}_{i}", text, fail)
                if fmt_only:  # the front end itself was fine
                    report.errors += 1
                continue
            if dt > report.slowest:
                report.slowest_what = f"mutant {i} of seed {seed} ({file}; {', '.join(ops)})"
            report.slowest = max(report.slowest, dt)
            report.slowest_wall = max(report.slowest_wall, time.perf_counter() - t0)
            if code is None:
                report.resolved += 1
            else:
                report.errors += 1
                report.by_code[code] = report.by_code.get(code, 0) + 1
            if progress is not None and report.tried % 1000 == 0:
                progress(report)
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(folder.parent, ignore_errors=True)
    return report


def save(stem: Path, text: str, meta: dict) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".flow"), "w", encoding="utf-8", newline="") as f:
        f.write(text)  # byte for byte: a lone \r must stay one
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def summary(r: Report, seconds: float) -> str:
    return (
        f"mutants tried: {r.tried}\n"
        f"resolved (no errors): {r.resolved}\n"
        f"FlowSpecError diagnostics: {r.errors}\n"
        f"failures (anything else): {len(r.failures)}\n"
        f"fmt findings (fmt of a parsing mutant failed): {len(r.fmt_failures)}\n"
        f"CLI runs in-process: {r.cli_runs}\n"
        f"slowest passing mutant: {r.slowest:.3f} s CPU: {r.slowest_what}\n"
        f"slowest wall time of a passing mutant: {r.slowest_wall:.3f} s\n"
        f"wall time: {seconds:.1f} s"
    )
