"""CLI commands that need torch (compile, train, eval, sample) and graphviz (render).

Only argument parsers are defined at import time; torch is imported inside the handlers,
so `flowspec check` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any

from .cli import _overrides, _spec_args


def add_build_options(p: argparse.ArgumentParser) -> None:
    """The speed / memory options of ``flowspec.compile`` as flags (shared with the runtime)."""
    g = p.add_argument_group("build options (same function, different speed and memory)")
    g.add_argument("--channels-last", action="store_true", dest="channels_last",
                   help="channels-last memory format for parameters and activations")
    g.add_argument("--compile", nargs="?", const=True, default=False, metavar="BACKEND",
                   help="torch.compile the forward and inverse (default backend inductor)")
    # not --checkpoint: eval and sample take --checkpoint FILE
    g.add_argument("--grad-checkpoint", action="store_true", dest="checkpoint",
                   help="recompute coupling networks in backward (less activation memory)")
    g.add_argument("--autocast", nargs="?", const="bf16", default=None,
                   choices=("bf16", "fp16"),
                   help="run the coupling networks under autocast (default bf16); "
                        "log-determinants stay float32")


def build_options(a: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``flowspec.compile`` from the flags of :func:`add_build_options`."""
    import torch

    amp = {None: False, "bf16": torch.bfloat16, "fp16": torch.float16}[a.autocast]
    return {"channels_last": a.channels_last, "compile": a.compile,
            "checkpoint": a.checkpoint, "autocast": amp}


def cmd_compile(a: argparse.Namespace) -> int:
    from .build import compile as build

    model = build(a.spec, device=a.device, seed=a.seed, flow=a.flow, overrides=_overrides(a.set),
                  **build_options(a))
    print(model.summary())
    return 0


def _reg_compile(sub: Any) -> None:
    p = sub.add_parser("compile", help="build the torch model and print its module summary")
    _spec_args(p)
    p.add_argument("--device", default="cpu", help="auto, cpu or cuda (default cpu)")
    p.add_argument("--seed", type=int, default=0)
    add_build_options(p)
    p.set_defaults(func=cmd_compile)


def cmd_render(a: argparse.Namespace) -> int:
    import graphviz

    from .cli import UsageError
    from .diagram import UnsupportedFormat, render

    try:
        out = render(a.spec, a.output, flow=a.flow, overrides=_overrides(a.set),
                     detail=a.detail, rankdir=a.rankdir)
    except UnsupportedFormat as e:
        raise UsageError(str(e)) from None
    except graphviz.ExecutableNotFound:
        raise UsageError("graphviz's `dot` is not installed (apt-get install graphviz)") from None
    print(out)
    return 0


def _reg_render(sub: Any) -> None:
    p = sub.add_parser("render", help="draw the architecture (svg, png, pdf or dot)")
    _spec_args(p)
    p.add_argument("-o", "--output", required=True, help="FILE.svg|png|pdf|dot")
    p.add_argument("--detail", choices=("level", "step", "layer"), default="step")
    p.add_argument("--rankdir", choices=("TB", "LR"), default="TB",
                   help="top-to-bottom (default) or left-to-right")
    p.set_defaults(func=cmd_render)


def register(commands: dict[str, Any]) -> None:
    commands["compile"] = (_reg_compile, cmd_compile)
    commands["render"] = (_reg_render, cmd_render)
    try:
        from runtime import cli as runtime_cli
    except ImportError:
        return
    runtime_cli.register(commands)
