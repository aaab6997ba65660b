r"""iSDP's forward as one autograd node with a hand-written backward (imports torch).

Imported only from inside :class:`flowspec.layers.isdp.ISDP`'s methods, so that checking a
spec stays torch-free. At the sizes flowspec's models use (N = 4 or 16 patches, a few
hundred features per patch) every op of the layer costs more in dispatch and autograd
bookkeeping than in arithmetic: composed from torch ops, autograd recorded about 40 nodes
for one call. Here the forward runs without recording and the backward is the chain rule
written out once, reusing what the forward computed (the blocks, their LU factors, the
gathered ``Q``, ``K`` and free entries).

The node takes the layer's parameters as they are stored (the two 1x1 convolutions, ``log d``,
``theta``, ``gamma``) and computes the per-head coefficients inside, so that no small autograd
node is recorded around it: at these sizes each costs about as much as a large one.

Notation (see ``ISDP``): groups ``g`` (a head and a free-row pattern), ``A_h = alpha_h S_h +
delta_h I``, blocks ``B_g`` (``A_head(g)`` on ``U_g x U_g``, ``I`` elsewhere), the gains
``gain_h``, ``y_g = gain B_g x_g`` on the free entries of group ``g``, and
``logdet = sum_g count_g log det B_g``. The backward of ``log det B`` is ``B^{-T}``,
solved from the forward's LU factors (one factorisation per call).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable


def coefficients(layer: Any, coef: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(alpha, delta, gain)`` per head from ``coef`` = ``(log d, theta[, gamma])``."""
    from ._attention import BETA_BOUND, RESIDUAL_BOUND
    from .isdp import DIAG_FLOOR

    theta = coef[1]
    one = torch.ones_like(theta)
    if layer.form == "paper":
        return one, 1.0 + DIAG_FLOOR + F.softplus(theta), one
    bound = BETA_BOUND if layer.form == "identity" else RESIDUAL_BOUND
    return bound * torch.tanh(theta), one, torch.exp(coef[2]) if coef.shape[0] > 2 else one


