"""Helpers on IR data shared by the tests (torch-free)."""

from __future__ import annotations


def strip_spans(data):
    """The IR without source positions (spans, and traces that quote positions)."""
    if isinstance(data, dict):
        return {
            k: strip_spans(v)
            for k, v in data.items()
            if not (k == "span" or k.endswith("_span") or k in ("arg_spans", "trace"))
        }
    if isinstance(data, list):
        return [strip_spans(v) for v in data]
    return data
