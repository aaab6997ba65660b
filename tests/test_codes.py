"""The table of diagnostic codes (flowspec/codes.py) holds every code the source uses, each
once, and is what the language reference lists."""

from __future__ import annotations

import re
from pathlib import Path

from flowspec import codes
from flowspec.codes import CODES

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [
    p
    for d in ("flowspec", "runtime")
    for p in sorted((ROOT / d).rglob("*.py"))
    if p.name != "codes.py"
]
CONSTANTS = {name: value for name, value in vars(codes).items() if name[:2] in ("E_", "W_")}


def _source() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)


def test_codes_are_well_formed_unique_and_each_has_one_constant() -> None:
    assert all(re.fullmatch(r"[EW]\d{3}", c) for c in CODES)
    assert all(c.startswith(name[0]) for name, c in CONSTANTS.items())
    assert sorted(CONSTANTS.values()) == sorted(CODES), "a code without a constant, or two"
    assert all(meaning and "\n" not in meaning for meaning in CODES.values())


def test_every_code_in_the_source_is_in_the_table() -> None:
    text = _source()
    literals = set(re.findall(r"[\"']([EW]\d{3})[\"']", text))
    assert literals <= set(CODES), sorted(literals - set(CODES))
    named = set(re.findall(r"\bcodes\.([EW]_\w+)", text))
    assert named <= set(CONSTANTS), sorted(named - set(CONSTANTS))


def test_every_code_of_the_table_is_used() -> None:
    text = _source()
    unused = [
        c
        for name, c in CONSTANTS.items()
        if not re.search(rf"\bcodes\.{name}\b|[\"']{c}[\"']", text)
    ]
    assert not unused, f"codes no diagnostic reports: {unused}"


def test_the_language_reference_lists_the_table() -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = text.split("## Diagnostic codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([EW]\d{3}) \| (.*) \|$", section, re.MULTILINE)
    assert [code for code, _ in rows] == list(CODES)