class ISDPForward(torch.autograd.Function):
    """``(y, logdet)`` from ``x`` and the layer's parameters: ``qk`` (2, C, C + 1), ``Q``'s
    and ``K``'s 1x1 convolutions with the bias last, and ``coef`` (rows ``log d``, ``theta``
    and, in the identity form, ``gamma``; a column per head)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, qk: Tensor, coef: Tensor, layer: Any
                ) -> tuple[Tensor, Tensor]:
        from .isdp import _LOG_D_BOUND

        b, c, h, w = x.shape
        weight, bias = layer._qk_weights(qk)
        log_d, theta = coef[0], coef[1]
        gamma = coef[2] if coef.shape[0] > 2 else None
        inv_d = torch.exp(-log_d.clamp(-_LOG_D_BOUND, _LOG_D_BOUND))
        alpha, delta, gain = coefficients(layer, coef)
        x_masked, q, k = layer._qk(x, weight, bias)  # Q, K: (B, heads, N, width)
        raw = q @ k.transpose(-1, -2)  # (B, heads, N, N)
        logits = raw * inv_d.view(-1, 1, 1)
        finite = torch.isfinite(logits)  # no host sync: replaced entries get no gradient
        logits = torch.nan_to_num(logits, nan=0.0, posinf=layer.logit_bound,
                                  neginf=-layer.logit_bound)
        soft = torch.softmax(logits, dim=-1)
        a = alpha.view(-1, 1, 1) * soft + delta.view(-1, 1, 1) * layer.eye
        blocks = layer._blocks(a)
        lu, pivots, _ = torch.linalg.lu_factor_ex(blocks)  # the log-det's, and the backward's
        logdet = lu.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1) @ \
            layer.block_count.to(x.dtype)
        logdet = layer._gain_logdet(logdet, gamma)
        gain_g = gain[layer.block_head].view(-1, 1, 1)
        mix = blocks * gain_g
        x_free = layer._free_slots(x)
        y = layer._scatter_free(x, mix @ x_free)
        ctx.layer, ctx.finite, ctx.shape = layer, finite, (b, c, h, w)
        ctx.has_gamma = gamma is not None
        ctx.save_for_backward(x_masked, q, k, raw, soft, blocks, mix, x_free, weight,
                              inv_d, alpha, gain_g, log_d, theta, gain, lu, pivots)
        return y, logdet

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor | None, glog: Tensor | None) -> tuple:
        from ._attention import BETA_BOUND, RESIDUAL_BOUND
        from .isdp import _LOG_D_BOUND

        (x_masked, q, k, raw, soft, blocks, mix, x_free, weight, inv_d, alpha,
         gain_g, log_d, theta, gain, lu, pivots) = ctx.saved_tensors
        layer, (b, c, h, w) = ctx.layer, ctx.shape
        if gy is None:
            gy = x_masked.new_zeros(b, c, h, w)
        # the mixing y_g = gain B_g x_g on the free entries; masked entries are copied
        gy_free = layer._free_slots(gy, zeroed=True)  # x_free is not zeroed: gy_free must be
        g_mix = gy_free @ x_free.transpose(-1, -2)  # (B, G, N, N)
        gx = layer._scatter_free(gy, mix.transpose(-1, -2) @ gy_free)
        g_gain_g = (g_mix * blocks).sum((0, 2, 3))  # (blocks,)
        g_blocks = g_mix * gain_g
        if glog is not None:  # d log det B / dB = B^{-T}
            inv_t = torch.linalg.lu_solve(lu, pivots, layer.eye.expand_as(lu), adjoint=True)
            g_blocks = g_blocks + inv_t * (
                glog.view(-1, 1, 1, 1) * layer.block_count.to(gy.dtype).view(-1, 1, 1))
        # blocks -> every head's A (the identity outside U x U carries no parameter)
        if layer.whole:
            g_a = g_blocks
        else:
            g_a = g_blocks.new_zeros(b, layer.heads, *g_blocks.shape[2:]).index_add(
                1, layer.block_head, torch.where(layer.block_rows, g_blocks, 0.0))
        g_soft = g_a * alpha.view(-1, 1, 1)
        g_logits = soft * (g_soft - (g_soft * soft).sum(-1, keepdim=True))
        g_logits = torch.where(ctx.finite, g_logits, 0.0)  # nan_to_num's replaced logits
        g_inv_d = (g_logits * raw).sum((0, 2, 3))
        g_raw = g_logits * inv_d.view(-1, 1, 1)
        # raw = Q K^T; back to the image layout (the gather is a bijection on the entries)
        g_qk = torch.cat([(g_raw @ k).view(b, -1).index_select(1, layer.qk_back),
                          (g_raw.transpose(-1, -2) @ q).view(b, -1).index_select(
                              1, layer.qk_back)], 1).view(b, 2 * c, h * w)
        g_weight = torch.bmm(g_qk, x_masked.view(b, c, h * w).transpose(1, 2)).sum(0)
        g_bias = g_qk.sum((0, 2))
        g_x_masked = torch.bmm(weight.t().expand(b, -1, -1), g_qk).view(b, c, h, w)
        gx = gx.addcmul_(g_x_masked, layer.mask_f)
        # the per-head coefficients -> the stored parameters
        inside = (log_d >= -_LOG_D_BOUND) & (log_d <= _LOG_D_BOUND)
        g_log_d = torch.where(inside, -inv_d * g_inv_d, 0.0)
        if layer.form == "paper":  # delta = 1 + floor + softplus(theta)
            g_delta = g_a.diagonal(dim1=-2, dim2=-1).sum((0, 2))
            g_theta = g_delta * torch.sigmoid(theta)
        else:  # alpha = bound tanh(theta)
            bound = BETA_BOUND if layer.form == "identity" else RESIDUAL_BOUND
            g_alpha = (g_a * soft).sum((0, 2, 3))
            g_theta = g_alpha * bound * (1.0 - torch.tanh(theta).square())
        g_gamma = None
        if ctx.has_gamma:  # gain = exp(gamma); the log-det's |U| gamma
            g_gamma = gain * gain_g.new_zeros(layer.heads).index_add(
                0, layer.block_head, g_gain_g)
            if glog is not None:
                g_gamma = g_gamma + layer.head_free.to(gy.dtype) * glog.sum()
        g_qk_param = torch.cat([g_weight.view(2, c, c), g_bias.view(2, c, 1)], 2)
        g_coef = torch.stack([g_log_d, g_theta] + ([g_gamma] if ctx.has_gamma else []))
        return gx, g_qk_param, g_coef, None
