r"""iSDP's forward as one autograd node with a hand-written backward (imports torch).

Used by :class:`flowspec.nn.isdp.ISDP`. At the sizes flowspec's models use (N = 4 or 16
patches, a few hundred features per patch) every op of the layer costs more in dispatch and
autograd bookkeeping than in arithmetic: composed from torch ops, autograd recorded about
40 nodes for one call. Here the forward runs without recording and the backward is the
chain rule written out once, reusing what the forward computed.

The kernel works with transposed matrices: it computes ``L^T = K Q^T`` and normalises its
columns (``S^T``), because a softmax over a short last axis is several times slower on CPU
than one over the axis before it. It builds the mixing matrices with their gain folded in,
``T_h = (g_h A_h)^T = alpha'_h S_h^T + delta'_h I`` (``alpha' = g alpha``, ``delta' = g
delta``), and the blocks ``T_g`` (``T_head(g)`` on ``U_g x U_g``, ``I`` elsewhere):
``det T_g = g^|U_g| det A[U_g, U_g]``, so ``logdet = sum_g count_g log det T_g`` includes
the gain's share, and the free entries of group ``g`` map as ``y_g = T_g^T x_g``. One LU
factorisation per call gives the log-det and, in the backward, ``T_g^{-T}`` (the
derivative of ``log det``); the inverse solves with the same factors.

Notation as in :class:`~flowspec.nn.isdp.ISDP`; ``coef`` holds the rows ``log d``,
``theta`` and, in the identity form, ``gamma``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from flowspec.layers._attention import BETA_BOUND, RESIDUAL_BOUND
from flowspec.layers.isdp import _LOG_D_BOUND as LOG_D_BOUND
from flowspec.layers.isdp import _LOGIT_BOUND as LOGIT_BOUND
from flowspec.layers.isdp import DIAG_FLOOR

from .base import exact_products

_softmax_backward = torch.ops.aten._softmax_backward_data


def _bound(layer: Any) -> float:
    """``b`` of ``beta = b tanh(theta)`` (identity and residual forms)."""
    return BETA_BOUND if layer.form == "identity" else RESIDUAL_BOUND


def inv_scale(coef: Tensor) -> Tensor:
    """``1 / d`` per head, ``log d`` clamped to keep the softmax finite."""
    return torch.exp(-coef[0].clamp(-LOG_D_BOUND, LOG_D_BOUND))


def coefficients(layer: Any, coef: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(alpha, delta, gain)`` per head from ``coef``: ``A = alpha S + delta I``, mixing
    ``gain A``."""
    theta = coef[1]
    one = torch.ones_like(theta)
    if layer.form == "paper":
        return one, 1.0 + DIAG_FLOOR + F.softplus(theta), one
    gain = torch.exp(coef[2]) if coef.shape[0] > 2 else one
    return _bound(layer) * torch.tanh(theta), one, gain


