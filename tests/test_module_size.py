"""No module over 600 lines unless its docstring says why.

The house limit: every ``.py`` file under ``flowspec/``, ``runtime/``, ``bench/``,
``scripts/``, ``tests/`` and ``examples/`` has at most :data:`LIMIT` lines, or says in its
module docstring (``ast.get_docstring``) why it is "longer than" that, e.g.
flowspec/interpret.py: "It is longer than most modules because it is one class: ...".
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("flowspec", "runtime", "bench", "scripts", "tests", "examples")
LIMIT = 600
REASON = "longer than"


def over_the_limit() -> dict[str, int]:
    """Repository-relative path -> line count of each module over the limit that gives no
    reason for it."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            if lines <= LIMIT:
                continue
            docstring = ast.get_docstring(ast.parse(text, str(path))) or ""
            if REASON not in docstring:
                found[path.relative_to(ROOT).as_posix()] = lines
    return found


def test_the_check_sees_the_documented_exception() -> None:
    interpret = ROOT / "flowspec" / "interpret.py"
    assert len(interpret.read_text(encoding="utf-8").splitlines()) > LIMIT
    assert REASON in (ast.get_docstring(ast.parse(interpret.read_text(encoding="utf-8"))) or "")
    assert "flowspec/interpret.py" not in over_the_limit()


def test_no_module_is_over_the_limit_without_a_reason() -> None:
    found = over_the_limit()
    assert not found, (
        f"modules over {LIMIT} lines whose docstring does not say why (no {REASON!r}); split "
        f"each, or write at the top of its docstring why it is {REASON} ... because ...:\n"
        + "\n".join(f"  {path}: {lines} lines" for path, lines in sorted(found.items()))
    )
