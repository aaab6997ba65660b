"""``.flow`` texts for the tests: written a line per argument, resolved with a JSON round trip.

``t`` is shared by the error tables (``test_errors_*.py``) and the language tests
(``test_language_*.py``); ``ir`` and the rest are the language tests' view of a resolved spec.
"""

from __future__ import annotations

import json

from flowspec.api import loads
from flowspec.ir import FlowSpec


def t(*lines: str) -> str:
    """A .flow text, one argument per line (so columns are easy to read off)."""
    return "\n".join(lines) + "\n"


def ir(text: str, flow: str | None = None, overrides: dict | None = None, **kw) -> FlowSpec:
    """The resolved spec of ``text``, after a JSON round trip of the IR (``model_dump_json`` ->
    ``FlowSpec.model_validate_json``): everything after resolve -- the builder, the renderer,
    run directories -- only sees that JSON."""
    spec = loads(text, flow=flow, overrides=overrides, **kw)
    assert_json_round_trip(spec)
    return spec


def assert_json_round_trip(spec: FlowSpec) -> None:
    text = spec.model_dump_json()
    json.loads(text)
    again = FlowSpec.model_validate_json(text)
    assert again == spec
    assert again.model_dump() == spec.model_dump()


def paths(spec: FlowSpec) -> list[str]:
    return [layer.path for layer in spec.layers]


def kinds(spec: FlowSpec) -> list[str]:
    return [layer.kind for layer in spec.layers]


#: a two-level base flow that the ``extends`` and insert-rule tests derive flows from
PARENT = t(
    "flow base(L = 2, K = 2, hidden = 8, lu = true) {",
    "  input 1x16x16",
    "  prior gaussian",
    "  for l in 1..L {",
    "    level {",
    "      squeeze",
    "      step x K {",
    "        actnorm",
    "        invconv lu=lu",
    "        coupling affine hidden=hidden",
    "      }",
    "      if l < L { split }",
    "    }",
    "  }",
    "  train {",
    "    task generation",
    "    batch 8",
    "    steps 100",
    "  }",
    "}",
)
