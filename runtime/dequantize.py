r"""Variational dequantisation (Flow++, Ho et al. 2019): a conditional flow ``q(u | x)``.

With uniform dequantisation the model is trained on ``y = x_int + u``, ``u ~ U[0, 1)^D``,
and bits/dim bounds ``-log2 P(x_int) / D``. Flow++ learns the noise instead: for any density
``q(u | x_int)`` on ``[0, 1)^D``,

.. math:: -\log P(x_\mathrm{int}) \le \mathbb{E}_{u \sim q}\big[-\log p_y(x_\mathrm{int} + u)
          + \log q(u \mid x_\mathrm{int})\big],

so the training loss (and the reported ``bpd``) is that variational bound per dimension:
``bits - (log p(x) - log q(u | x)) / (D log 2)`` with :func:`runtime.metrics.bits_per_dim`'s
conventions. Uniform ``q`` (``log q = 0``) gives back the uniform-dequantisation bits/dim.

``q`` here: the batch's uniform noise ``n`` (the same stream as uniform dequantisation, so a
step's noise is still a pure function of ``(seed, step)``) is mapped to logistic noise
``e = logit(n)``, transformed by ``steps`` conditional affine couplings (checkerboard masks
that alternate; each coupling network sees the masked noise and features of ``x_int``), and
squashed by a sigmoid: ``u = sigmoid(z)``. The couplings start as the identity (zero-initialised
output convolution), so an untrained ``q`` is exactly uniform and the bound starts at the
uniform bits/dim. ``log q(u | x) = log p_logistic(e) - sum log|det coupling| - sum log
sigmoid'(z)``, exact.

``q``'s parameters live on the model as the submodule ``dequantizer`` (:func:`attach`): the
optimiser, checkpoints (``dequantizer.*`` entries), resume and DDP treat them as part of the
model; :class:`runtime.objective.Objective` runs ``q``. A recipe without ``dequantize
variational`` attaches nothing, so such runs are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Uniform noise is clamped to ``[EPS, 1 - EPS]`` before the logit (``n = 0`` would be -inf).
EPS = 2.0**-24


def _log_sigmoid_grad(z: Tensor) -> Tensor:
    """``log sigmoid'(z) = log sigmoid(z) + log sigmoid(-z)``; also the logistic log-density."""
    return F.logsigmoid(z) + F.logsigmoid(-z)


def _checkerboard(shape: tuple[int, ...], parity: int) -> Tensor:
    c, h, w = shape
    ii = torch.arange(h).view(h, 1)
    jj = torch.arange(w).view(1, w)
    m = ((ii + jj + parity) % 2).float()
    return m.expand(c, h, w).clone()


class _Coupling(nn.Module):
    """``z = m e + (1 - m) (e exp(s) + t)``, ``(s, t) = net([m e, features])``."""

    def __init__(self, shape: tuple[int, ...], hidden: int, parity: int):
        super().__init__()
        c = shape[0]
        self.register_buffer("mask", _checkerboard(shape, parity), persistent=False)
        self.net = nn.Sequential(
            nn.Conv2d(c + hidden, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            nn.Conv2d(hidden, 2 * c, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(c, 1, 1))  # s = scale * tanh(raw), 0 at start

    def forward(self, e: Tensor, feats: Tensor) -> tuple[Tensor, Tensor]:
        m = self.mask.to(e.dtype)
        raw_s, t = self.net(torch.cat([e * m, feats], 1)).chunk(2, 1)
        s = (self.scale * torch.tanh(raw_s)) * (1 - m)
        z = e * m + (1 - m) * (e * torch.exp(s) + t)
        return z, s.flatten(1).sum(1)


class VariationalDequantizer(nn.Module):
    """``q(u | x_int)`` for images of ``shape`` (C, H, W) at ``bits`` bits."""

    def __init__(self, shape: tuple[int, ...], bits: int, steps: int = 4, hidden: int = 32):
        super().__init__()
        self.shape, self.bits = tuple(int(s) for s in shape), int(bits)
        c = self.shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(),
        )
        self.couplings = nn.ModuleList(_Coupling(self.shape, hidden, k % 2) for k in range(steps))

    def forward(self, levels: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
        """Integer ``levels`` (any dtype) and uniform ``noise`` in [0, 1) -> ``u`` in [0, 1)
        and ``log q(u | levels)`` per sample (nats)."""
        dtype = noise.dtype
        e = torch.logit(noise.clamp(EPS, 1 - EPS))
        return self.transform(levels, e.to(dtype))

    def transform(self, levels: Tensor, e: Tensor) -> tuple[Tensor, Tensor]:
        """The flow from logistic noise ``e``: ``(u, log q(u | levels))``."""
        x = levels.to(e.dtype) / 2**self.bits - 0.5  # the data's place in model space
        feats = self.features(x)
        logq = _log_sigmoid_grad(e).flatten(1).sum(1)
        z = e
        for layer in self.couplings:
            z, ld = layer(z, feats)
            logq = logq - ld
        logq = logq - _log_sigmoid_grad(z).flatten(1).sum(1)
        u = torch.sigmoid(z)
        top = 1.0 - torch.finfo(u.dtype).eps / 2  # the largest float below 1
        return u.clamp(max=top), logq


def attach(model: nn.Module, recipe: Any, shape: tuple[int, ...]) -> None:
    """Give ``model`` its ``dequantizer`` when the recipe asks for ``dequantize variational``
    (initialised from the run's seed alone, never from the global RNG's state)."""
    if getattr(recipe, "dequantize", "uniform") != "variational":
        return
    opts = dict(getattr(recipe, "dequantize_options", {}) or {})
    ref = next(model.parameters(), None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(recipe.seed) * 7919 + 17)
        q = VariationalDequantizer(
            shape, recipe.bits, steps=int(opts.get("steps", 4)), hidden=int(opts.get("hidden", 32))
        )
    if ref is not None:
        q = q.to(device=ref.device, dtype=ref.dtype)
    model.dequantizer = q


def of(model: nn.Module) -> VariationalDequantizer | None:
    """The model's ``q``, or ``None`` under uniform dequantisation."""
    return getattr(model, "dequantizer", None)
