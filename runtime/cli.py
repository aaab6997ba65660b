"""``flowspec train | eval | sample``: the runtime's subcommands.

Registered by :mod:`flowspec.cli` through :func:`register`. Parsers are
defined at import; torch loads inside the handlers. A run error (bad data, a task the
spec cannot do, a non-finite loss) prints one message on stderr and returns 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import Any

from .errors import RunError
from .recipe import RECON_WARN


def _spec_args(p: argparse.ArgumentParser, optional: bool = False) -> None:
    from flowspec.commands import spec_args

    if optional:  # eval and sample: a checkpoint holds its model's IR and recipe
        p.add_argument(
            "spec",
            nargs="?",
            help="a .flow file (default: the model description stored in the checkpoint)",
        )
        p.add_argument("--flow", help="which flow of the file (default: the checkpoint's)")
        p.add_argument(
            "--set",
            action="append",
            metavar="NAME=VALUE",
            help="override a flow parameter (repeatable; default: the checkpoint's)",
        )
    else:
        spec_args(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument(
        "--threads",
        type=_int(1),
        metavar="N",
        help="CPU threads for torch (default: torch's choice; 1 is often faster "
        "on a machine shared with other jobs)",
    )


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` (to ``high``); anything else is a usage
    error (exit 2), with the recipe's ranges (:func:`runtime.recipe.resolve_recipe`)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got `{text}`") from None
        if value < low or (high is not None and value > high):
            span = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {span}, got {value}")
        return value

    return parse


def _number(low: float, *, above: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number ``>= low`` (``> low`` with ``above``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got `{text}`") from None
        if not math.isfinite(value) or value < low or (above and value == low):
            bound = f"above {low:g}" if above else f"at least {low:g}"
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text}")
        return value

    return parse


def _bool(text: str) -> bool:
    value = {
        "true": True,
        "yes": True,
        "1": True,
        "on": True,
        "false": False,
        "no": False,
        "0": False,
        "off": False,
    }.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got `{text}`")
    return value


def _strict_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--strict",
        type=_bool,
        default=True,
        metavar="true|false",
        help=f"refuse {what} a checkpoint of another model, naming what differs "
        "(default true); false: warn and load it, matching layers by path (a new "
        "layer keeps its initial values; a parameter whose shape changed is still "
        "an error)",
    )


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors of a run into a message that names the command, and its exit status
    (every other exception, compiler diagnostics included, :mod:`flowspec.cli` reports)."""

    def run(a: argparse.Namespace) -> int:
        from flowspec.errors import FlowError, exit_code

        from .data import DataError

        try:
            if a.threads and a.command != "train":  # train records them for --resume
                import torch

                torch.set_num_threads(a.threads)
            return fn(a)
        except FlowError as e:
            from flowspec import FlowRuntimeError

            if not isinstance(e, (RunError, DataError, FlowRuntimeError)):
                raise
            print(f"flowspec {a.command}: error: {e}", file=sys.stderr)
            return exit_code(e)

    return run


def _overrides(a: argparse.Namespace) -> dict[str, Any] | None:
    from flowspec.commands import overrides as parse

    return parse(a.set) if a.set else None


# --------------------------------------------------------------------------- train


def cmd_train(a: argparse.Namespace) -> int:
    from flowspec.commands import build_options, recipe_flags

    from .api import train

    train(
        a.spec,
        flow=a.flow,
        overrides=_overrides(a),
        data=a.data,
        out=a.out,
        device=a.device,
        resume=a.resume,
        progress=not a.no_progress,
        strict=a.strict,
        recon_warn=a.recon_warn,
        tensorboard=a.tensorboard,
        verify=a.verify,
        threads=a.threads,
        build_options=build_options(a),
        **recipe_flags(a),
    )
    return 0


