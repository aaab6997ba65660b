"""CLI commands that need torch (compile, train, eval, sample) and graphviz (render).

Only argument parsers are defined at import time; torch is imported inside the handlers,
so `flowspec check` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from .commands import (
    UsageError,
    add_build_options,
    build_options,
    overrides,
    spec_args,
)
from .diagram_style import DETAILS, RANKDIRS


def cmd_compile(a: argparse.Namespace) -> int:
    from .build import compile as build

    model = build(
        a.spec,
        device=a.device,
        seed=a.seed,
        flow=a.flow,
        overrides=overrides(a.set),
        **build_options(a),
    )
    print(model.summary())
    return 0


def _reg_compile(sub: Any) -> None:
    p = sub.add_parser("compile", help="build the torch model and print its module summary")
    spec_args(p)
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    add_build_options(p)
    p.set_defaults(func=cmd_compile)


def cmd_render(a: argparse.Namespace) -> int:
    import graphviz

    from .diagram import UnsupportedFormat, render

    try:
        out = render(
            a.spec,
            a.output,
            flow=a.flow,
            overrides=overrides(a.set),
            detail=a.detail,
            rankdir=a.rankdir,
        )
    except UnsupportedFormat as e:
        raise UsageError(str(e)) from None
    except graphviz.ExecutableNotFound:
        raise UsageError("graphviz's `dot` is not installed (apt-get install graphviz)") from None
    print(out)
    return 0


def _reg_render(sub: Any) -> None:
    p = sub.add_parser("render", help="draw the architecture (svg, png, pdf or dot)")
    spec_args(p)
    p.add_argument("-o", "--output", required=True, help="FILE.svg|png|pdf|dot")
    p.add_argument("--detail", choices=DETAILS, default="step")
    p.add_argument(
        "--rankdir",
        choices=RANKDIRS,
        default="TB",
        help="top-to-bottom (default) or left-to-right",
    )
    p.set_defaults(func=cmd_render)


def register(commands: dict[str, Any]) -> None:
    commands["compile"] = (_reg_compile, cmd_compile)
    commands["render"] = (_reg_render, cmd_render)
