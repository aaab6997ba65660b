"""The front-end commands: check, fmt, schema, kinds, verify (torch only inside verify), lsp."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .commands import overrides, spec_args
from .evaluate import display_value
from .kinds import args_key, nondefault_args


def _fmt_args(args: dict[str, Any], kind: str, seen: dict) -> str:
    """The arguments column; ``seen`` remembers rows already formatted (a flow repeats the
    same layer with the same arguments many times)."""
    key = args_key(args)
    key = None if key is None else (kind, key)
    if key is not None and key in seen:
        return seen[key]
    out = " ".join(f"{k}={display_value(v)}" for k, v in nondefault_args(kind, args).items())
    if key is not None:
        seen[key] = out
    return out


def _shape(s) -> str:
    return "x".join(map(str, s)) if s else "?"


def _table(spec, counted: dict | None = None) -> str:
    """The summary ``check`` prints of a checked flow; ``counted`` as for
    :func:`~flowspec.kinds.count_params`, shared by the tables of one file."""
    from .kinds import count_params, estimated_layers

    estimated = set(estimated_layers(spec))
    head = ("path", "kind", "arguments", "shape")
    paths, kinds, args, shapes = [head[0]], [head[1]], [head[2]], [head[3]]
    seen: dict = {}
    for layer in spec.layers:
        mark = " ~" if layer.path in estimated else ""  # footnoted below the table
        paths.append(layer.path)
        kinds.append(layer.kind.replace(".", " ") + mark)
        args.append(_fmt_args(layer.args, layer.kind, seen))
        shapes.append(f"{_shape(layer.in_shape)} -> {_shape(layer.out_shape)}")
    wp, wk, wa = (max(map(len, column)) for column in (paths, kinds, args))
    lines = [f"flow {spec.name}  (input {_shape(spec.input)}, {len(spec.layers)} layers)"]
    lines += [
        f"  {p.ljust(wp)}  {k.ljust(wk)}  {a.ljust(wa)}  {s}"
        for p, k, a, s in zip(paths, kinds, args, shapes)
    ]
    lines.insert(2, "  " + "-" * (wp + wk + wa + 6 + max(map(len, shapes))))
    from .evaluate import format_value

    for c in spec.conditions:
        args = dict(c.encoder.args)
        name = f"{args.pop('flow')}(" if c.flow is not None else ""  # encoder=flow(NAME(...))
        enc = ", ".join(
            f"{k}={v if c.flow is not None else format_value(v)}"
            for k, v in args.items()
            if v is not None
        )  # None: left unset
        close = ")" if c.flow is not None else ""
        lines.append(
            f"condition {c.name}: {c.declared()} encoder={c.encoder.kind}({name}{enc}{close})"
        )

    p = spec.prior
    prior = (
        p.kind
        + (" learned" if p.learned else "")
        + (f" on={p.on}" if p.on else "")
        + "".join(f" {k}={format_value(v)}" for k, v in p.args.items())
    )
    lines.append(f"prior {prior}")
    lines.append("latents " + ", ".join(f"{z.name} {_shape(z.shape)}" for z in spec.latents))
    n = sum(count_params(spec, counted=counted).values())
    lines.append(f"parameters {n:,} ({n / 1e6:.3f} M; {4 * n / 1e6:.2f} MB as float32)")
    if estimated:
        lines.append(
            f"~ log-det estimated, unbiased but stochastic, in {len(estimated)} layers: "
            "log-likelihoods and bits/dim are estimates"
        )
    return "\n".join(lines)


@contextmanager
def _no_collections() -> Iterator[None]:
    """Analysing a file allocates many small objects that reference counting frees; Python's
    cyclic collector, run every 700 allocations, finds nothing to free in them and cost
    ``flowspec check`` about 4% (63M of 1,790M instructions on the largest spec). It is off
    while the command analyses (a short-lived process; switched back on after)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def cmd_check(a: argparse.Namespace) -> int:
    with _no_collections():
        return _check(a)


def _check(a: argparse.Namespace) -> int:
    from .api import analyze

    specs, diags = analyze(a.spec, a.flow, overrides(a.set), all_flows=a.flow is None)
    errors = [d for d in diags if d.severity == "error"]
    if a.format == "json":
        payload = {
            "ok": not errors,
            "diagnostics": [d.to_json() for d in diags],
            "flows": [] if errors else [s.model_dump(mode="json") for s in specs],
        }
        print(json.dumps(payload, indent=2))
        return 1 if errors else 0
    for d in diags:
        print(d.render() + "\n", file=sys.stderr)
    if errors:
        n = len(errors)
        print(f"{n} error{'s' if n > 1 else ''} in {a.spec}", file=sys.stderr)
        return 1
    if not specs:
        print(f"{a.spec}: defines no flow (a library); its syntax and imports are valid")
        return 0
    counted: dict = {}
    print("\n\n".join(_table(s, counted) for s in specs))
    return 0


