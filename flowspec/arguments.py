"""Arguments of layers, priors, encoders and registry entries, checked against their Args.

Every kind declares its arguments as a pydantic model; :func:`validate_args` turns what a
statement wrote into that model's values (defaults filled in) or into diagnostics that
point at the argument, never a pydantic traceback. A registry argument may be written as a
call (``net=flowpp(blocks=4)``): its arguments are checked against the entry's own Args.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .errors import Abort, Collector, Span, did_you_mean
from .evaluate import EncoderCall, Word, format_value, type_name
from .kinds import REGISTRIES, args_key
from .values import plain

__all__ = ["validate_args"]


class _Noted:
    """A Collector that adds the same notes to every diagnostic."""

    def __init__(self, diags: Collector, notes: list[str]) -> None:
        self.diags, self.notes = diags, notes

    def error(self, *args: Any, **kw: Any) -> Any:
        kw["notes"] = [*self.notes, *(kw.get("notes") or [])]
        return self.diags.error(*args, **kw)


# Valid argument sets seen before, per Args model: a flow instantiates the same few layer
# statements thousands of times, and pydantic validation dominated resolving them.
_VALID_ARGS: dict[tuple, dict[str, Any]] = {}
_FIELDS: dict[type, dict] = {}


def _registry_of(info: Any) -> str | None:
    extra = info.json_schema_extra
    return extra.get("registry") if isinstance(extra, dict) else None


def _registry_calls(
    raw: dict[str, Any],
    spans: dict[str, Span],
    span: Span,
    fields: dict,
    diags: Collector,
    what: str,
) -> dict[str, Any]:
    """``net=flowpp(blocks=4)``: a registry argument written as a call becomes ``net`` and
    ``net_args``, the call's arguments checked against the entry's Args."""
    out = dict(raw)
    for name, value in raw.items():
        if not isinstance(value, EncoderCall) or name not in fields:
            continue
        registry = _registry_of(fields[name])
        if registry is None or f"{name}_args" not in fields:
            continue  # pydantic reports the type error
        table = REGISTRIES[registry]
        if value.name not in table:
            diags.error(
                "E122",
                f"unknown {registry} `{value.name}` for `{name}` of {what}",
                value.span,
                help=did_you_mean(value.name, table)
                or (
                    f"{registry}s: {', '.join(sorted(table))}; a plugin's {registry} "
                    "is loaded with --plugin MODULE"
                ),
            )
            raise Abort
        out[name] = Word(value.name)
        out[f"{name}_args"] = validate_args(
            table[value.name].Args,
            value.args,
            value.arg_spans,
            value.span,
            diags,
            what=f"{registry} `{value.name}`",
        )
        spans.setdefault(f"{name}_args", value.span)
    return out


def validate_args(
    model,
    raw: dict[str, Any],
    spans: dict[str, Span],
    span: Span,
    diags: Collector,
    *,
    what: str,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Check ``raw`` against a kind's pydantic Args; every problem becomes a diagnostic
    (with ``notes``: where the statement was instantiated)."""
    diags = _Noted(diags, notes) if notes else diags
    key = args_key(raw)  # None: an unhashable value, validated the slow way
    key = None if key is None else (model, key)
    known = None if key is None else _VALID_ARGS.get(key)
    if known is not None:
        return dict(known)
    fields = _FIELDS.get(model)
    if fields is None:
        fields = _FIELDS[model] = model.model_fields
    raw = _registry_calls(raw, spans, span, fields, diags, what)
    clean = {}
    ok = True
    for name, value in raw.items():
        if name not in fields:
            diags.error(
                "E105",
                f"unknown argument `{name}` for {what}",
                spans.get(name, span),
                help=did_you_mean(name, fields)
                or ("arguments: " + ", ".join(fields) if fields else f"{what} takes no arguments"),
            )
            ok = False
            continue
        ann = fields[name].annotation
        if ann is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        clean[name] = plain(value)
    if not ok:
        raise Abort
    try:
        valid = model(**clean).model_dump()
    except ValidationError as err:
        _report_invalid(err, raw, spans, span, fields, diags, what)
        raise Abort from None
    for name, info in fields.items():
        registry = _registry_of(info)
        if registry and valid[name] not in REGISTRIES[registry]:
            table = REGISTRIES[registry]
            diags.error(
                "E122",
                f"unknown {registry} `{valid[name]}` for `{name}` of {what}",
                spans.get(name, span),
                help=did_you_mean(str(valid[name]), table)
                or (
                    f"{registry}s: {', '.join(sorted(table))}; a plugin's {registry} "
                    "is loaded with --plugin MODULE"
                ),
            )
            raise Abort
        if registry and f"{name}_args" in fields and not valid[f"{name}_args"]:
            # a bare `net=NAME`: the entry's defaults, so the IR holds every argument
            valid[f"{name}_args"] = REGISTRIES[registry][valid[name]].Args().model_dump()
    if key is not None:
        if len(_VALID_ARGS) > 10_000:
            _VALID_ARGS.clear()
        _VALID_ARGS[key] = valid
    return dict(valid)


def _report_invalid(
    err: ValidationError,
    raw: dict[str, Any],
    spans: dict[str, Span],
    span: Span,
    fields: dict,
    diags: Collector,
    what: str,
) -> None:
    """Each of pydantic's errors about the arguments ``raw`` as a diagnostic at its argument."""
    for e in err.errors():
        name = str(e["loc"][0]) if e["loc"] else ""
        given = raw.get(name)
        where = spans.get(name, span)
        if e["type"] in ("literal_error", "enum"):
            choices = e.get("ctx", {}).get("expected", "")
            diags.error(
                "E122",
                f"invalid value {format_value(given)} for `{name}` of {what}",
                where,
                help=f"expected {choices}".replace("'", "")
                if not getattr(given, "hint", None)
                else given.hint,
            )
        elif e["type"] == "value_error":  # an Args validator said why (plugins too)
            why = str(e.get("ctx", {}).get("error", e["msg"]))
            diags.error(
                "E122", f"invalid value {format_value(given)} for `{name}` of {what}: {why}", where
            )
        elif e["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            diags.error(
                "E122",
                f"`{name}` of {what} is out of range: {e['msg'].lower()}, "
                f"got {format_value(given)}",
                where,
            )
        else:
            want = fields[name].annotation if name in fields else None
            want_s = {
                int: "an integer",
                float: "a number",
                bool: "true or false",
                str: "a name or string",
            }.get(want, str(want).replace("typing.", ""))
            diags.error(
                "E121",
                f"`{name}` of {what} must be {want_s}, got {type_name(given)}",
                where,
                help=getattr(given, "hint", None),
            )
