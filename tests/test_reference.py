"""The language reference is complete and current."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from flowspec.kinds import ENCODERS, KINDS, NETS, PRIORS
from flowspec.reference import STATEMENTS, language_reference, vocabulary_json

ROOT = Path(__file__).resolve().parents[1]


def test_docs_language_md_is_current() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert text == language_reference(), (
        "docs/language.md is stale: run `python -m flowspec.reference --write docs/language.md`"
    )


def _grammar_statements() -> set[str]:
    grammar = (ROOT / "flowspec" / "grammar" / "flow.lark").read_text()
    rules = set()
    for head in ("_stmt", "_item"):
        body = re.search(rf"^{head}:(.*?)(?=^\S)", grammar, re.MULTILINE | re.DOTALL).group(1)
        rules |= set(re.findall(r"[a-z_]+", body))
    return rules | {"header"}


def test_every_statement_of_the_grammar_is_documented() -> None:
    documented = {rule for rule, *_ in STATEMENTS}
    missing = _grammar_statements() - documented
    assert not missing, f"statements without a reference entry: {sorted(missing)}"


def test_every_registered_entry_and_argument_is_in_the_reference() -> None:
    text = language_reference()
    for table, reg in (
        ("kinds", KINDS),
        ("nets", NETS),
        ("encoders", ENCODERS),
        ("priors", PRIORS),
    ):
        for key, cls in reg.items():
            if not cls.__module__.startswith("flowspec."):
                continue
            entry = next(e for e in vocabulary_json()[table] if e["key"] == key)
            assert f"### `{entry['written']}`" in text
            for name, info in cls.Args.model_fields.items():
                if "args_of" not in (info.json_schema_extra or {}):
                    assert f"| `{name}` |" in text
            assert cls.doc, f"{table} `{key}` has no doc"


def test_every_statement_example_parses() -> None:
    from flowspec.parse import parse

    for rule, _, _, example in STATEMENTS:
        if rule in ("header", "import_stmt", "let_stmt", "block_def", "flow_def"):
            source = example
        else:
            source = "flow f {\n" + example + "\n}"
        parse(source + "\n", f"<{rule}>")


def test_kinds_command_is_torch_free() -> None:
    code = "import sys, flowspec.cli; flowspec.cli.main(['kinds']); print('torch' in sys.modules)"
    p = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_every_data_option_and_set_is_in_the_reference() -> None:
    from flowspec.datasets import BUILTIN, FORMATS, OPTIONS

    text = language_reference()
    for name in (*OPTIONS, *BUILTIN, *FORMATS):
        assert f"| `{name}` |" in text, name


def test_data_declarations_are_torch_free() -> None:
    code = "import sys, flowspec.datasets, flowspec.recipe; print('torch' in sys.modules)"
    p = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_data_options_are_checked_per_source() -> None:
    from flowspec.datasets import option_error

    assert option_error("fashion-seg", {"threshold": 20, "limit": 5, "pad": 2}) is None
    assert "unknown data option `threshold`" in option_error("digits", {"threshold": 3})
    assert "between 0 and 254" in option_error("fashion-seg", {"threshold": 300})
    assert option_error("/some/folder", {"size": 64, "channels": 3}) is None
    assert option_error("/some/folder", {"size": (32, 48)}) is None
    assert "one of idx" in option_error("images", {"root": "x", "format": "zip"})


def test_ranges_are_intervals_that_show_exclusive_bounds() -> None:
    from pydantic import BaseModel, Field

    from flowspec.reference import argument_rows

    class Args(BaseModel):
        tail: float = Field(3.0, gt=0, le=1e4)
        dropout: float = Field(0.0, ge=0.0, lt=1)
        alpha: float = Field(0.05, gt=0.0, lt=0.5)
        hidden: int = Field(512, ge=1, le=8192)
        floor: float = Field(1.0, ge=1e-3)
        free: int = 3

    rows = {r["name"]: r for r in argument_rows(Args)}
    assert {n: r["range"] for n, r in rows.items()} == {
        "tail": "(0, 10000]",
        "dropout": "[0, 1)",
        "alpha": "(0, 0.5)",
        "hidden": "[1, 8192]",
        "floor": "[0.001, inf)",
        "free": "",
    }
    assert {n: r["bounds"] for n, r in rows.items()} == {
        "tail": {"gt": 0, "le": 1e4},
        "dropout": {"ge": 0.0, "lt": 1},
        "alpha": {"gt": 0.0, "lt": 0.5},
        "hidden": {"ge": 1, "le": 8192},
        "floor": {"ge": 1e-3},
        "free": {},
    }


def test_exclusive_bounds_in_text_json_and_markdown(cli) -> None:
    """`coupling spline` declares tail with gt=0, le=1e4; the Flow++ net dropout with lt=1."""
    import json

    rc, out, _ = cli("kinds")
    assert rc == 0
    assert "tail=3.0  (float in (0, 10000])" in out
    assert "dropout=0.0  (float in [0, 1))" in out
    rc, out, _ = cli("kinds", "--format", "json")
    data = json.loads(out)
    spline = next(e for e in data["kinds"] if e["key"] == "coupling.spline")
    tail = next(a for a in spline["args"] if a["name"] == "tail")
    assert tail["bounds"] == {"gt": 0.0, "le": 10000.0} and tail["range"] == "(0, 10000]"
    flowpp = next(e for e in data["nets"] if e["key"] == "flowpp")
    dropout = next(a for a in flowpp["args"] if a["name"] == "dropout")
    assert dropout["bounds"] == {"ge": 0.0, "lt": 1.0}
    rc, out, _ = cli("kinds", "--format", "markdown")
    assert "| `tail` | float | `3.0` | (0, 10000] |" in out
    assert "| `dropout` | float | `0.0` | [0, 1) |" in out
    assert "| `hidden` | int | `512` | [1, 8192] |" in out