def _reg_train(sub: Any) -> None:
    from flowspec.commands import add_build_options, add_recipe_flags

    p = sub.add_parser(
        "train",
        help="train a flow on its task (the spec's train block, overridden by these flags)",
    )
    _spec_args(p)
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help='data set, optionally with options: --data "faces resize=true"',
    )
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/FLOW-TIMESTAMP)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, bit for bit",
    )
    _strict_arg(p, "to --resume from")
    p.add_argument(
        "--recon-warn",
        type=_number(0),
        dest="recon_warn",
        default=RECON_WARN,
        metavar="R",
        help="warn when a validation finds max|x - inverse(forward(x))| "
        f"/ max|x| above R (default {RECON_WARN:g}; 0: never)",
    )
    add_recipe_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _verify_arg(p, "train")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log scalars, sample grids and the diagram for TensorBoard "
        "(RUN/tensorboard/; needs pip install 'flowspec[track]')",
    )
    add_build_options(p)
    p.set_defaults(func=_guard(cmd_train))


# --------------------------------------------------------------------------- eval


def cmd_eval(a: argparse.Namespace) -> int:
    from .api import evaluate

    with _determinism(a):
        metrics = evaluate(
            a.spec,
            a.checkpoint,
            flow=a.flow,
            overrides=_overrides(a),
            temperatures=a.temperatures,
            data=a.data,
            val_images=a.val_images,
            lpips=a.lpips,
            device=a.device,
            out=a.out,
            strict=a.strict,
            measure=a.metrics,
            features=a.features,
            samples=a.samples,
            temperature=a.temperature,
            verify=a.verify,
            iw_samples=a.iw_samples,
            y_channel=a.y_channel,
            crop_border=a.crop_border,
            ema=not a.no_ema,
        )
    print(json.dumps(metrics, indent=2))
    return 0


def _reg_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="held-out metrics of a checkpoint (JSON on stdout and eval.json in the run folder)",
    )
    _spec_args(p, optional=True)
    p.add_argument("--checkpoint", required=True, metavar="FILE")
    _strict_arg(p, "to evaluate")
    p.add_argument(
        "--metrics",
        default="bpd",
        metavar="LIST",
        help="comma-separated: bpd (always computed, with the task's held-out "
        "scores), fid, kid, is (sample quality of generation flows)",
    )
    p.add_argument(
        "--samples",
        type=_int(1),
        default=1000,
        metavar="N",
        help="samples (and real validation images) for fid/kid/is (default 1000)",
    )
    p.add_argument(
        "--temperature",
        type=_number(0),
        default=1.0,
        help="sampling temperature for fid/kid/is (default 1.0)",
    )
    p.add_argument(
        "--features",
        metavar="inception|FILE",
        help="feature network for fid/kid/is: `inception` (default; NVlabs' "
        "inception-2015-12-05.pt in ~/.cache/flowspec/weights/) or a file: that "
        "Inception, or any TorchScript module mapping images in [0,1] (B,3,H,W) "
        "to (B,D), reported as fid[features=NAME]",
    )
    p.add_argument(
        "--temperatures",
        type=_number(0),
        nargs="+",
        metavar="T",
        help="super-resolution sampling temperatures (default 0.1 ... 0.9)",
    )
    p.add_argument("--data", metavar="NAME|PATH", help="evaluate on other data")
    p.add_argument(
        "--val-images",
        type=_count_or_all,
        dest="val_images",
        metavar="N|all",
        help="validation images to evaluate (default: the run's val_images); "
        "`all`: the whole validation split",
    )
    p.add_argument(
        "--iw-samples",
        type=_int(1),
        dest="iw_samples",
        metavar="K",
        help="also report bpd_iw: the importance-weighted bound over K "
        "dequantisation samples per image (under the learned q(u|x) with "
        "variational dequantisation); K=1 is bpd",
    )
    p.add_argument(
        "--y-channel",
        action="store_true",
        dest="y_channel",
        help="super-resolution: PSNR/SSIM on the BT.601 Y channel, SSIM with an "
        "11x11 Gaussian window (BasicSR)",
    )
    p.add_argument(
        "--crop-border",
        type=_int(0),
        default=0,
        dest="crop_border",
        metavar="N",
        help="super-resolution: drop N border pixels before PSNR/SSIM, SSIM with "
        "an 11x11 Gaussian window (BasicSR; default 0)",
    )
    p.add_argument(
        "--lpips",
        metavar="FILE",
        help="torchvision's AlexNet checkpoint alexnet-owt-7be5be79.pth (the LPIPS "
        "backbone; the lpips v0.1 heads come with torchmetrics) or a TorchScript "
        "LPIPS module; without it LPIPS is 'unavailable'",
    )
    p.add_argument(
        "--out", metavar="DIR", help="where eval.json goes (default: beside the checkpoint)"
    )
    _verify_arg(p, "evaluate")
    _ema_arg(p, "evaluate")
    _deterministic_arg(p, "the same numbers on every CUDA run")
    p.set_defaults(func=_guard(cmd_eval))


