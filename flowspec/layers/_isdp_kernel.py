r"""iSDP's forward as one autograd node with a hand-written backward (imports torch).

Imported only from inside :class:`flowspec.layers.isdp.ISDP`'s methods, so that checking a
spec stays torch-free. At the sizes flowspec's models use (N = 4 or 16 patches, a few
hundred features per patch) every op of the layer costs more in dispatch and autograd
bookkeeping than in arithmetic: composed from torch ops, autograd recorded about 40 nodes
for one call. Here the forward runs without recording and the backward is the chain rule
written out once, reusing what the forward computed (the blocks, their LU factors, the
gathered ``Q``, ``K`` and free entries).

Notation (see ``ISDP``): groups ``g`` (a head and a free-row pattern), ``A_h = alpha_h S_h +
delta_h I``, blocks ``B_g`` (``A_head(g)`` on ``U_g x U_g``, ``I`` elsewhere), the gains
``gain_h``, ``y_g = gain B_g x_g`` on the free entries of group ``g``, and
``logdet = sum_g count_g log det B_g``. The backward of ``log det B`` is ``B^{-T}``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable


class ISDPForward(torch.autograd.Function):
    """``(y, logdet of the blocks)`` from ``x`` and the layer's per-call parameters."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, inv_d: Tensor,
                alpha: Tensor, delta: Tensor, gain: Tensor, layer: Any) -> tuple[Tensor, Tensor]:
        b, c, h, w = x.shape
        x_masked, q, k = layer._qk(x, weight, bias)  # Q, K: (B, heads, N, width)
        raw = q @ k.transpose(-1, -2)  # (B, heads, N, N)
        logits = raw * inv_d.view(-1, 1, 1)
        finite = torch.isfinite(logits)  # no host sync: replaced entries get no gradient
        logits = torch.nan_to_num(logits, nan=0.0, posinf=layer.logit_bound,
                                  neginf=-layer.logit_bound)
        soft = torch.softmax(logits, dim=-1)
        eye = torch.eye(soft.shape[-1], dtype=x.dtype, device=x.device)
        a = alpha.view(-1, 1, 1) * soft + delta.view(-1, 1, 1) * eye
        blocks = layer._blocks(a)
        lu, _, _ = torch.linalg.lu_factor_ex(blocks)
        logdet = lu.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1) @ \
            layer.block_count.to(x.dtype)
        gain_g = gain[layer.block_head].view(-1, 1, 1)
        mix = blocks * gain_g
        x_free = layer._free_slots(x)
        y = layer._scatter_free(x, mix @ x_free)
        ctx.layer, ctx.finite, ctx.shape = layer, finite, (b, c, h, w)
        ctx.save_for_backward(x_masked, q, k, raw, soft, blocks, mix, x_free, weight,
                              inv_d, alpha, gain_g)
        return y, logdet

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor | None, glog: Tensor | None) -> tuple:
        (x_masked, q, k, raw, soft, blocks, mix, x_free, weight, inv_d, alpha,
         gain_g) = ctx.saved_tensors
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
            inv = torch.linalg.inv_ex(blocks)[0]
            g_blocks = g_blocks + inv.transpose(-1, -2) * (
                glog.view(-1, 1, 1, 1) * layer.block_count.to(gy.dtype).view(-1, 1, 1))
        # blocks -> every head's A (the identity outside U x U carries no parameter)
        if layer.whole:
            g_a = g_blocks
        else:
            g_a = g_blocks.new_zeros(b, layer.heads, *g_blocks.shape[2:]).index_add(
                1, layer.block_head, torch.where(layer.block_rows, g_blocks, 0.0))
        g_alpha = (g_a * soft).sum((0, 2, 3))
        g_delta = g_a.diagonal(dim1=-2, dim2=-1).sum((0, 2))
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
        gx = gx + torch.where(layer.mask, g_x_masked, 0.0)
        g_gain = gain_g.new_zeros(layer.heads).index_add(0, layer.block_head, g_gain_g)
        return gx, g_weight, g_bias, g_inv_d, g_alpha, g_delta, g_gain, None
