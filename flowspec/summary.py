"""``FlowModel.summary``: parameters per layer and the activation memory of training."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .numerics import random_cond

if TYPE_CHECKING:
    from .build import FlowModel


def summary(model: FlowModel) -> str:
    """One row per layer (path, parameters, output shape), the encoders and the prior, the
    total, and the activation memory that training keeps per sample, measured."""
    rows = []
    total = 0
    for path, layer in zip(model.paths, model.layers):
        n = sum(p.numel() for p in layer.parameters())
        total += n
        rows.append((path, n, _fmt(layer.out_shape)))
    for name, enc in model.encoders.items():
        n = sum(p.numel() for p in enc.parameters())
        total += n
        rows.append((f"encoder:{name}", n, ""))
    n = sum(p.numel() for p in model.prior.parameters())
    total += n
    rows.append(("prior", n, _fmt(model.latent_shapes[-1])))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'path'.ljust(width)}  {'params':>12}  output"]
    lines += [f"{p.ljust(width)}  {n:>12,}  {s}" for p, n, s in rows]
    lines.append(f"{'total'.ljust(width)}  {total:>12,}  ({total * 4 / 2**20:.2f} MiB float32)")
    try:
        one, two = (_saved_for_backward(model, n) for n in (1, 2))
        per, fixed = two - one, max(0, 2 * one - two)
        lines.append(
            f"training memory for activations: {_bytes(per)} per sample "
            f"(+ {_bytes(fixed)} per batch), what autograd saves for "
            "the backward pass of log_prob, measured on batches of 1 and 2"
        )
    except Exception as e:  # noqa: BLE001 - a summary never fails for its estimate
        lines.append(f"training memory for activations: not measured ({type(e).__name__}: {e})")
    from .kinds import estimated_layers

    estimated = estimated_layers(model.spec)
    if estimated:
        lines.append(
            f"log-det: an unbiased stochastic estimate in {len(estimated)} layers "
            f"({estimated[0]}, ...): log_prob and bits/dim are estimates"
        )
    shown = {k: v for k, v in model.options.items() if v}
    if shown:
        lines.append(
            "options: "
            + ", ".join(f"{k}={str(v).replace('torch.', '')}" for k, v in shown.items())
        )
    return "\n".join(lines)


def _saved_for_backward(model: FlowModel, n: int) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``log_prob`` on a batch
    of ``n`` random inputs (parameters excluded: they are counted apart).

    Measured with ``saved_tensors_hooks``, each storage once, in eval mode (so no actnorm
    initialises) and eagerly (``compile`` changes what is saved little; ``checkpoint`` and
    ``autocast`` are in effect, as in training). Nothing of the model changes.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand((n, *model.spec.input), generator=g, device=device) - 0.5
    cond = random_cond(model.spec, n, g, dtype=torch.float32, device=device)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        if t.device.type != "meta":
            s = t.untyped_storage()
            if s.data_ptr() not in params:
                saved[s.data_ptr()] = s.nbytes()
        return t

    was_training, compiled = model.training, model._compiled
    model.eval()
    model._compiled = {}
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logp = model.log_prob(x, cond)
        del logp
    finally:
        model._compiled = compiled
        model.train(was_training)
    return sum(saved.values())


def _bytes(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)
