"""``.flow`` texts for the tests, written a line per argument.

``t`` is shared by the error tables (``test_errors_*.py``) and the language tests.
"""

from __future__ import annotations


def t(*lines: str) -> str:
    """A .flow text, one argument per line (so columns are easy to read off)."""
    return "\n".join(lines) + "\n"
