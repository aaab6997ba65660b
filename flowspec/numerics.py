"""Numerical ground truth for bijections on (B, C, H, W) tensors (used by ``flowspec verify``
and the test suite).

``jacobian_logdet`` is the brute-force ground truth every layer's (and model's) ``logdet``
is compared with: the full autograd Jacobian of the map for each sample on its own, then
``slogdet``. ``perturb_`` moves every parameter away from its initialisation, so that no
check passes merely because a zero-initialised network makes a layer trivial.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


def jacobian_logdet(
    fn: Callable[..., Tensor], x: Tensor, *context: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``(log|det J|, sign det J)`` per sample of ``fn`` at ``x``, both of shape ``(B,)``.

    ``fn(x_b, *context_b)`` maps a ``(1, *x.shape[1:])`` batch (and the matching one-sample
    slices of the ``context`` tensors, e.g. a condition; ``None`` passes through) to a tensor
    with ``x[0].numel()`` entries (any shape: e.g. a split's ``cat(y.flatten(1),
    z.flatten(1))``). Each sample is differentiated on its own, so a map that (wrongly) mixes
    samples of a batch shows up as a mismatch rather than hiding in a block-diagonal Jacobian.
    """
    logabs, signs = [], []
    for b in range(x.shape[0]):
        sample = x[b : b + 1].detach()
        ctx = tuple(None if t is None else t[b : b + 1] for t in context)

        def flat(v: Tensor, sample: Tensor = sample, ctx: tuple = ctx) -> Tensor:
            return fn(v.view_as(sample), *ctx).reshape(-1)

        jac = torch.autograd.functional.jacobian(flat, sample.reshape(-1), vectorize=True)
        if jac.shape[0] != jac.shape[1]:
            raise ValueError(f"map is not dimension preserving: Jacobian {tuple(jac.shape)}")
        sign, value = torch.linalg.slogdet(jac)
        logabs.append(value)
        signs.append(sign)
    return torch.stack(logabs), torch.stack(signs)


@torch.no_grad()
def perturb_(module: nn.Module, scale: float, generator: torch.Generator) -> nn.Module:
    """Add Gaussian noise (drawn from ``generator``, on CPU) to every parameter, in place.

    Vectors and scalars get ``scale * N(0, 1)``; a weight of two or more dimensions gets
    ``scale / sqrt(fan_in) * N(0, 1)`` with ``fan_in = weight[0].numel()``, so the change of
    each pre-activation is ``O(scale)`` whatever the layer's width: a zero-initialised output
    convolution of a 512-wide network then yields outputs of order ``scale`` rather than
    ``scale * sqrt(512 * 9)``, which would saturate every bounded scale.
    """
    for param in module.parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float64)
        std = scale / param[0].numel() ** 0.5 if param.dim() >= 2 else scale
        param.add_(std * noise.to(device=param.device, dtype=param.dtype))
    return module


def random_cond(spec, batch: int, gen: torch.Generator, *, dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None) -> dict[str, Tensor] | None:
    """A random value of every declared condition of ``spec``: images uniform in [0, 1) of
    ``dtype``, label maps and class ids as integers (None when the flow has none)."""
    if not spec.conditions:
        return None
    cond = {}
    for c in spec.conditions:
        if c.type == "class":
            cond[c.name] = torch.randint(0, c.shape[0], (batch,), generator=gen, device=device)
        elif c.type == "labels":
            cond[c.name] = torch.randint(0, c.shape[0], (batch, c.shape[1], c.shape[2]),
                                         generator=gen, device=device)
        else:
            cond[c.name] = torch.rand((batch, *c.shape), generator=gen, dtype=dtype,
                                      device=device)
    return cond