# --------------------------------------------------------------------------- sample


def cmd_sample(a: argparse.Namespace) -> int:
    from .api import sample

    with _determinism(a):
        path = sample(
            a.spec,
            a.checkpoint,
            n=a.n,
            temperature=a.temperature,
            cond=a.cond,
            output=a.output,
            flow=a.flow,
            overrides=_overrides(a),
            seed=a.seed,
            device=a.device,
            strict=a.strict,
            classes=a.classes,
            ema=not a.no_ema,
        )
    print(path)
    return 0


def _reg_sample(sub: Any) -> None:
    p = sub.add_parser(
        "sample",
        help="draw samples from a checkpoint into an image grid "
        "(PNG, JPEG, ... by the extension of -o)",
    )
    _spec_args(p, optional=True)
    p.add_argument("--checkpoint", required=True, metavar="FILE")
    _strict_arg(p, "to sample from")
    p.add_argument("--n", type=_int(1), default=64, help="number of samples (default 64)")
    p.add_argument(
        "--temperature",
        type=_number(0),
        default=0.7,
        help="latent standard deviation (default 0.7)",
    )
    p.add_argument(
        "--cond",
        metavar="val|FILE",
        help="condition: `val` (default: validation examples) or an image file "
        "(low-res input, or a one-channel PNG of class ids)",
    )
    p.add_argument(
        "--class",
        dest="classes",
        metavar="K[,K...]",
        help="class-conditional flows: N samples of class K (an id, or a class "
        "folder's name), or one row per listed class (default: one row per class)",
    )
    p.add_argument("--seed", type=_int(0), default=0)
    p.add_argument(
        "-o",
        "--output",
        default="grid.png",
        metavar="FILE",
        type=_image_path,
        help="the grid image; its extension picks the format (.png, .jpg, "
        ".webp, ...; default grid.png)",
    )
    _ema_arg(p, "sample")
    _deterministic_arg(p, "the same samples on every CUDA run")
    p.set_defaults(func=_guard(cmd_sample))


def _ema_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--no-ema",
        action="store_true",
        dest="no_ema",
        help=f"{what} the raw weights of a run trained with `ema` (default: its "
        "averaged weights, as its validation used)",
    )


def _deterministic_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--deterministic",
        action="store_true",
        help=f"deterministic algorithms only (cuDNN and cuBLAS included): {what}, "
        "at some cost in speed (CPU runs are deterministic either way)",
    )


def _determinism(a: argparse.Namespace) -> Any:
    """``--deterministic`` of eval and sample, set before the command touches CUDA."""
    from .determinism import configured
    from .distributed import resolve_device

    return configured(a.deterministic, resolve_device(a.device))


def _verify_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--no-verify",
        action="store_false",
        dest="verify",
        help=f"{what} even if a layer whose kind or net a plugin defines fails "
        "verification (checked before step 1 as `flowspec verify` does; the run "
        'records "verified": false)',
    )


def _count_or_all(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return _int(1)(text)
    except argparse.ArgumentTypeError as e:
        raise argparse.ArgumentTypeError(
            f"expected a count of at least 1 or `all`, got `{text}`"
        ) from e


def _image_path(text: str) -> str:
    from .images import image_format

    try:
        image_format(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def register(commands: dict[str, Any]) -> None:
    commands["train"] = (_reg_train, cmd_train)
    commands["eval"] = (_reg_eval, cmd_eval)
    commands["sample"] = (_reg_sample, cmd_sample)
