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

#: Jacobian rows per batched backward pass (copies of one sample in a batch): memory grows
#: with it (a deep model at 3x16x16 keeps tens of MB per copy), time hardly does
CHUNK = 32


def jacobian_logdet(
    fn: Callable[..., Tensor], x: Tensor, *context: Tensor | None, rows: int = CHUNK
) -> tuple[Tensor, Tensor]:
    """``(log|det J|, sign det J)`` per sample of ``fn`` at ``x``, both of shape ``(B,)``.

    ``fn(x_n, *context_n)`` maps a batch ``(n, *x.shape[1:])`` (and the matching ``context``
    tensors, e.g. a condition; ``None`` passes through) to ``n`` rows of ``x[0].numel()``
    entries each (any shape whose first dimension is ``n``: e.g. a split's
    ``cat(y.flatten(1), z.flatten(1))``).

    Each sample is differentiated on its own: it is repeated as a batch of ``n <= rows``
    copies, copy ``i`` gets the cotangent ``e_i``, and one backward pass gives ``n`` rows of
    its Jacobian. Copies of one sample never meet another sample, so a map that (wrongly)
    mixes samples of a batch shows up as a mismatch rather than hiding in a block-diagonal
    Jacobian. One batched forward and backward per ``rows`` rows replaces ``D`` separate
    backward passes: torch's float64 convolutions on the CPU have no batched backward (a
    vmap over them loops one row at a time), and a batch of copies keeps every kernel one
    call.
    """
    logabs, signs = [], []
    for b in range(x.shape[0]):
        jac = _jacobian(
            fn,
            x[b : b + 1].detach(),
            tuple(None if t is None else t[b : b + 1] for t in context),
            rows,
        )
        sign, value = torch.linalg.slogdet(jac)
        logabs.append(value)
        signs.append(sign)
    return torch.stack(logabs), torch.stack(signs)


def _jacobian(
    fn: Callable[..., Tensor], sample: Tensor, ctx: tuple[Tensor | None, ...], rows: int
) -> Tensor:
    """The ``(D, D)`` Jacobian of ``fn`` at one sample (a batch of one), ``rows`` at a time."""
    d = sample.numel()
    eye = torch.eye(d, dtype=sample.dtype, device=sample.device)
    out = []
    for start in range(0, d, rows):
        n = min(rows, d - start)
        copies = sample.expand(n, *sample.shape[1:]).clone().requires_grad_(True)
        cs = tuple(None if t is None else t.expand(n, *t.shape[1:]).contiguous() for t in ctx)
        with torch.enable_grad():
            y = fn(copies, *cs)
            if y.shape[0] != n or y[0].numel() != d:
                raise ValueError(
                    f"map is not dimension preserving, or not one row per "
                    f"sample: {n} x {tuple(sample.shape[1:])} -> "
                    f"{tuple(y.shape)}"
                )
            (grad,) = torch.autograd.grad(y.reshape(n, d), copies, eye[start : start + n])
        out.append(grad.reshape(n, d))
    return torch.cat(out)


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


def random_cond(
    spec,
    batch: int,
    gen: torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> dict[str, Tensor] | None:
    """A random value of every declared condition of ``spec``: images uniform in [0, 1) of
    ``dtype``, label maps and class ids as integers (None when the flow has none)."""
    if not spec.conditions:
        return None
    cond = {}
    for c in spec.conditions:
        if c.type == "class":
            cond[c.name] = torch.randint(0, c.shape[0], (batch,), generator=gen, device=device)
        elif c.type == "labels":
            cond[c.name] = torch.randint(
                0, c.shape[0], (batch, c.shape[1], c.shape[2]), generator=gen, device=device
            )
        else:
            cond[c.name] = torch.rand((batch, *c.shape), generator=gen, dtype=dtype, device=device)
    return cond