def cmd_fmt(a: argparse.Namespace) -> int:
    from .fmt import format_text

    with open(a.spec, encoding="utf-8") as f:
        text = f.read()
    out = format_text(text, a.spec)
    if a.check:
        if out != text:
            print(
                f"{a.spec} is not formatted (run `flowspec fmt --write {a.spec}`)", file=sys.stderr
            )
            return 1
        return 0
    if a.write:
        if out != text:
            tmp = a.spec + ".fmt.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(out)
            os.replace(tmp, a.spec)
        return 0
    sys.stdout.write(out)
    return 0


def cmd_schema(a: argparse.Namespace) -> int:
    from .ir import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_kinds(a: argparse.Namespace) -> int:
    from .reference import vocabulary_json, vocabulary_markdown, vocabulary_text

    render = {"text": vocabulary_text, "markdown": vocabulary_markdown}.get(a.format)
    if render is None:
        print(json.dumps(vocabulary_json(), indent=2))
    else:
        sys.stdout.write(render())
    return 0


def cmd_verify(a: argparse.Namespace) -> int:
    from .api import load
    from .build import resolve_device
    from .verify import verify

    # a device this machine lacks was refused by main (check_device)
    spec = load(a.spec, a.flow, overrides(a.set))
    report = verify(spec, full=a.full, seed=a.seed, device=resolve_device(a.device))
    if a.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.table())
    if not report.ok:
        if a.format != "json":
            print(report.failure_message(), file=sys.stderr)
        return 1
    return 0


def cmd_lsp(a: argparse.Namespace) -> int:
    import importlib.util

    from .errors import FlowError

    if importlib.util.find_spec("pygls") is None:  # an optional extra: exit 1, one line
        raise FlowError("`flowspec lsp` needs pygls: pip install 'flowspec[lsp]'")
    from .lsp.server import serve

    return serve()


def register(commands: dict[str, Any]) -> None:
    commands["check"] = (_reg_check, cmd_check)
    commands["fmt"] = (_reg_fmt, cmd_fmt)
    commands["schema"] = (_reg_schema, cmd_schema)
    commands["kinds"] = (_reg_kinds, cmd_kinds)
    commands["verify"] = (_reg_verify, cmd_verify)
    commands["lsp"] = (_reg_lsp, cmd_lsp)


def _reg_check(sub: Any) -> None:
    c = sub.add_parser("check", help="validate a spec and print its layers and shapes")
    spec_args(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.set_defaults(func=cmd_check)


def _reg_fmt(sub: Any) -> None:
    f = sub.add_parser("fmt", help="format a spec canonically (keeps comments)")
    f.add_argument("spec")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if not formatted")
    g.add_argument("--write", action="store_true", help="rewrite the file in place")
    f.set_defaults(func=cmd_fmt)


def _reg_schema(sub: Any) -> None:
    s = sub.add_parser("schema", help="print the JSON Schema of the IR")
    s.set_defaults(func=cmd_schema)


def _reg_kinds(sub: Any) -> None:
    k = sub.add_parser(
        "kinds",
        help="list every layer kind, net, encoder and prior (built-in "
        "and plugin) with its arguments",
    )
    k.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    k.set_defaults(func=cmd_kinds)


def _reg_verify(sub: Any) -> None:
    v = sub.add_parser(
        "verify",
        help="check every distinct layer's log-det against the "
        "autograd Jacobian (float64) and its inverse, then the whole model",
    )
    spec_args(v)
    v.add_argument(
        "--full",
        action="store_true",
        help="check the layers at their real size (default: the smallest spatial "
        "size their shape rules accept)",
    )
    v.add_argument("--seed", type=int, default=0)
    v.add_argument(
        "--device",
        default="cpu",
        help="where the layers and the model run: cpu (default), auto, cuda or "
        "cuda:N (float64 either way; the prior's density checks run on the CPU)",
    )
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.set_defaults(func=cmd_verify)


def _reg_lsp(sub: Any) -> None:
    s = sub.add_parser(
        "lsp", help="run the language server for editors (LSP over stdio; needs flowspec[lsp])"
    )
    s.set_defaults(func=cmd_lsp)
