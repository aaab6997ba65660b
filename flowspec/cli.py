"""The `flowspec` command line.

Exit codes: 0 success, 1 the spec (or data, or a run) has an error, 2 usage error.
Spec errors are printed as compiler diagnostics on stderr, never as a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .errors import FlowSpecError


class UsageError(Exception):
    pass


def _overrides(pairs: list[str] | None) -> dict[str, Any]:
    from .resolve import parse_override

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--set expects NAME=VALUE, got `{pair}`")
        k, v = pair.split("=", 1)
        out[k.strip()] = parse_override(v)
    return out


def _spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .flow file")
    p.add_argument("--flow", help="which flow of the file (when it defines several)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override a flow parameter (repeatable)")


def _fmt_args(args: dict[str, Any], kind: str) -> str:
    from .evaluate import format_value
    from .kinds import KINDS

    defaults = KINDS[kind].Args().model_dump()
    shown = [f"{k}={format_value(v)}" for k, v in args.items()
             if v is not None and v != defaults.get(k)]
    return " ".join(shown)


def _shape(s) -> str:
    return "x".join(str(d) for d in s) if s else "?"


def _table(spec) -> str:
    from .kinds import count_params

    rows = [("path", "kind", "arguments", "shape")]
    for layer in spec.layers:
        rows.append((layer.path, layer.kind.replace(".", " "), _fmt_args(layer.args, layer.kind),
                     f"{_shape(layer.in_shape)} -> {_shape(layer.out_shape)}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"flow {spec.name}  (input {_shape(spec.input)}, {len(spec.layers)} layers)"]
    for i, r in enumerate(rows):
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
        if i == 0:
            lines.append("  " + "-" * (sum(widths) + 6 + max(len(x[3]) for x in rows)))
    for c in spec.conditions:
        enc = " ".join(f"{k}={v}" for k, v in c.encoder.args.items())
        lines.append(f"condition {c.name}: {c.type} {_shape(c.shape)} encoder={c.encoder.kind}"
                     f"({enc})")
    prior = "gaussian" + (" learned" if spec.prior.learned else "") + (
        f" on={spec.prior.on}" if spec.prior.on else "")
    lines.append(f"prior {prior}")
    lines.append("latents " + ", ".join(f"{z.name} {_shape(z.shape)}" for z in spec.latents))
    n = sum(count_params(spec).values())
    lines.append(f"parameters {n:,} ({n / 1e6:.3f} M; {4 * n / 1e6:.2f} MB as float32)")
    return "\n".join(lines)


def cmd_check(a: argparse.Namespace) -> int:
    from .api import analyze

    specs, diags = analyze(a.spec, a.flow, _overrides(a.set), all_flows=a.flow is None)
    errors = [d for d in diags if d.severity == "error"]
    if a.format == "json":
        payload = {"ok": not errors, "diagnostics": [d.to_json() for d in diags],
                   "flows": [] if errors else [s.model_dump(mode="json") for s in specs]}
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
    print("\n\n".join(_table(s) for s in specs))
    return 0


def cmd_fmt(a: argparse.Namespace) -> int:
    from .fmt import format_text

    with open(a.spec, encoding="utf-8") as f:
        text = f.read()
    out = format_text(text, a.spec)
    if a.check:
        if out != text:
            print(f"{a.spec} is not formatted (run `flowspec fmt --write {a.spec}`)",
                  file=sys.stderr)
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
    from .ir import FlowSpec

    print(json.dumps(FlowSpec.model_json_schema(), indent=2))
    return 0


COMMANDS: dict[str, Any] = {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flowspec", description="Compile .flow model specs of "
                                "normalizing flows: check, build, render, train.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate a spec and print its layers and shapes")
    _spec_args(c)
    c.add_argument("--format", choices=("text", "json"), default="text")
    c.set_defaults(func=cmd_check)
    f = sub.add_parser("fmt", help="format a spec canonically (keeps comments)")
    f.add_argument("spec")
    g = f.add_mutually_exclusive_group()
    g.add_argument("--check", action="store_true", help="exit 1 if not formatted")
    g.add_argument("--write", action="store_true", help="rewrite the file in place")
    f.set_defaults(func=cmd_fmt)
    s = sub.add_parser("schema", help="print the JSON Schema of the IR")
    s.set_defaults(func=cmd_schema)
    for register, _ in COMMANDS.values():
        register(sub)
    return p


def _register_runtime_commands() -> None:
    """Commands whose modules need torch register themselves here (imported lazily)."""
    from . import cli_torch

    cli_torch.register(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    try:
        _register_runtime_commands()
    except ImportError:
        pass
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a.func(a)
    except UsageError as e:
        print(f"flowspec: error: {e}", file=sys.stderr)
        return 2
    except FlowSpecError as e:
        print(str(e), file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"flowspec: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowspec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: short message, traceback only on request
        if os.environ.get("FLOWSPEC_DEBUG"):
            raise
        print(f"flowspec: internal error: {type(e).__name__}: {e}\n"
              "(set FLOWSPEC_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