def _gained(layer: Any, coef: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(inv_d, alpha', delta')`` per head: ``1 / d`` and the gain folded into ``A``."""
    alpha, delta, gain = coefficients(layer, coef)
    if coef.shape[0] > 2:  # the identity form: delta = 1, so delta' = gain
        return inv_scale(coef), gain * alpha, gain
    return inv_scale(coef), alpha, delta


def _transposed_mixing(
    layer: Any, x: Tensor, qk: Tensor, inv_d: Tensor, alpha: Tensor, delta: Tensor
) -> tuple[Tensor, ...]:
    """From ``x`` (only its masked entries matter): ``(x_aug, q, k, logits_t, finite, s_t,
    t)``. ``x_aug`` (B, C + 1, HW) is ``M x`` with a row of ones (the bias's input); ``q``
    and ``k`` (B, heads, N, width) hold ``Q`` and ``K`` per head (``K`` zero in the padding,
    so ``Q``'s padding meets zeros);
    ``logits_t = K Q^T / d`` (non-finite entries replaced), ``s_t`` its per-head softmax over
    rows (``S^T``) and ``t`` every head's ``T = alpha' S^T + delta' I``."""
    b, c, h, w = x.shape
    x_aug = torch.cat(
        [
            x.reshape(b, c, h * w) * layer.mask_f.view(1, c, h * w),
            layer.ones_row.expand(b, 1, h * w),
        ],
        1,
    )
    # (B, 2C, HW), Q's rows then K's; bmm: matmul would fold the batch through copies
    qk_img = torch.bmm(qk.view(1, 2 * c, c + 1).expand(b, -1, -1), x_aug)
    flat = qk_img.view(b, -1)  # two gathers: halves of one would not be contiguous
    q = flat.index_select(1, layer.qk_index).view(b, *layer.qk_shape)
    k = flat.index_select(1, layer.k_index).view(b, *layer.qk_shape)
    if layer.qk_padded:
        k = k * layer.qk_used
    logits_t = (k @ q.transpose(-1, -2)) * inv_d.view(-1, 1, 1)
    finite = torch.isfinite(logits_t)  # no host sync: replaced entries get no gradient
    logits_t = torch.nan_to_num(logits_t, nan=0.0, posinf=LOGIT_BOUND, neginf=-LOGIT_BOUND)
    s_t = torch.softmax(logits_t, dim=-2)
    t = torch.addcmul(delta.view(-1, 1, 1) * layer.eye, alpha.view(-1, 1, 1), s_t)
    return x_aug, q, k, logits_t, finite, s_t, t


def _inverse_t(layer: Any, lu: Tensor, pivots: Tensor) -> Tensor:
    """Every block's ``T^{-T}`` from its LU factors."""
    return torch.linalg.lu_solve(lu, pivots, layer.eye.expand_as(lu), adjoint=True)


def _blocks_t(layer: Any, t: Tensor) -> Tensor:
    """(B, G, N, N): group ``(h, U)``'s block is ``T_h`` on ``U x U``, ``I`` elsewhere."""
    if layer.whole:
        return t
    return torch.where(layer.block_rows, t.index_select(1, layer.block_head), layer.eye)


def _logdet(layer: Any, lu: Tensor) -> Tensor:
    """``sum_g count_g log |det T_g|`` from the blocks' LU factors (every det is > 0)."""
    diag = lu.diagonal(dim1=-2, dim2=-1).abs().log()
    return diag.flatten(1) @ layer.diag_count


def _free_slots(layer: Any, t: Tensor) -> Tensor:
    """``t`` (B, C, H, W) in the ``free`` layout (B, G, N, width); the slots outside a block's
    free rows hold other entries, which the mixing keeps apart and nothing scatters back."""
    return (
        t.reshape(t.shape[0], -1)
        .index_select(1, layer.free_index)
        .view(t.shape[0], *layer.free_shape)
    )


def _scatter_free(layer: Any, t: Tensor, slots: Tensor) -> Tensor:
    """``t`` with its free entries replaced by ``slots`` (B, G, N, width)."""
    free = slots.reshape(t.shape[0], -1).index_select(1, layer.free_back)
    return torch.lerp(free.view_as(t), t, layer.mask_f)  # exact: weights 0 and 1


def inverse(layer: Any, y: Tensor) -> tuple[Tensor, Tensor]:
    """``(x, -logdet)`` of ``y = layer(x)``: the masked entries were copied, so ``y`` gives
    the same blocks; one LU factorisation gives the log-det and the solve."""
    with exact_products(y):
        return _inverse(layer, y)


def _inverse(layer: Any, y: Tensor) -> tuple[Tensor, Tensor]:
    inv_d, alpha, delta = _gained(layer, layer.coef)
    t = _transposed_mixing(layer, y, layer.qk, inv_d, alpha, delta)[-1]
    lu, pivots, _ = torch.linalg.lu_factor_ex(_blocks_t(layer, t))
    # T^{-T} from the factors, then one product: solving for the free entries directly
    # (many right-hand sides per small block) is about 3x slower on CPU
    x_free = _inverse_t(layer, lu, pivots) @ _free_slots(layer, y)
    return _scatter_free(layer, y, x_free), -_logdet(layer, lu)


class ISDPForward(torch.autograd.Function):
    """``(y, logdet)`` from ``x`` and the layer's parameters: ``qk`` (2, C, C + 1), ``Q``'s
    and ``K``'s 1x1 convolutions with the bias last, and ``coef`` (rows ``log d``, ``theta``
    and, in the identity form, ``gamma``; a column per head)."""

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, qk: Tensor, coef: Tensor, layer: Any
    ) -> tuple[Tensor, Tensor]:
        # the bijection and its log-det stay in the input's precision under a caller's
        # autocast (as in a model, where the forward loop turns it off around the layers)
        with torch.autocast(x.device.type, enabled=False), exact_products(x):
            return ISDPForward._forward(ctx, x, qk, coef, layer)

    @staticmethod
    def _forward(
        ctx: Any, x: Tensor, qk: Tensor, coef: Tensor, layer: Any
    ) -> tuple[Tensor, Tensor]:
        inv_d, alpha, delta = _gained(layer, coef)
        x_aug, q, k, logits_t, finite, s_t, t = _transposed_mixing(
            layer, x, qk, inv_d, alpha, delta
        )
        blocks = _blocks_t(layer, t)
        lu, pivots, _ = torch.linalg.lu_factor_ex(blocks)
        x_free = _free_slots(layer, x)
        y = _scatter_free(layer, x, blocks.transpose(-1, -2) @ x_free)
        ctx.layer, ctx.finite, ctx.device_type = layer, finite, x.device.type
        ctx.save_for_backward(
            x_aug, q, k, logits_t, s_t, blocks, x_free, lu, pivots, qk, coef, inv_d, alpha, delta
        )
        return y, _logdet(layer, lu)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor | None, glog: Tensor | None) -> tuple:
        # a backward called inside an autocast region would otherwise mix precisions
        like = ctx.saved_tensors[0]
        with torch.autocast(ctx.device_type, enabled=False), exact_products(like):
            return ISDPForward._backward(ctx, gy, glog)

    @staticmethod
    def _backward(ctx: Any, gy: Tensor | None, glog: Tensor | None) -> tuple:
        (x_aug, q, k, logits_t, s_t, blocks, x_free, lu, pivots, qk, coef, inv_d, alpha, delta) = (
            ctx.saved_tensors
        )
        layer = ctx.layer
        b, c = x_aug.shape[0], x_aug.shape[1] - 1
        shape = (b, c, *layer.in_shape[1:])
        if gy is None:
            gy = x_aug.new_zeros(shape)
        # the mixing: y_g = T_g^T x_g on the free entries; masked entries are copied
        gy_free = _free_slots(layer, gy) * layer.free_slots  # zero outside the free rows
        gx = _scatter_free(layer, gy, blocks @ gy_free)
        g_blocks = x_free @ gy_free.transpose(-1, -2)
        if glog is not None:  # d log det T / dT = T^{-T}
            g_blocks.addcmul_(
                _inverse_t(layer, lu, pivots), glog.view(-1, 1, 1, 1) * layer.block_weight
            )
        # blocks -> every head's T (the identity outside U x U carries no parameter)
        if layer.whole:
            g_t = g_blocks
        elif torch.are_deterministic_algorithms_enabled():
            # index_add_'s deterministic CUDA kernel is a slow sort: a one-hot product instead
            g_t = torch.einsum(
                "bgij,gh->bhij", torch.where(layer.block_rows, g_blocks, 0.0), layer.block_onehot
            )
        else:
            g_t = g_blocks.new_zeros(b, layer.heads, *g_blocks.shape[2:]).index_add_(
                1, layer.block_head, torch.where(layer.block_rows, g_blocks, 0.0)
            )
        # T = alpha' S^T + delta' I; the softmax normalised each column of L^T
        g_logits = _softmax_backward(g_t * alpha.view(-1, 1, 1), s_t, -2, s_t.dtype)
        g_logits = torch.where(ctx.finite, g_logits, 0.0)  # nan_to_num's replaced logits
        g_log_d = -(g_logits * logits_t).sum((0, 2, 3))  # L = raw exp(-log d)
        g_raw = g_logits * inv_d.view(-1, 1, 1)
        # raw^T = K Q^T: dQ = raw^T^T K, dK = raw^T Q, back to the image layout
        g_slots = torch.stack([g_raw.transpose(-1, -2) @ k, g_raw @ q], 1)
        g_img = g_slots.view(b, -1).index_select(1, layer.qk_back).view(b, 2 * c, -1)
        g_x_masked = torch.bmm(
            qk.view(1, 2 * c, c + 1)[:, :, :c].transpose(1, 2).expand(b, -1, -1), g_img
        ).view(shape)
        gx = gx.addcmul_(g_x_masked, layer.mask_f)
        g_qk = g_coef = None  # not for a frozen layer
        if ctx.needs_input_grad[1]:
            g_qk = torch.bmm(g_img, x_aug.transpose(1, 2)).sum(0).view_as(qk)
        if ctx.needs_input_grad[2]:
            g_coef = _coef_grad(
                layer,
                coef,
                alpha,
                delta,
                g_log_d,
                (g_t * s_t).sum((0, 2, 3)),
                g_t.diagonal(dim1=-2, dim2=-1).sum((0, 2)),
            )
        return gx, g_qk, g_coef, None


def _coef_grad(
    layer: Any,
    coef: Tensor,
    alpha: Tensor,
    delta: Tensor,
    g_log_d: Tensor,
    g_alpha: Tensor,
    g_delta: Tensor,
) -> Tensor:
    """The gradient of ``coef`` from those of the (unclamped) ``log d``, ``alpha'`` and
    ``delta'``."""
    log_d, theta = coef[0], coef[1]
    inside = (log_d >= -LOG_D_BOUND) & (log_d <= LOG_D_BOUND)
    rows = [torch.where(inside, g_log_d, 0.0)]
    if layer.form == "paper":  # delta' = 1 + floor + softplus(theta)
        rows.append(g_delta * torch.sigmoid(theta))
    else:  # alpha' = gain bound tanh(theta), delta' = gain
        tanh = torch.tanh(theta)
        rows.append(g_alpha * (delta * _bound(layer)) * (1.0 - tanh * tanh))
        if coef.shape[0] > 2:  # gain = exp(gamma)
            rows.append(g_alpha * alpha + g_delta * delta)
    return torch.stack(rows)
