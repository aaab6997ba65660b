"""The language reference, generated: ``flowspec kinds`` and ``docs/language.md``.

The vocabulary (layer kinds, nets, encoders, priors, with every argument's type, default,
range and meaning) is read from the registries, so a plugin's kinds are listed like the
built-in ones; the statements come from :data:`STATEMENTS` below, and a test checks that it
names every statement of the grammar and that docs/language.md is what
``python -m flowspec.reference`` writes.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from . import datasets as ds
from .codes import CODES
from .kinds import ENCODERS, KINDS, NETS, PRIORS
from .recipe import SETTINGS, field_info, flag_fields


def _s(rule: str, form: str, meaning: str, example: str) -> tuple[str, str, str, str]:
    return rule, form, meaning, example


#: (rule of the grammar, the statement as written, a one-paragraph meaning, an example)
STATEMENTS: list[tuple[str, str, str, str]] = [
    _s(
        "header",
        "flowspec VERSION",
        "Optional first line: the language version the file is written for (0.2 adds flow "
        "parameter domains, class conditions, flow conditions and nets with arguments; this "
        "flowspec reads 0.1 and 0.2, and any other version is error E011).",
        "flowspec 0.2",
    ),
    _s(
        "import_stmt",
        'import "PATH" as NAME',
        "Lets, blocks and flows of another file, used as `NAME.thing`. The path is relative to "
        "the importing file; import cycles are errors.",
        'import "lib/steps.flow" as lib',
    ),
    _s(
        "let_stmt",
        "let NAME = EXPR",
        "A named value: an int, float, bool, string or word. Integer arithmetic `+ - * // %`, "
        "comparisons and `and or not` are evaluated when the flow is resolved.",
        "let hidden = 96",
    ),
    _s(
        "block_def",
        "block NAME(PARAM = DEFAULT, ...) { STATEMENTS }",
        "A reusable sequence of layers with parameters; call it as `NAME(param=value)`.",
        "block glow_step(hidden = 512) {\n  actnorm\n  invconv\n"
        "  coupling affine hidden=hidden\n}",
    ),
    _s(
        "flow_def",
        "flow NAME(PARAM = DEFAULT [in A..B | in [V, ...]], ...) "
        "[extends PARENT(ARGS)] { STATEMENTS }",
        "A model. Parameters can be overridden by a child flow, by `--set NAME=VALUE` on the "
        "command line and by `overrides=` in Python; `extends` takes the parent's body and "
        "parameters. A parameter may declare the values it takes, an integer range `in A..B` "
        "or a list `in [a, b]`: any other value, wherever it comes from, is an error (E124). A "
        "file may hold several flows (commands then take `--flow NAME`).",
        "flow glow(L = 3 in 1..6, K = 32 in 1..256, mask = channel in [channel, checkerboard]) "
        "{\n  input 1 x 32 x 32\n  squeeze\n  step x K {\n    actnorm\n    invconv\n"
        "    coupling mask=mask\n  }\n}\n\nflow small extends glow(K=2) {\n"
        "  insert attention imap after coupling\n}",
    ),
    _s(
        "input_stmt",
        "input C x H x W",
        "The shape of one sample (required, once per flow).",
        "input 1 x 32 x 32",
    ),
    _s(
        "prior_stmt",
        "prior KIND [FLAG ...] [NAME=VALUE ...]",
        "The distribution of the last latent (default `prior gaussian`). A bare word sets a "
        "boolean argument: `prior gaussian learned on=lr`. Priors are listed below.",
        "prior gaussian learned",
    ),
    _s(
        "condition_stmt",
        "condition NAME: TYPE SIZE [encoder=ENCODER(ARGS)]",
        "Something the model is conditioned on: `image CxHxW` (e.g. a low-resolution image; "
        "default encoder `rrdb`), `labels NxHxW` (a map of N classes, fed one-hot; default "
        "`convnet`) or `class N` (one integer label per sample; default `embedding`). An "
        "encoder (listed below) turns it into features that the compiler resamples to each "
        "conditioned layer's resolution. Layers and priors use it with `on=NAME`; in Python "
        'pass `cond={"NAME": tensor}` (class ids as a (B,) integer tensor).\n\n'
        "`encoder=flow(FLOW(NAME=VALUE, ...))` models the condition with another flow of the "
        "file (Full-Glow): the arguments set that flow's parameters, the flow must be "
        "unconditional, and it takes an image as is, a label map one-hot (N channels) or in "
        "colour (3 channels). A layer `on=NAME` receives the output of that flow's layer at "
        "the same place (level, step, k-th layer written in the step; the prior: its final "
        "latent), checked to exist with the layer's HxW before build; `log_prob` stays "
        "log p(x | y), `joint_log_prob` adds the condition's own log-likelihood, and the "
        "translation task trains on the sum.",
        "condition lr: image 3 x 20 x 20 encoder=rrdb(blocks=8, features=64)\n"
        "condition y: class 10\n"
        "condition seg: labels 34 x 256 x 256 encoder=flow(glow_seg(height=256, width=256))",
    ),
    _s(
        "layer",
        "KIND [VARIANT] [NAME=VALUE ...]",
        "One layer; the kinds and their arguments are listed below. Every argument is a keyword "
        "argument with a default; unknown arguments are errors with a did-you-mean.",
        "coupling affine hidden=512 mask=checkerboard",
    ),
    _s(
        "call",
        "BLOCK(NAME=VALUE, ...)",
        "Expand a block in place (`lib.block(...)` for an imported one).",
        "glow_step(hidden=hidden)",
    ),
    _s(
        "group",
        "level [x N] { ... }   step [x N] { ... }",
        "Named groups: levels and steps are numbered 1.. and give every layer its stable path "
        "(`level2.step07.coupling`), used in errors, diagrams, checkpoints and insert rules. "
        "`x N` repeats the group.",
        "step x K {\n  glow_step(hidden=hidden)\n}",
    ),
    _s(
        "for_stmt",
        "for NAME in A..B { ... }",
        "Repeat with NAME bound to A, A+1, ..., B (bounded, evaluated at resolve time).",
        "for l in 1..L {\n  level {\n    squeeze\n  }\n}",
    ),
    _s(
        "if_stmt",
        "if EXPR { ... } [else { ... }]",
        "Keep a body when EXPR is true; `} else {` on one line.",
        "if l < L {\n  split prior=learned\n}",
    ),
    _s(
        "insert_stmt",
        "insert LAYER (before|after) KIND [VARIANT] [in level A..B]",
        "Rewrite the flow (usually a parent's): add LAYER before or after every layer of a kind, "
        "optionally only in some levels. A rule that matches nothing is an error.",
        "insert attention isdp heads=4 after invconv in level 2..3",
    ),
    _s(
        "expect_stmt",
        "expect latent C x H x W",
        "Assert the shape of the last latent (checked before anything is built).",
        "expect latent 48 x 4 x 4",
    ),
    _s(
        "train_stmt",
        "train { SETTING [VALUE] [NAME=VALUE ...] ... }",
        "The default recipe of `flowspec train` (flags override it); settings are listed below.",
        "train {\n  task generation\n  data mnist5k pad=2\n  steps 1000\n}",
    ),
]

_PREAMBLE = """\
# The .flow language

