"""How well a model inverts itself: ``max |x - inverse(forward(x))|``, and where it is lost.

Every layer is exactly invertible in exact arithmetic, but each inverse also amplifies the
rounding errors it receives (by up to its inverse's norm), and in a deep flow those factors
compound: the paper (appendix H) found its attention layers numerically unstable in deep
flows. The trainer measures this on a fixed validation batch at every validation and warns
when it exceeds a threshold, naming the layer whose inverse adds the most error.

Per-layer attribution: one forward pass records every layer's input ``x_i`` (a forward
pre-hook), one inverse pass from the forward's own latents records every layer's
reconstructed input ``x^_i`` (the layer's ``inverse``, wrapped for the call). The relative
error ``r_i = max|x^_i - x_i| / max|x_i|`` is comparable across depths (activations change
scale from layer to layer), and ``g_i = r_i / r_{i+1}`` (both floored at
:data:`NOISE_FLOOR`) is how much layer ``i``'s inverse multiplies it. The gains multiply up
to the model's relative error; the report names the layer with the largest gain and the
product of the gains of each layer kind. Growth in a deep flow compounds over many layers
with modest gains each, so the per-kind products are usually the more telling numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .finite import check_finite, locate
from .streams import generator, stream_seed
from .task_base import Task

#: Validation images whose round trip ``inverse(forward(x))`` is checked at each validation.
RECON_IMAGES = 32
#: Relative errors below this are rounding noise: gains are measured from this level up.
NOISE_FLOOR = 1e-6


@dataclass
class Reconstruction:
    """The reconstruction error of one batch and where it grows."""

    error: float  # max |x - inverse(forward(x))|
    relative: float  # error / max |x|
    worst: str | None = None  # path of the layer whose inverse multiplies the error the most
    worst_gain: float | None = None  # that factor, g_i
    by_kind: dict[str, float] = field(default_factory=dict)  # kind -> product of its g_i
    per_layer: dict[str, float] = field(default_factory=dict, repr=False)  # path -> r_i

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"recon_error": self.error, "recon_rel": self.relative}
        if self.worst is not None:
            out["recon_worst"] = self.worst
            out["recon_worst_gain"] = self.worst_gain
        if self.by_kind:
            out["recon_gain_by_kind"] = self.by_kind
        return out


def _max_abs(t: Tensor) -> float:
    value = float(t.detach().abs().max()) if t.numel() else 0.0
    return value if math.isfinite(value) else math.inf


@torch.no_grad()
def reconstruction(model: Any, x: Tensor, cond: dict[str, Tensor] | None = None) -> Reconstruction:
    """Round-trip ``x`` through ``model`` (eval mode, no RNG used) and attribute the error.

    When the model's layers cannot be hooked (a model that does not call its layers one by
    one), only the total error is reported.
    """
    paths = list(getattr(model, "paths", []))
    x_rec, inputs, rebuilt = _round_trip(model, x, cond, paths)
    scale = _max_abs(x)
    error = _max_abs(x - x_rec)
    result = Reconstruction(error, error / scale if scale > 0 else error)
    if len(inputs) != len(paths) or len(rebuilt) != len(paths) or not paths:
        return result
    _attribute(result, model, paths, inputs, rebuilt)
    return result


def _round_trip(
    model: Any, x: Tensor, cond: dict[str, Tensor] | None, paths: list[str]
) -> tuple[Tensor, dict[int, Tensor], dict[int, Tensor]]:
    """``inverse(forward(x))`` in eval mode on the eager layers, with every layer's input
    ``x_i`` and reconstructed input ``x^_i`` (by index; none when the layers do not match
    ``paths``). The model is left as it was found."""
    layers = list(getattr(model, "layers", []))
    inputs: dict[int, Tensor] = {}
    rebuilt: dict[int, Tensor] = {}
    handles = []
    patched = []

    def pre_hook(i: int):
        def hook(module: Any, args: tuple) -> None:
            inputs[i] = args[0].detach()

        return hook

    def wrap(i: int, layer: Any):
        original = layer.inverse

        def inverse(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            rebuilt[i] = out[0].detach()
            return out

        return inverse

    was_training = model.training
    compiled = getattr(model, "_compiled", None)
    model.eval()
    try:
        if compiled:  # measure the eager layers (a compiled graph would not call the hooks)
            model._compiled = {}
        if len(layers) == len(paths):
            for i, layer in enumerate(layers):
                handles.append(layer.register_forward_pre_hook(pre_hook(i)))
                layer.inverse = wrap(i, layer)
                patched.append(layer)
        zs, _ = model(x, cond)
        for h in handles:
            h.remove()
        handles = []
        x_rec = model.inverse(zs, cond)
    finally:
        for h in handles:
            h.remove()
        for layer in patched:
            del layer.inverse  # back to the class's method
        if compiled:
            model._compiled = compiled
        model.train(was_training)
    return x_rec, inputs, rebuilt


def _attribute(
    result: Reconstruction,
    model: Any,
    paths: list[str],
    inputs: dict[int, Tensor],
    rebuilt: dict[int, Tensor],
) -> None:
    """Fill in ``result``'s per-layer relative errors, its worst layer and the gains by kind
    (the module docstring has the definitions)."""
    rel = []
    for i in range(len(paths)):
        s = _max_abs(inputs[i])
        e = _max_abs(inputs[i] - rebuilt[i]) if inputs[i].shape == rebuilt[i].shape else math.inf
        rel.append(e / s if s > 0 else e)
    result.per_layer = dict(zip(paths, rel))
    floored = [max(r, NOISE_FLOOR) if not math.isnan(r) else math.inf for r in rel]
    gains = []
    for i, r in enumerate(floored):
        nxt = floored[i + 1] if i + 1 < len(floored) else NOISE_FLOOR
        # where the inverse (running from the last layer down) first went non-finite: inf
        gains.append(r / nxt if math.isfinite(nxt) else 1.0)
    worst = max(range(len(gains)), key=lambda i: (gains[i], i))
    if gains[worst] > 1.0:  # else every layer's error is rounding noise: none stands out
        result.worst, result.worst_gain = paths[worst], gains[worst]
    spec = getattr(model, "spec", None)
    kinds = {layer.path: layer.kind for layer in spec.layers} if spec is not None else {}
    for path, g in zip(paths, gains):
        kind = kinds.get(path, "layer")
        result.by_kind[kind] = result.by_kind.get(kind, 1.0) * g


def recon_batch(
    task: Task, val: Any, seed: int, dev: torch.device
) -> tuple[Tensor, dict[str, Tensor] | None]:
    """The fixed validation batch of the reconstruction check (its noise from its own
    generator: the check never touches the training RNG)."""
    n = min(len(val), RECON_IMAGES)
    imgs = val.images[:n]
    maps = None if val.maps is None else val.maps[:n]
    noise = torch.rand(imgs.shape, generator=generator(stream_seed(seed, "recon", 0)))
    # uniform noise, never q's: the batch must not depend on its parameters
    x, cond = task.inputs(imgs, maps, noise, dev)
    check_finite(x, cond, "the validation batch", torch.arange(n), "validation subset")
    return x, cond


def recon_message(model: Any, rec: Reconstruction, threshold: float, step: int) -> str:
    """The warning for a reconstruction error above ``threshold``, naming the worst layer."""
    text = (
        f"step {step}: inverse(forward(x)) misses the validation batch by "
        f"{rec.error:.2e} (relative {rec.relative:.2e}, above {threshold:g})"
    )
    if rec.worst is not None:
        kinds = sorted(rec.by_kind.items(), key=lambda kv: -kv[1])
        growth = ", ".join(f"{k.replace('.', ' ')} x{g:.3g}" for k, g in kinds[:3])
        text += (
            f"; the error grows most in {locate(model, rec.worst)}, "
            f"x{rec.worst_gain:.3g} (products by kind: {growth})"
        )
    try:
        from flowspec.kinds import KINDS

        remedies = sorted(
            {
                f"`{layer.kind.replace('.', ' ')} {KINDS[layer.kind].remedy_hint()}`"
                for layer in model.spec.layers
                if KINDS[layer.kind].stack_remedy
                and not layer.args.get(KINDS[layer.kind].stack_remedy)
            }
        )
    except (AttributeError, KeyError):
        remedies = []
    if remedies:
        text += f"; deep stacks of attention are more stable with {', '.join(remedies)}"
    else:
        text += "; samples and likelihoods of a model that does not invert are unreliable"
    return text
