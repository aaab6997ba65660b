r"""Invertible map-based attention (iMap): one attention weight per position, exact log-det.

The masks and the three forms are described in :mod:`flowspec.layers._attention`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from flowspec.layers._attention import GATE_BOUND, RESIDUAL_BOUND, mask_arg, module_form

from .base import SCALE_EPS, FlowLayer, Shape, checkerboard_3d


class IMap(FlowLayer):
    r"""Invertible map-based attention.

    With the 3-D mask ``M``, the pooled masked input at each position ``p``

        ``u_p = mean_c [W (M x)]_{c,p} + mean_c b_c``

    (``W`` a ``C x C`` 1x1 convolution with bias ``b``; its channel mean is a linear
    functional of the masked entries at ``p``), a per-position attention weight ``a_p`` and a
    per-channel scale ``sigma_c``, the layer computes

        ``y = M x sigma + (1 - M) x a``.

    The masked output entries depend only on the masked inputs (diagonal block
    ``diag(sigma_c)``); the free output entries are the free inputs times ``a_p``, which
    depends only on masked inputs (diagonal block ``diag(a_p)`` repeated over the ``n_p``
    free channels at ``p``). Hence, exactly,

        ``logdet = sum_c m_c log sigma_c + sum_p n_p log a_p``,

    with ``m_c`` the masked entries of channel ``c`` and ``n_p = #{c : M_{c,p} = 0}``:
    ``ceil(C/2)`` or ``floor(C/2)`` depending on the parity of ``p`` when ``C`` is odd,
    ``C/2`` only when ``C`` is even. Both counts are precomputed; the first sum does not
    depend on the sample. The inverse recovers the masked entries ``y_M / sigma``, from them
    ``u`` (as ``W``'s channel mean divided by ``sigma`` applied to ``y``) and ``a``, and
    divides the free entries by ``a``. With ``C = 1`` the weights no longer depend on the
    input (a 1x1 convolution only sees position ``p``, which is then free); still exact, but
    the checker asks for ``C >= 2``.

    The forms (``offset`` and ``s`` are learnable; ``b`` a constant):

    * ``identity`` (default): ``a_p = exp(offset + b tanh(u_p))``, ``sigma_c = exp(s_c)``,
      ``b = GATE_BOUND``; ``offset`` is a free log-gain of the free half, the input moves
      it by at most ``b``. Every parameter starts at 0: the layer starts as the identity,
      and ``W`` has a gradient at once (``u`` is linear in ``W`` inside ``tanh``).
    * ``paper``: ``a_p = sigmoid(u_p + offset) + eps``, ``sigma_c = sigmoid(s_c) + eps``
      (``eps = SCALE_EPS``, ``offset = s = 2`` and a uniform ``W`` at the start).
    * ``residual``: ``a_p = exp(b tanh(u_p + offset))``, ``sigma_c = exp(b tanh(s_c))``,
      ``b = RESIDUAL_BOUND``, zeros at the start. Every factor lies in ``[e^-b, e^b]``: the
      inverse divides by at least ``e^-b`` instead of ``SCALE_EPS = 1e-4``.

    Kernel: one weighted channel sum gives ``u`` (the weights ``mean_c W`` times the mask,
    a ``C x H x W`` constant per call), one ``lerp`` with the 0/1 mask puts ``sigma`` and
    ``a`` into one scale tensor and one product applies it; the log-det is one ``addmv``
    onto the constant masked part; the inverse folds ``1 / sigma`` into the weights, so
    neither direction divides or masks a full-size tensor more than once.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if args["act"] != "sigmoid":
            raise ValueError(f"unknown iMap activation {args['act']!r}; expected 'sigmoid'")
        self.form = module_form(args)
        c = self.in_shape[0]
        mask = checkerboard_3d(self.in_shape, mask_arg(args))
        self.register_buffer("mask", mask.unsqueeze(0), persistent=False)
        self.register_buffer("mask_f", mask.to(torch.float32), persistent=False)
        self.register_buffer("n_free", (~mask).sum(dim=0).to(torch.float32), persistent=False)
        self.register_buffer("n_free_flat", self.n_free.flatten().clone(), persistent=False)
        self.register_buffer(
            "n_masked", mask.flatten(1).sum(dim=1).to(torch.float32), persistent=False
        )
        bound = 1.0 / math.sqrt(c)
        self.weight = nn.Parameter(torch.empty(c, c).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c).uniform_(-bound, bound))
        start = 2.0 if self.form == "paper" else 0.0
        self.offset = nn.Parameter(torch.tensor(start))
        self.s = nn.Parameter(torch.full((1, c, 1, 1), start))
        if self.form != "paper":  # start at the identity, as a zero-initialised branch
            with torch.no_grad():
                self.weight.zero_()
                self.bias.zero_()

    def _gates(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, log a)`` from the pooled masked input ``u`` (B, H, W)."""
        if self.form == "identity":
            log_a = torch.add(self.offset, torch.tanh(u + self.bias.mean()), alpha=GATE_BOUND)
        elif self.form == "residual":
            log_a = RESIDUAL_BOUND * torch.tanh(u + (self.bias.mean() + self.offset))
        else:
            a = torch.sigmoid(u + (self.bias.mean() + self.offset)) + SCALE_EPS
            return a, torch.log(a)
        return torch.exp(log_a), log_a

    def _masked_scale(self) -> tuple[Tensor, Tensor]:
        """``(sigma, sample-independent log-det)``: the masked entries' scales (1, C, 1, 1)."""
        if self.form == "identity":
            log_sigma = self.s
            sigma = torch.exp(log_sigma)
        elif self.form == "residual":
            log_sigma = RESIDUAL_BOUND * torch.tanh(self.s)
            sigma = torch.exp(log_sigma)
        else:
            sigma = torch.sigmoid(self.s) + SCALE_EPS
            log_sigma = torch.log(sigma)
        return sigma, torch.dot(self.n_masked.to(sigma.dtype), log_sigma.flatten())

    def _pool_weights(self) -> Tensor:
        """``mean_c W`` on the masked entries, zero elsewhere: (C, H, W)."""
        return self.weight.mean(dim=0).view(-1, 1, 1) * self.mask_f

    def _scale_entries(
        self, x: Tensor, pool: Tensor, sigma: Tensor, masked_logdet: Tensor, inverse: bool
    ) -> tuple[Tensor, Tensor]:
        u = (x * pool).sum(dim=1)  # several times cheaper than einsum's permute + bmm on CPU
        a, log_a = self._gates(u)
        scale = torch.lerp(a.unsqueeze(1), sigma, self.mask_f)  # exact: weights 0 and 1
        out = x / scale if inverse else x * scale
        logdet = torch.addmv(masked_logdet, log_a.flatten(1), self.n_free_flat.to(log_a.dtype))
        return out, -logdet if inverse else logdet

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        sigma, masked_logdet = self._masked_scale()
        return self._scale_entries(x, self._pool_weights(), sigma, masked_logdet, inverse=False)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # u from x_M = y_M / sigma: fold 1 / sigma_c into the pooling weights
        sigma, masked_logdet = self._masked_scale()
        pool = self._pool_weights() / sigma.view(-1, 1, 1)
        return self._scale_entries(y, pool, sigma, masked_logdet, inverse=True)

    # kept for tests and tools: the weights computed the straightforward way
    def _weights(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, log a)`` of shape (B, 1, H, W) from the masked entries (zeros elsewhere)."""
        u = torch.einsum("c,bchw->bhw", self.weight.mean(dim=0), x_masked)
        a, log_a = self._gates(u)
        return a.unsqueeze(1), log_a.unsqueeze(1)
