"""Non-finite models and results are refused loudly, naming what and where.

A checkpoint whose parameters hold NaN or Inf cannot give a bits/dim or a picture worth
anything, so ``eval`` and ``sample`` refuse it before computing (a :class:`RunError`
naming the layer path, its line in the ``.flow`` file and the parameter). A finite model
can still produce non-finite values: an evaluation whose bits/dim is not finite is refused
with the first layer whose output went non-finite; sampling at a high temperature can send
a few latents where the inverse overflows, so :func:`watch_samples` counts non-finite and
saturated samples, names the first layer of the inverse pass that went non-finite, draws
non-finite samples mid-grey (never whatever a NaN cast to uint8 happens to give), and
warns; when every sample is non-finite it refuses. Results written as JSON go through
:func:`json_safe`, so a file is always valid JSON (non-finite numbers become ``null``).

For training: :func:`check_finite` refuses a batch holding NaN or Inf before it reaches the
loss, naming its samples; :func:`first_nonfinite` re-runs a batch and names the first
module whose output is not finite, :func:`bad_parameter` the first non-finite parameter,
and :func:`locate` gives a layer path's place in the ``.flow`` file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .errors import RunError

#: A sample is "saturated" when more than this share of its values falls outside the data
#: range [-1/2, 1/2] of model space (they are clipped to black or white in the picture).
SATURATED_SHARE = 0.05


def layer_of(model: Any, key: str) -> str:
    """A state-dict or parameter key in the words of the spec: ``layers.3.net.0.weight`` ->
    ``layer `level1.step02.coupling` (demo.flow:12:9), parameter net.0.weight``."""
    paths = getattr(model, "paths", None)
    layer = _layer_key(paths, key)
    if layer is not None:
        i, rest = layer
        span = model.spans[i] if getattr(model, "spans", None) else None
        where = f" ({span.file}:{span.line}:{span.column})" if span is not None else ""
        return f"layer `{paths[i]}`{where}" + (f", parameter {rest}" if rest else "")
    parts = key.split(".")
    if parts[0] == "encoders" and len(parts) > 1:
        return f"the encoder of condition `{parts[1]}`, parameter {'.'.join(parts[2:])}"
    if parts[0] == "prior":
        return f"the prior, parameter {'.'.join(parts[1:])}"
    return f"`{key}`"


def path_of_key(paths: list[str] | None, key: str) -> str:
    """``layers.3.net.0.weight`` -> ``level1.step02.coupling: net.0.weight`` given the layer
    paths of the model the key belongs to (the key itself when it names no layer)."""
    layer = _layer_key(paths, key)
    return f"{paths[layer[0]]}: {layer[1]}" if layer is not None and layer[1] else key


def _layer_key(paths: list[str] | None, key: str) -> tuple[int, str] | None:
    """``layers.3.net.0.weight`` -> ``(3, "net.0.weight")`` when layer 3 is one of ``paths``."""
    parts = key.split(".")
    if (
        paths
        and parts[0] == "layers"
        and len(parts) > 1
        and parts[1].isdigit()
        and int(parts[1]) < len(paths)
    ):
        return int(parts[1]), ".".join(parts[2:])
    return None


def check_parameters(model: Any, checkpoint: Any) -> None:
    """Refuse a model with a NaN or Inf parameter or buffer, naming the first and counting."""
    bad: list[str] = []
    first = ""
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            if not bad:
                n = int((~torch.isfinite(t)).sum())
                kind = "NaN" if bool(torch.isnan(t).any()) else "Inf"
                first = f"{layer_of(model, name)} ({n} of {t.numel()} values {kind})"
            bad.append(name)
    if bad:
        more = f"; {len(bad) - 1} more tensors are non-finite too" if len(bad) > 1 else ""
        raise RunError(
            f"the checkpoint {checkpoint} holds non-finite parameters, first in "
            f"{first}{more}. A model with NaN or Inf parameters has no likelihood "
            "and draws no samples; use the run's best.pt or an earlier checkpoint"
        )


def check_metrics(
    metrics: dict[str, Any], model: Any, inputs: tuple[Tensor, Any], checkpoint: Any
) -> None:
    """Refuse an evaluation whose bits/dim is not finite, naming the first layer whose
    output goes non-finite on the validation batch ``inputs``."""
    bpd = metrics.get("bpd")
    if isinstance(bpd, float) and not math.isfinite(bpd):
        name = first_nonfinite(model, *inputs)
        where = (
            f"the first non-finite output on the validation batch is in {locate(model, name)}"
            if name
            else "every layer's output is finite on the first validation batch, so a later "
            "validation image overflows"
        )
        raise RunError(
            f"evaluating {checkpoint} gives a validation bits/dim of {bpd}; "
            f"{where}. No eval.json was written"
        )


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@contextmanager
def watch_samples(
    model: Any, temperature: float, warn: Callable[[str], None] | None
) -> Iterator[Callable[[Tensor], Tensor]]:
    """Sample inside this block and pass every batch through the function it yields.

    The function returns the batch with non-finite samples set to mid-grey. On leaving,
    it warns (``warn``) about non-finite and saturated samples, or raises a
    :class:`RunError` when no sample at all was finite. Non-finite values are traced to
    the first layer of the inverse pass that produced them.
    """
    first: list[str] = []
    counts = {"n": 0, "bad": 0, "saturated": 0}
    originals = _wrap_inverses(model, first)

    def check(x: Tensor) -> Tensor:
        flat = x.detach().reshape(x.shape[0], -1)
        finite = torch.isfinite(flat).all(dim=1)
        outside = (flat.abs() > 0.5).float().mean(dim=1) > SATURATED_SHARE
        counts["n"] += x.shape[0]
        counts["bad"] += int((~finite).sum())
        counts["saturated"] += int((outside & finite).sum())
        if bool(finite.all()):
            return x
        return torch.where(finite.view(-1, *[1] * (x.dim() - 1)), x, torch.zeros_like(x))

    try:
        yield check
    finally:
        for obj in originals:
            del obj.inverse  # the class's method again
    n, bad, sat = counts["n"], counts["bad"], counts["saturated"]
    where = ""
    if first:
        where = f"; the inverse pass first goes non-finite in {first[0]}"
    if n and bad == n:
        raise RunError(
            f"all {n} samples at temperature {temperature:g} are non-finite (NaN "
            f"or Inf){where}. No image was written; the model is broken "
            "(an earlier checkpoint, or a lower temperature, may sample)"
        )
    if warn is not None and (bad or sat):
        parts = []
        if bad:
            parts.append(
                f"{bad} of {n} samples at temperature {temperature:g} are "
                f"non-finite (drawn mid-grey){where}"
            )
        if sat:
            parts.append(
                f"{sat} of {n} samples are saturated (over "
                f"{SATURATED_SHARE:.0%} of their values outside the data range, "
                "clipped to black or white)"
            )
        warn("; ".join(parts) + "; a lower --temperature usually avoids this")


def _wrap_inverses(model: Any, first: list[str]) -> list[Any]:
    """Replace each layer's (and the prior's) ``inverse`` by one that records the first
    layer, in the order of the inverse pass, whose output is not finite."""
    named = [(path, layer) for path, layer in zip(model.paths, model.layers)]
    named.append(("prior", model.prior))
    originals = []
    for name, obj in named:
        fn = obj.inverse

        def wrapped(*args: Any, _fn: Any = fn, _name: str = name, **kw: Any) -> Any:
            out = _fn(*args, **kw)
            y = out[0] if isinstance(out, tuple) else out
            if not first and isinstance(y, Tensor) and not bool(torch.isfinite(y).all()):
                first.append(locate(model, _name) if _name != "prior" else "the prior")
            return out

        obj.inverse = wrapped  # an instance attribute shadowing the method
        originals.append(obj)
    return originals


# ---- naming what went non-finite, and where ----------------------------------------------
@torch.no_grad()
def first_nonfinite(model: Any, x: Tensor, cond: dict[str, Tensor] | None) -> str | None:
    """Re-run a batch and name the first module (in execution order) whose output is not
    finite: ``encoder:NAME``, a layer path such as ``level1.step02.coupling``, or
    ``prior``. ``None`` when the whole forward pass is finite."""
    if not torch.isfinite(x).all():
        return "the input batch"
    found: list[str] = []

    def watch(name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            outs = output if isinstance(output, (tuple, list)) else (output,)
            if not found and any(
                isinstance(t, Tensor) and not torch.isfinite(t).all() for t in outs
            ):
                found.append(name)

        return hook

    named = [(f"encoder:{k}", m) for k, m in model.encoders.items()]
    named += list(zip(model.paths, model.layers)) + [("prior", model.prior)]
    handles = [m.register_forward_hook(watch(name)) for name, m in named]
    was_training = model.training
    model.eval()
    try:
        model(x, cond)
    except (RuntimeError, ValueError) as e:  # a layer may raise on non-finite input
        if not found:
            found.append(f"the forward pass, which raised {type(e).__name__}: {e}")
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return found[0] if found else None


def locate(model: Any, name: str) -> str:
    """A layer path (as :func:`first_nonfinite` names it) with its place in the ``.flow``
    file; other names as they are."""
    if name in model.paths:
        span = model.spans[model.paths.index(name)]
        return f"layer `{name}` ({span.file}:{span.line}:{span.column})"
    return name if name.startswith("the ") else f"`{name}`"


def bad_parameter(model: Any) -> str | None:
    """The first parameter holding NaN or Inf, with its layer, or ``None``."""
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            parts = name.split(".")
            if parts[0] == "layers":
                return f"{locate(model, model.paths[int(parts[1])])} (parameter {name})"
            return f"`{name}`"
    return None


def check_finite(
    x: Tensor, cond: dict[str, Tensor] | None, what: str, idx: Tensor | None, source: str
) -> None:
    """Refuse a batch holding NaN or Inf, before it reaches the loss, naming the samples."""
    named = [("images", x)] + [
        (f"condition `{k}`", v) for k, v in (cond or {}).items() if v.is_floating_point()
    ]
    for name, t in named:
        bad = ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            rows = torch.nonzero(bad).flatten().tolist()
            which = (
                f"images {', '.join(str(int(idx[i])) for i in rows[:8])}"
                f"{' ...' if len(rows) > 8 else ''} of the {source}"
                if idx is not None
                else f"samples {', '.join(map(str, rows[:8]))}"
            )
            raise RunError(
                f"{what} holds NaN or Inf in its {name}: {len(rows)} of "
                f"{t.shape[0]} samples ({which}); nothing was computed from it. "
                "Check the data (a loader or transform that divides by zero?)"
            )
