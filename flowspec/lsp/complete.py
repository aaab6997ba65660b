"""Completion from the text before the cursor (the file need not parse while typing).

Where the cursor stands is read from its line and the braces before it: at the start of a
statement (statements, layer kinds, blocks; settings inside ``train { }``), after a head
word (variants: ``attention `` offers ``imap`` and ``isdp``; priors, data sets, tasks,
optimizers), after a layer's words (argument names with type, default and range), after
``NAME=`` (registry entries, choices, flow and block parameters) and after ``ns.``
(the blocks of an import). Everything offered comes from the registries, plugins included.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass

from ..kinds import ENCODERS, KINDS, NETS, PRIORS, RESERVED, heads
from ..reference import argument_rows
from .document import Analysis, Document, Pos

__all__ = ["Item", "complete"]

#: statements of a flow or block body (beside layers and block calls)
BODY_STATEMENTS = {
    "input": "input C x H x W",
    "prior": "prior KIND [learned] [on=COND]",
    "condition": "condition NAME: image CxHxW encoder=KIND(...)",
    "expect": "expect latent C x H x W",
    "level": "level { ... }",
    "step": "step x K { ... }",
    "for": "for i in A..B { ... }",
    "if": "if COND { ... } else { ... }",
    "let": "let NAME = EXPR",
    "insert": "insert KIND [VARIANT] after|before KIND [in level A..B]",
    "train": "train { ... } (the recipe)",
}
TOP_STATEMENTS = {
    "flowspec": "flowspec VERSION (the language version)",
    "import": 'import "FILE.flow" as NAME',
    "let": "let NAME = EXPR",
    "block": "block NAME(PARAMS) { ... }",
    "flow": "flow NAME(PARAMS) [extends BASE(...)] { ... }",
}


@dataclass
class Item:
    label: str
    kind: str  # keyword | kind | variant | argument | parameter | block | value | setting
    detail: str = ""
    doc: str = ""
    insert: str | None = None


_STRIP = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def _enclosing(doc: Document, pos: Pos) -> list[str]:
    """The head words of the braces open at ``pos`` (``["flow", "level", "step"]``)."""
    stack: list[str] = []
    for n in range(pos[0] + 1):
        text = doc.line(n) if n < pos[0] else doc.prefix(pos)
        text = _STRIP.sub('""', text)
        start = 0
        for i, ch in enumerate(text):
            if ch == "{":
                head = re.findall(r"[A-Za-z_][\w.]*", text[start:i])
                stack.append(head[0] if head else "")
                start = i + 1
            elif ch == "}":
                if stack:
                    stack.pop()
                start = i + 1
    return stack


def _header(doc: Document, pos: Pos) -> list[str]:
    """Parameter names of the flow or block whose header is the last one before ``pos``."""
    text = "\n".join(doc.line(n) for n in range(pos[0])) + "\n" + doc.prefix(pos)
    heads_ = list(re.finditer(r"^\s*(?:flow|block)\s+\w+\s*\(([^)]*)\)", text, re.M))
    if not heads_:
        return []
    params = re.sub(r"\[[^\]]*\]", "", heads_[-1].group(1))
    return re.findall(r"(?:^|,)\s*([A-Za-z_]\w*)", params)


def _kind_items() -> list[Item]:
    out = []
    for head, variants in sorted(heads().items()):
        names = sorted(v for v in variants if v)
        detail = f"{head} {'|'.join(names)}" if names else head
        doc = variants[None].doc if None in variants else ""
        out.append(Item(head, "kind", detail, doc))
    return out


def _blocks(analysis: Analysis | None, doc: Document) -> list[Item]:
    out = [
        Item(m.group(1), "block", m.group(0).strip().rstrip("{").strip())
        for m in re.finditer(r"^\s*block\s+(\w+)\s*(\([^)]*\))?", doc.text, re.M)
    ]
    env = analysis.env if analysis else None
    if env is not None:
        for ns, sub in env.imports.items():
            for name in sub.blocks:
                out.append(Item(f"{ns}.{name}", "block", f"block {name} from {ns}"))
    return out


def _statement(stack: list[str], doc: Document, analysis: Analysis | None) -> list[Item]:
    if not stack:
        return [Item(k, "keyword", v) for k, v in TOP_STATEMENTS.items()]
    if stack[-1] == "train":
        from ..recipe import RecipeSpec, field_info

        lines: dict[str, str] = {}
        for name in RecipeSpec.model_fields:
            info = field_info(name)
            if info["line"]:  # `pretrain steps=N` has only options
                lines.setdefault(info["line"], info["doc"])
        return [Item(k, "setting", v) for k, v in lines.items()]
    items = [
        Item(k, "keyword", v)
        for k, v in BODY_STATEMENTS.items()
        if k != "train" or stack[0] == "flow"
    ]
    return items + _kind_items() + _blocks(analysis, doc)


def _second(word: str, stack: list[str]) -> list[Item] | None:
    """Items for the word after ``word`` (None: ``word`` takes arguments next)."""
    if stack and stack[-1] == "train":
        from .. import datasets
        from ..recipe import DEQUANTIZERS, OPTIMIZERS, TASKS

        table = {"task": TASKS, "optimizer": OPTIMIZERS, "dequantize": DEQUANTIZERS}.get(word)
        if table is not None:
            return [Item(k, "value", getattr(v, "doc", "") or "") for k, v in table.items()]
        if word == "data":
            return [Item(k, "value", s.doc) for k, s in datasets.BUILTIN.items()] + [
                Item(k, "value", "a local copy: root=PATH") for k in datasets.PATH_NAMES
            ]
        return []
    if word == "prior":
        return [Item(k, "kind", "prior", v.doc) for k, v in sorted(PRIORS.items())]
    if word == "insert":
        return _kind_items()
    variants = heads().get(word)
    if variants and any(v is not None for v in variants):
        return [
            Item(v, "variant", k.key.replace(".", " "), k.doc)
            for v, k in sorted(((v, k) for v, k in variants.items() if v), key=lambda t: t[0])
        ]
    return None


def _args_model(head: str, words: list[str]):
    variants = heads().get(head)
    if variants:
        for w in words:
            if w in variants:
                return variants[w].Args
        from ..kinds import DEFAULT_VARIANT

        key = None if None in variants else DEFAULT_VARIANT.get(head)
        return variants[key].Args if key in variants else None
    if head == "prior":
        return PRIORS[words[0]].Args if words and words[0] in PRIORS else None
    return None


def _arg_items(model, given: set[str]) -> list[Item]:
    out = []
    for row in argument_rows(model):
        if row["name"] in given:
            continue
        default = row["default"]
        detail = f"{row['type']} = {default!r}" + (f"  {row['range']}" if row["range"] else "")
        out.append(Item(row["name"], "argument", detail, row["doc"], row["name"] + "="))
    return out


def _train_options(word: str, words: list[str], given: set[str]) -> list[Item]:
    from ..recipe import RecipeSpec, field_info

    if word == "data":
        from ..datasets import OPTIONS, accepted_options

        names = accepted_options(words[0]) if words else tuple(OPTIONS)
        return [
            Item(n, "argument", OPTIONS[n].doc if n in OPTIONS else "", insert=n + "=")
            for n in names
            if n not in given
        ]
    out = []
    for name in RecipeSpec.model_fields:
        info = field_info(name)
        if info["line"] == word and info["option"] and info["option"] not in given:
            out.append(Item(info["option"], "argument", info["doc"], insert=info["option"] + "="))
    return out


def _values(
    head: str, words: list[str], arg: str, doc: Document, pos: Pos, analysis: Analysis | None
) -> list[Item]:
    model = _args_model(head, words)
    out: list[Item] = []
    if model is not None and arg in model.model_fields:
        info = model.model_fields[arg]
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        registry = {"net": NETS, "encoder": ENCODERS, "prior": PRIORS, "kind": KINDS}.get(
            extra.get("registry", "")
        )
        if registry is not None:
            return [
                Item(k, "value", extra["registry"], v.doc) for k, v in sorted(registry.items())
            ]
        ann = info.annotation
        for t in (ann, *typing.get_args(ann)):
            if typing.get_origin(t) is typing.Literal:
                out += [Item(str(v), "value", arg) for v in typing.get_args(t)]
            if t is bool:
                out += [Item("true", "value", arg), Item("false", "value", arg)]
    if arg == "encoder":
        out += [Item(k, "value", "encoder", v.doc) for k, v in sorted(ENCODERS.items())]
    out += [Item(p, "parameter", "parameter") for p in _header(doc, pos)]
    return out


_WORDS = re.compile(r"[\w\-]+(?:=(?:\([^)]*\)|[^\s]*))?")


def complete(doc: Document, pos: Pos, analysis: Analysis | None) -> list[Item]:
    """The completion items at ``pos`` (never raises on odd text: unknown -> [])."""
    prefix = _STRIP.sub('""', doc.prefix(pos))
    stack = _enclosing(doc, pos)
    m = re.search(r"(\w+)\.(\w*)$", prefix)
    if (
        m
        and analysis is not None
        and analysis.env is not None
        and m.group(1) in analysis.env.imports
    ):
        sub = analysis.env.imports[m.group(1)]
        return [Item(n, "block", f"block {n}") for n in sub.blocks] + [
            Item(n, "parameter", "let") for n in sub.lets
        ]
    body = prefix.lstrip()
    if body.startswith("}"):
        body = body.lstrip("} ")
    if re.fullmatch(r"[\w.]*", body):
        return _statement(stack, doc, analysis)
    tokens = body.split()
    head = tokens[0]
    if head in ("else",) or head in RESERVED - {"prior", "insert"}:
        return [Item(p, "parameter", "parameter") for p in _header(doc, pos)]
    m = re.search(r"(\w+)=\s*(\w*)$", body)
    plain = [t for t in tokens[1 : -1 if not body.endswith(" ") else None] if "=" not in t]
    if m:
        return _values(head, plain, m.group(1), doc, pos, analysis)
    if len(tokens) == 1 or (len(tokens) == 2 and not body.endswith(" ")):
        items = _second(head, stack)
        if items is not None:
            return items
    given = {t.split("=", 1)[0] for t in tokens[1:] if "=" in t}
    if stack and stack[-1] == "train":
        return _train_options(head, plain, given)
    model = _args_model(head, plain)
    return _arg_items(model, given) if model is not None else []