A `.flow` file describes normalizing-flow models: levels and steps, the order of layers in a
step, where attention goes, and what the model is conditioned on. flowspec checks shapes and
invertibility before anything is built. Statements are separated by newlines or `;`;
comments start with `#`. This page is generated by `python -m flowspec.reference` from the
grammar's statements and the registries (`flowspec kinds` prints the same vocabulary,
plugins included); a test keeps it current.

Values: integers, floats, `true`/`false`, strings in double quotes, and words (a bare name
that is not a variable, e.g. `mask=checkerboard`, `on=lr`). A name with a dash needs a
letter after it (`fashion-mnist`), so subtraction is written with spaces (`a - b`).
An argument's range is an interval: `[1, 8192]` includes both ends, `(0, 10000]` leaves out
0, `[0, 1)` leaves out 1.
"""


# ---- one argument ---------------------------------------------------------------------------
def _type_name(ann: Any) -> str:
    if typing.get_origin(ann) is typing.Literal:
        return "|".join(str(v) for v in typing.get_args(ann))
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(ann) if a is not type(None)]
        return "|".join(_type_name(a) for a in parts) + " (optional)"
    return {int: "int", float: "float", bool: "bool", str: "word"}.get(ann, str(ann))


def _bounds(info: FieldInfo) -> dict[str, float]:
    """The argument's pydantic bounds, ``ge``/``gt``/``le``/``lt``, as declared."""
    out = {}
    for m in info.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if getattr(m, key, None) is not None:
                out[key] = getattr(m, key)
    return out


