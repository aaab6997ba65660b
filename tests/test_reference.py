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
        "docs/language.md is stale: run `python -m flowspec.reference --write docs/language.md`")


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
    for table, reg in (("kinds", KINDS), ("nets", NETS), ("encoders", ENCODERS),
                       ("priors", PRIORS)):
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
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=True)
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_every_data_option_and_set_is_in_the_reference() -> None:
    from flowspec.datasets import BUILTIN, FORMATS, OPTIONS

    text = language_reference()
    for name in (*OPTIONS, *BUILTIN, *FORMATS):
        assert f"| `{name}` |" in text, name


def test_data_declarations_are_torch_free() -> None:
    code = "import sys, flowspec.datasets, flowspec.recipe; print('torch' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, check=True)
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_data_options_are_checked_per_source() -> None:
    from flowspec.datasets import option_error

    assert option_error("fashion-seg", {"threshold": 20, "limit": 5, "pad": 2}) is None
    assert "unknown data option `threshold`" in option_error("digits", {"threshold": 3})
    assert "between 0 and 254" in option_error("fashion-seg", {"threshold": 300})
    assert option_error("/some/folder", {"size": 64, "channels": 3}) is None
    assert option_error("/some/folder", {"size": (32, 48)}) is None
    assert "one of idx" in option_error("images", {"root": "x", "format": "zip"})
