"""The TextMate grammar of editors/vscode, tokenised in Python: its regexes compile under
``re`` (they are kept to the subset Oniguruma and Python share), keywords, numbers, strings,
comments and layer kinds get their scopes, its kind names are the registry's, and every
line of every shipped spec tokenises with nothing left over but plain names and blanks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from flowspec.kinds import heads

ROOT = Path(__file__).resolve().parents[1]
GRAMMAR = json.loads((ROOT / "editors/vscode/syntaxes/flowspec.tmLanguage.json").read_text())
SPECS = sorted([*ROOT.glob("specs/**/*.flow"), *ROOT.glob("examples/**/*.flow")])


def _rules(patterns: list[dict]) -> list[dict]:
    """The grammar's rules in order, includes expanded."""
    out = []
    for p in patterns:
        if "include" in p:
            out += _rules([GRAMMAR["repository"][p["include"][1:]]])
        elif "patterns" in p and "match" not in p and "begin" not in p:
            out += _rules(p["patterns"])
        else:
            out.append(p)
    return out


RULES = [
    {**r, **{k: re.compile(r[k]) for k in ("match", "begin", "end") if k in r}}
    for r in _rules(GRAMMAR["patterns"])
]


def tokenise(line: str) -> list[tuple[str, str]]:
    """(text, scope) for each token of one line; unscoped text as (text, "")."""
    out, pos = [], 0
    while pos < len(line):
        best = None
        for r in RULES:
            m = (r.get("match") or r["begin"]).search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[1].start()):
                best = (r, m)
        if best is None:
            out.append((line[pos:], ""))
            break
        r, m = best
        if m.start() > pos:
            out.append((line[pos : m.start()], ""))
        if "begin" in r:
            end = r["end"].search(line, m.end())
            stop = end.end() if end else len(line)
            out.append((line[m.start() : stop], r["name"]))
            pos = stop
            continue
        if "captures" in r:
            for i, cap in sorted(r["captures"].items()):
                out.append((m.group(int(i)), cap["name"]))
        else:
            out.append((m.group(0), r["name"]))
        pos = m.end()
    return out


def _scope(line: str, text: str) -> str:
    return next(s for t, s in tokenise(line) if t == text)


def test_scopes():
    assert GRAMMAR["scopeName"] == "source.flowspec"
    line = "flow demo(L = 2 in 1..8) {  # a comment"
    assert _scope(line, "flow").startswith("keyword")
    assert _scope(line, "demo").startswith("entity.name.function")
    assert _scope(line, "2").startswith("constant.numeric")
    assert _scope(line, "# a comment").startswith("comment")
    assert _scope('import "lib/steps.flow" as lib', '"lib/steps.flow"').startswith("string")
    line = "  coupling affine hidden=512 lr=8e-4 flip=true"
    assert _scope(line, "coupling").startswith("support.function.kind")
    assert _scope(line, "hidden").startswith("variable.parameter")
    assert _scope(line, "8e-4").startswith("constant.numeric.float")
    assert _scope(line, "true").startswith("constant.language")
    assert _scope("  input 3x32x32", "3x32x32").startswith("constant.numeric.shape")
    assert _scope("    step x K {", "step").startswith("keyword.control")
    assert _scope("    split prior=learned", "prior").startswith("variable.parameter")


def test_kind_names_are_the_registry_heads():
    pattern = GRAMMAR["repository"]["kind"]["match"]
    written = set(re.search(r"\(([^)]*)\)", pattern).group(1).split("|"))
    builtin = {
        h
        for h, v in heads().items()
        if all(k.__module__.startswith("flowspec.") for k in v.values())
    }
    assert written == builtin


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_line_tokenises(path):
    for n, line in enumerate(path.read_text().split("\n"), 1):
        for text, scope in tokenise(line):
            if not scope:  # left over: only plain names (flow parameters, blocks) and blanks
                assert re.fullmatch(r"[\sA-Za-z0-9_\-]*", text), f"{path}:{n}: {text!r}"