def _number(v: float) -> str:
    """``10000`` for 1e4 or 10000.0, ``0.5`` for 0.5: a bound reads as the number it is."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return str(v)


def _range(bounds: dict[str, float]) -> str:
    """Interval notation: ``[1, 8192]``, ``(0, 10000]``, ``[0, 1)``; ``inf`` where open."""
    if not bounds:
        return ""
    lo = next(
        (("[", bounds[k]) if k == "ge" else ("(", bounds[k]) for k in ("ge", "gt") if k in bounds),
        ("(", None),
    )
    hi = next(
        ((bounds[k], "]") if k == "le" else (bounds[k], ")") for k in ("le", "lt") if k in bounds),
        (None, ")"),
    )
    left = "-inf" if lo[1] is None else _number(lo[1])
    right = "inf" if hi[0] is None else _number(hi[0])
    return f"{lo[0]}{left}, {right}{hi[1]}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "-" if v is None else str(v)


def argument_rows(args_model: Any) -> list[dict[str, Any]]:
    """One row per argument: name, type, default, range (interval notation), bounds (its
    ``ge``/``gt``/``le``/``lt`` keys, for machines), meaning."""
    rows = []
    fields = args_model.model_fields
    for name, info in fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("args_of"):
            continue  # written through its registry field, `net=NAME(k=v)`
        typ = _type_name(info.annotation)
        if extra.get("registry"):
            reg = extra["registry"]
            typ = f"a registered {reg}" + (
                f" (`{name}=NAME` or `{name}=NAME(k=v)`)" if f"{name}_args" in fields else ""
            )
        bounds = _bounds(info)
        rows.append(
            {
                "name": name,
                "type": typ,
                "default": info.default,
                "range": _range(bounds),
                "bounds": bounds,
                "doc": info.description or "",
            }
        )
    return rows


def _entry(table: str, key: str, cls: Any) -> dict[str, Any]:
    out = {
        "key": key,
        "doc": cls.doc,
        "module": cls.__module__,
        "builtin": cls.__module__.startswith("flowspec."),
        "args": argument_rows(cls.Args),
    }
    if table == "kinds":
        out["written"] = key.replace(".", " ")
        out["conditional"] = cls.conditional
    elif table == "priors":
        out["written"] = f"prior {key}"
        out["conditional"] = cls.conditional
    elif table == "nets":
        out["written"] = f"net={key}"
    else:
        out["written"] = f"encoder={key}(...)"
    return out


def vocabulary_json(builtin_only: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Every registered kind, net, encoder and prior, with its arguments."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, reg in (
        ("kinds", KINDS),
        ("nets", NETS),
        ("encoders", ENCODERS),
        ("priors", PRIORS),
    ):
        entries = [_entry(table, key, reg[key]) for key in sorted(reg)]
        out[table] = [e for e in entries if e["builtin"] or not builtin_only]
    return out


_TITLES = {
    "kinds": "Layer kinds",
    "nets": "Coupling networks (`net=`)",
    "encoders": "Condition encoders (`encoder=`)",
    "priors": "Priors (`prior KIND`)",
}


def _cond_note(e: dict[str, Any]) -> str:
    c = e.get("conditional")
    return {"optional": " Takes `on=COND` (optional).", "required": " Needs `on=COND`."}.get(c, "")


def vocabulary_text(builtin_only: bool = False) -> str:
    lines = []
    for table, entries in vocabulary_json(builtin_only).items():
        lines.append(f"{_TITLES[table]}:")
        for e in entries:
            origin = "" if e["builtin"] else f"  [plugin {e['module']}]"
            lines.append(f"  {e['written']}  -- {e['doc']}.{_cond_note(e)}{origin}")
            for a in e["args"]:
                rng = f" in {a['range']}" if a["range"] else ""
                lines.append(
                    f"      {a['name']}={_value(a['default'])}  ({a['type']}{rng})"
                    + (f"  {a['doc']}" if a["doc"] else "")
                )
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def vocabulary_markdown(builtin_only: bool = False) -> str:
    lines = []
    for table, entries in vocabulary_json(builtin_only).items():
        lines += [f"## {_TITLES[table]}", ""]
        for e in entries:
            origin = "" if e["builtin"] else f" (plugin `{e['module']}`)"
            lines += [f"### `{e['written']}`{origin}", "", f"{e['doc']}.{_cond_note(e)}", ""]
            if e["args"]:
                lines += [
                    "| argument | type | default | range | meaning |",
                    "|---|---|---|---|---|",
                ]
                lines += [
                    f"| `{a['name']}` | {_md(a['type'])} | `{_value(a['default'])}` | "
                    f"{a['range']} | {_md(a['doc'])} |"
                    for a in e["args"]
                ]
            else:
                lines.append("No arguments.")
            lines.append("")
    return "\n".join(lines)


def _settings_markdown() -> str:
    lines = [
        "## Recipe settings (`train { }`)",
        "",
        "| setting | value | options | flags of `flowspec train` | meaning |",
        "|---|---|---|---|---|",
    ]
    for name, rule in SETTINGS.items():
        value = (
            "|".join(rule.value)
            if isinstance(rule.value, tuple)
            else {
                int: "int",
                float: "float",
                bool: "true|false",
                str: "word or string",
                None: "-",
            }.get(rule.value, str(rule.value))
        )
        opts = ", ".join(f"`{k}`" for k in rule.options) or "-"
        flags = ", ".join(
            f"`--{f.replace('_', '-')}`" for f in flag_fields() if field_info(f)["line"] == name
        ) or ("`--data`" if name == "data" else "-")
        lines.append(f"| `{name}` | {_md(value)} | {opts} | {flags} | {_md(rule.doc)} |")
    only = [
        f"`--{f.replace('_', '-')}` ({field_info(f)['doc']})"
        for f in flag_fields()
        if not field_info(f)["line"]
    ]
    if only:
        lines += ["", "Set by a flag only: " + "; ".join(only) + "."]
    return "\n".join(lines) + "\n"


def _taken_by(name: str) -> str:
    if name in (*ds.SHAPING, "limit"):
        return "every data line"
    if name == "root":
        return ", ".join(f"`{n}`" for n in ds.PATH_NAMES)
    if name == "format":
        return "paths and `images`"
    users = [f"`{k}`" for k, s in ds.BUILTIN.items() if name in s.options]
    formats = [f"`{k}`" for k, s in ds.FORMATS.items() if name in s.options]
    return ", ".join(users + ([f"formats {', '.join(formats)}"] if formats else []))


def _data_markdown() -> str:
    """The data sets, formats and data-line options of :mod:`flowspec.datasets`."""
    lines = [
        "## Data (`data NAME [key=value ...]`)",
        "",
        'The `data` line of `train { }` (or `--data "NAME key=value"`) names a built-in '
        "set, one of " + ", ".join(f"`{n}`" for n in ds.PATH_NAMES) + " with `root=PATH`, "
        "or a path (relative to the spec file's folder; on the command line, to the "
        "working folder). Built-in sets are real images shipped inside installed packages; "
        "nothing is downloaded, and CIFAR-10, CelebA and Cityscapes are read from your "
        "own copy.",
        "",
        "| built-in set | what it is | its own options |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{k}` | {_md(s.doc)} | {', '.join(f'`{o}`' for o in s.options) or '-'} |"
        for k, s in ds.BUILTIN.items()
    ]
    lines += [
        "",
        "A path's format is detected (`format=` overrides it; `images root=` reads "
        "the same way, `idx` / `cifar10` / `cityscapes root=` force theirs):",
        "",
        "| format | what it reads | its own options |",
        "|---|---|---|",
    ]
    lines += [
        f"| `{k}` | {_md(s.doc)} | {', '.join(f'`{o}`' for o in s.options)} |"
        for k, s in ds.FORMATS.items()
    ]
    lines += [
        "",
        "| option | type | default | range | taken by | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for o in ds.OPTIONS.values():
        typ = "|".join(map(str, o.choices)) if o.choices else _type_name(o.type)
        lo, hi = ("" if v is None else v for v in (o.minimum, o.maximum))
        rng = f"{lo}..{hi}" if (lo, hi) != ("", "") else ""
        lines.append(
            f"| `{o.name}` | {_md(typ)} | `{_value(o.default)}` | {rng} | "
            f"{_taken_by(o.name)} | {_md(o.doc)} |"
        )
    lines += [
        "",
        "### Folders of images",
        "",
        ds.FOLDER_RULES,
        "### Super-resolution inputs",
        "",
        ds.SR_INPUTS,
    ]
    return "\n".join(lines)


def _codes_markdown() -> str:
    """The table of :mod:`flowspec.codes`."""
    lines = [
        "## Diagnostic codes",
        "",
        "Every error and warning names its code (`error[E201]`, and `code` in "
        "`flowspec check --format json`). E0xx: the text is not a .flow program; E1xx: "
        "names, values and files; E2xx: shapes; E3xx: conditions and training; E4xx: "
        "insert rules and `extends`; Wxxx: warnings.",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    lines += [f"| {code} | {_md(meaning)} |" for code, meaning in CODES.items()]
    return "\n".join(lines) + "\n"


#: complete specs shown at the end of the reference, read from the repository
EXAMPLES = ("specs/realnvp.flow", "specs/nice.flow", "specs/glow_class.flow", "specs/nsf.flow")


def _examples_markdown() -> str:
    root = Path(__file__).resolve().parents[1]
    intro = (
        "The standard flows of the field as shipped in `specs/` (each file says which "
        "paper it follows and what differs):"
    )
    lines = ["## Complete examples", "", intro, ""]
    for rel in EXAMPLES:
        path = root / rel
        if not path.exists():  # an installed package without the repository's specs/
            continue
        lines += [f"### `{rel}`", "", "```", path.read_text(encoding="utf-8").rstrip(), "```", ""]
    return "\n".join(lines)


def language_reference() -> str:
    """The whole of docs/language.md (built-in vocabulary only)."""
    parts = [_PREAMBLE, "## Statements", ""]
    for _, form, meaning, example in STATEMENTS:
        parts += [f"### `{form}`", "", meaning, "", "```", example, "```", ""]
    parts.append(vocabulary_markdown(builtin_only=True))
    parts.append(_settings_markdown())
    parts.append(_data_markdown())
    parts.append(_codes_markdown())
    parts.append(_examples_markdown())
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = language_reference()
    if argv[:1] == ["--write"] and len(argv) == 2:
        with open(argv[1], "w", encoding="utf-8") as f:
            f.write(text)
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
