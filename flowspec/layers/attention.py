r"""Invertible attention: map-based (iMap) and scaled dot-product (iSDP) layers.

Both layers split the entries of a ``(C, H, W)`` sample with the 3-D checkerboard
``M[c, h, w] = (c + h + w) % 2`` (``mask=complement`` uses ``1 - M``): the entries with
``M = 1`` ("masked") are only rescaled or kept, and they alone drive the attention weights
that act on the others ("free", ``M = 0``). In the ordering (masked, free) the Jacobian is
block lower-triangular, so its determinant is the product of the two diagonal blocks'
determinants. That is the whole argument for exactness; the paper's pseudo-code replaces the
free block's determinant by closed forms (``C/2`` per position for iMap, ``p (p//2) c`` times
one ``slogdet`` for iSDP) that are only right in special cases. Here both are computed from
the actual mask: ``n_p`` free entries per position (iMap) and one small ``slogdet`` per
distinct column pattern (iSDP).

``residual=true`` (both layers) is the remedy for deep stacks that the paper's appendix H
asks for: every data-dependent factor becomes *identity plus a bounded branch*, so one layer
can neither shrink nor stretch any direction by more than a fixed factor and its inverse
amplifies rounding errors by at most ``e^b`` (iMap) or ``1 / (1 - b)`` (iSDP), ``b =``
:data:`RESIDUAL_BOUND`. The plain forms allow factors down to ``SCALE_EPS = 1e-4`` (iMap) and
inverse norms up to ``1 / DIAG_FLOOR = 100`` (iSDP) per layer, which compound over depth.
The masks, and with them the triangular-Jacobian argument, are the same, so the log-dets stay
exact.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from einops import rearrange
from pydantic import Field

from flowspec.kinds import Args, Issue, LayerKind, arg, fmt_shape, kind

from .base import SCALE_EPS, FlowLayer, Shape, batch_logdet, checkerboard_3d, sum_except_batch

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)

#: Diagonal floor of iSDP: ``A = softmax(.) + (1 + DIAG_FLOOR + softplus(theta)) I``.
DIAG_FLOOR = 1e-2
#: Bounds on iSDP's ``log d`` and attention logits: keep softmax finite for any parameters.
_LOG_D_BOUND = 30.0
_LOGIT_BOUND = 1e4
#: ``b`` of the residual forms: iMap scales are ``exp(b tanh(.))`` in ``[e^-b, e^b]``; iSDP is
#: ``A = I + beta S`` with ``|beta| = b |tanh(theta)| < b`` and ``S`` the row-stochastic softmax.
RESIDUAL_BOUND = 0.5


def _mask_arg(args: dict[str, Any]) -> bool:
    """``True`` for ``mask=complement``, ``False`` for ``mask=checkerboard``."""
    mask = args["mask"]
    if mask not in ("checkerboard", "complement"):
        raise ValueError(f"unknown attention mask {mask!r}; expected 'checkerboard'/'complement'")
    return mask == "complement"


def _residual_arg(args: dict[str, Any]) -> bool:
    """``residual=true`` selects the bounded, identity-plus-branch form (default off)."""
    value = args.get("residual", False)
    if not isinstance(value, bool):
        raise TypeError(f"attention residual must be true or false, got {value!r}")
    return value


class IMap(FlowLayer):
    r"""Invertible map-based attention.

    With the 3-D mask ``M`` and per-position attention weights

        ``a_p = sigmoid(mean_c [W (M x) + b]_{c,p} + offset) + eps``

    (``W`` a ``C x C`` 1x1 convolution; its channel mean is a linear functional of the
    masked entries at ``p``), the layer computes

        ``y = M x (sigmoid(s) + eps) + (1 - M) x a``

    with a learnable log-odds ``s`` **per channel**. The masked output entries depend only on
    the masked inputs (diagonal block ``diag(sigmoid(s_c) + eps)``); the free output entries
    are the free inputs times ``a_p``, which depends only on masked inputs (diagonal block
    ``diag(a_p)`` repeated over the ``n_p`` free channels at ``p``). Hence, exactly,

        ``logdet = sum_{c,p} M_{c,p} log(sigmoid(s_c) + eps) + sum_p n_p log a_p``,

    where ``n_p = #{c : M_{c,p} = 0}``: ``ceil(C/2)`` or ``floor(C/2)`` depending on the
    parity of ``p`` when ``C`` is odd, ``C/2`` only when ``C`` is even. The inverse first
    recovers the masked entries ``x_M = y_M / (sigmoid(s) + eps)``, recomputes ``a`` from
    them and divides the free entries by it. Any ``C >= 1`` is exact; with ``C = 1`` the
    weights ``a_p`` no longer depend on the input (a 1x1 convolution only sees position
    ``p``, which is then free), which is why the checker asks for ``C >= 2``.

    ``residual=true`` replaces both sigmoids by bounded log-scales around the identity,

        ``a_p = exp(b tanh(g_p))``,  ``sigma_c = exp(b tanh(s_c))``,  ``b = RESIDUAL_BOUND``

    with ``g_p = mean_c [W (M x) + b]_{c,p} + offset`` as above, i.e.
    ``y = x + x (a - 1)``: identity plus a branch bounded by ``e^b - 1``. The Jacobian keeps
    its block-triangular structure (``a`` still depends on masked entries only), so

        ``logdet = b (sum_{c,p} M_{c,p} tanh(s_c) + sum_p n_p tanh(g_p))``

    exactly, with no ``log`` to underflow. Every factor lies in ``[e^-b, e^b]``: the inverse
    divides by at least ``e^-b`` instead of ``SCALE_EPS = 1e-4``. All parameters start at 0,
    so the layer starts as the identity (like a zero-initialised residual branch) and
    ``W`` still gets a gradient (``a`` is linear in ``W`` inside ``tanh``).
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if args["act"] != "sigmoid":
            raise ValueError(f"unknown iMap activation {args['act']!r}; expected 'sigmoid'")
        self.residual = _residual_arg(args)
        c = self.in_shape[0]
        mask = checkerboard_3d(self.in_shape, _mask_arg(args))
        self.register_buffer("mask", mask.unsqueeze(0), persistent=False)
        self.register_buffer("n_free", (~mask).sum(dim=0).to(torch.float32), persistent=False)
        bound = 1.0 / math.sqrt(c)
        self.weight = nn.Parameter(torch.empty(c, c).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(c).uniform_(-bound, bound))
        start = 0.0 if self.residual else 2.0
        self.offset = nn.Parameter(torch.tensor(start))
        self.s = nn.Parameter(torch.full((1, c, 1, 1), start))
        if self.residual:  # start at the identity, as a zero-initialised residual branch
            with torch.no_grad():
                self.weight.zero_()
                self.bias.zero_()

    def _scale(self, raw: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, log scale)``: ``sigmoid(raw) + eps``, or ``exp(b tanh(raw))`` (residual)."""
        if self.residual:
            log_scale = RESIDUAL_BOUND * torch.tanh(raw)
            return torch.exp(log_scale), log_scale
        scale = torch.sigmoid(raw) + SCALE_EPS
        return scale, torch.log(scale)

    def _weights(self, x_masked: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, log a)`` of shape (B, 1, H, W) from the masked entries (zeros elsewhere)."""
        # mean_c (W x + b)_c = (mean_c W_c.) x + mean_c b_c
        pooled = torch.einsum("c,bchw->bhw", self.weight.mean(dim=0), x_masked)
        a, log_a = self._scale(pooled + self.bias.mean() + self.offset)
        return a.unsqueeze(1), log_a.unsqueeze(1)

    def _masked_scale(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(scale, constant logdet)`` of the masked entries."""
        scale, log_scale = self._scale(self.s)
        log_scale = log_scale.expand(1, *self.in_shape)
        return scale, torch.where(self.mask, log_scale, torch.zeros_like(log_scale)).sum()

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        a, log_a = self._weights(torch.where(self.mask, x, zero))
        scale, masked_logdet = self._masked_scale(x)
        y = torch.where(self.mask, x * scale, x * a)
        logdet = batch_logdet(masked_logdet, x) + sum_except_batch(self.n_free * log_a[:, 0])
        return y, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        zero = torch.zeros((), dtype=y.dtype, device=y.device)
        scale, masked_logdet = self._masked_scale(y)
        x_masked = torch.where(self.mask, y / scale, zero)
        a, log_a = self._weights(x_masked)
        x = torch.where(self.mask, x_masked, y / a)
        logdet = batch_logdet(masked_logdet, y) + sum_except_batch(self.n_free * log_a[:, 0])
        return x, -logdet


class ISDP(FlowLayer):
    r"""Invertible scaled dot-product attention over a grid of patches.

    ``x`` (B, C, H, W) is cut into ``N = patches`` patches on a ``sqrt(N) x sqrt(N)`` grid and
    each patch flattened to ``P = C (H/sqrt N) (W/sqrt N)`` features (order ``c, h, w``):
    ``X`` is (B, N, P); the mask ``M`` seen the same way is an ``N x P`` binary matrix (its
    rows differ between patches when a patch side is odd). ``Q``, ``K`` come from two 1x1
    convolutions of ``M x``, rearranged alike. The ``P`` columns are split into ``heads``
    contiguous groups; head ``h`` has a scale ``d_h = exp(log d_h)`` (init ``sqrt`` of its
    group size) and an offset ``theta_h``, and

        ``A_h = softmax(Q_h K_h^T / d_h) + (1 + delta + softplus(theta_h)) I``   (N x N).

    ``y = M x + (1 - M) (A_h ((1 - M) x))`` on each head's columns: for column ``j`` with free
    row set ``U_j``, ``y[U_j, j] = A_h[U_j, U_j] x[U_j, j]``, and masked entries are copied.

    Exactness: ``A_h`` depends only on the masked entries, which pass unchanged, so the
    Jacobian is block triangular with an identity block and one block ``A_h[U_j, U_j]`` per
    column: ``logdet = sum_j log det A_h[U_j, U_j]``. Columns with the same ``U_j`` share the
    block, so this is one batched ``slogdet`` per (head, pattern) times the pattern's column
    count; with the 3-D checkerboard there are at most two patterns per head.

    Invertibility for any parameters: the softmax rows are non-negative and sum to 1, so every
    principal submatrix ``A[U, U]`` is strictly diagonally dominant with positive diagonal,
    margin at least ``delta = 1e-2`` (the floor keeps the margin when ``softplus`` underflows
    and the softmax saturates to a permutation, where ``1 + softplus`` would round to 1 and
    ``A`` could be singular in floating point). By Gershgorin every eigenvalue has positive
    real part, so ``det A[U, U] > 0`` and ``||A[U, U]^{-1}||_inf <= 1/delta``. ``log d`` is
    clamped to ``[-30, 30]`` and the logits to ``[-1e4, 1e4]`` (non-finite ones replaced),
    so the softmax is finite whatever ``Q``, ``K`` and ``d`` are. The inverse recovers ``A_h``
    from the copied masked entries and solves the same blocks.

    ``residual=true`` uses ``A_h = I + beta_h S_h`` with ``S_h`` the softmax above and
    ``beta_h = b tanh(theta_h)``, ``b = RESIDUAL_BOUND < 1``: ``y = x + beta S x`` on the free
    entries, the identity plus an attention branch. ``S_h[U, U]`` is non-negative with row sums
    at most 1, so ``||beta S[U, U]||_inf <= |beta| < b`` and every eigenvalue of ``A_h[U, U]``
    lies in the disk ``|lambda - 1| <= b``: ``det A_h[U, U] > 0`` (real part positive, complex
    eigenvalues in conjugate pairs), ``||A_h[U, U]||_inf <= 1 + b`` and (Neumann series)
    ``||A_h[U, U]^{-1}||_inf <= 1 / (1 - b)``, for any parameters. The log-det is the same
    sum of block ``slogdet``\ s, exact by the same argument. ``theta`` starts at 0: the
    layer starts as the identity (ReZero-style; ``theta`` gets a gradient at once, ``Q`` and
    ``K`` as soon as ``beta != 0``).
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        self.residual = _residual_arg(args)
        heads, patches = int(args["heads"]), int(args["patches"])
        grid = math.isqrt(patches) if patches >= 1 else 0
        if grid < 1 or grid * grid != patches:
            raise ValueError(f"iSDP patches must be a perfect square, got {patches}")
        if h % grid or w % grid:
            raise ValueError(f"iSDP: sqrt(patches)={grid} must divide H and W, got {h}x{w}")
        features = c * (h // grid) * (w // grid)
        if heads < 1 or 2 * heads > features:
            raise ValueError(
                f"iSDP heads must be in 1..P/2 = {features // 2} (P = {features} features "
                f"per patch), got {heads}"
            )
        self.grid, self.heads, self.patches, self.features = grid, heads, patches, features
        mask = checkerboard_3d(self.in_shape, _mask_arg(args))
        self.register_buffer("mask", mask.unsqueeze(0), persistent=False)
        free = ~self._to_patches(mask.unsqueeze(0))[0]  # (N, P)
        self.register_buffer("free", free.unsqueeze(0), persistent=False)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        groups = torch.tensor_split(torch.arange(features), heads)
        self.group_bounds = [(int(g[0]), int(g[-1]) + 1) for g in groups]
        self.log_d = nn.Parameter(torch.tensor([0.5 * math.log(len(g)) for g in groups]))
        self.theta = nn.Parameter(torch.zeros(heads))  # residual: beta = 0, the identity
        # One block per (head, free-row pattern): its rows U, its columns J, |J|.
        self.blocks: list[tuple[int, str, str, int]] = []
        for head, (lo, hi) in enumerate(self.group_bounds):
            patterns, which = torch.unique(free[:, lo:hi].T, dim=0, return_inverse=True)
            for i, pattern in enumerate(patterns):
                rows = torch.nonzero(pattern).flatten()
                cols = lo + torch.nonzero(which == i).flatten()
                if rows.numel() == 0:
                    continue
                rname, cname = f"block{len(self.blocks)}_rows", f"block{len(self.blocks)}_cols"
                self.register_buffer(rname, rows, persistent=False)
                self.register_buffer(cname, cols, persistent=False)
                self.blocks.append((head, rname, cname, int(cols.numel())))

    def _to_patches(self, t: Tensor) -> Tensor:
        return rearrange(t, "b c (g1 h) (g2 w) -> b (g1 g2) (c h w)", g1=self.grid, g2=self.grid)

    def _from_patches(self, t: Tensor) -> Tensor:
        c, h, w = self.in_shape
        g = self.grid
        return rearrange(
            t, "b (g1 g2) (c h w) -> b c (g1 h) (g2 w)", g1=g, g2=g, c=c, h=h // g, w=w // g
        )

    def attention(self, x: Tensor) -> list[Tensor]:
        """The matrices ``A_h`` (B, N, N) of every head; they depend on ``M x`` only."""
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x_masked = torch.where(self.mask, x, zero)
        q, k = self._to_patches(self.q(x_masked)), self._to_patches(self.k(x_masked))
        d = torch.exp(self.log_d.clamp(-_LOG_D_BOUND, _LOG_D_BOUND))
        eye = torch.eye(self.patches, dtype=x.dtype, device=x.device)
        if self.residual:
            gain, diag = RESIDUAL_BOUND * torch.tanh(self.theta), torch.ones_like(self.theta)
        else:
            gain, diag = torch.ones_like(self.theta), 1.0 + DIAG_FLOOR + F.softplus(self.theta)
        mats = []
        for head, (lo, hi) in enumerate(self.group_bounds):
            logits = q[..., lo:hi] @ k[..., lo:hi].transpose(1, 2) / d[head]
            logits = torch.nan_to_num(logits, nan=0.0).clamp(-_LOGIT_BOUND, _LOGIT_BOUND)
            mats.append(gain[head] * torch.softmax(logits, dim=-1) + diag[head] * eye)
        return mats

    def _logdet(self, mats: list[Tensor]) -> Tensor:
        total = mats[0].new_zeros(mats[0].shape[0])
        for head, rname, _, count in self.blocks:
            rows = getattr(self, rname)
            block = mats[head][:, rows][:, :, rows]
            total = total + count * torch.linalg.slogdet(block)[1]
        return total

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mats = self.attention(x)
        xp = self._to_patches(x)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x_free = torch.where(self.free, xp, zero)
        mixed = torch.cat(
            [mats[h] @ x_free[..., lo:hi] for h, (lo, hi) in enumerate(self.group_bounds)],
            dim=-1,
        )
        y = torch.where(self.free, mixed, xp)
        return self._from_patches(y), self._logdet(mats)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        mats = self.attention(y)  # M y == M x: the masked entries were copied
        yp = self._to_patches(y)
        xp = yp.clone()
        for head, rname, cname, _ in self.blocks:
            rows, cols = getattr(self, rname), getattr(self, cname)
            block = mats[head][:, rows][:, :, rows]
            rhs = yp[:, rows.unsqueeze(1), cols.unsqueeze(0)]
            xp[:, rows.unsqueeze(1), cols.unsqueeze(0)] = torch.linalg.solve(block, rhs)
        return self._from_patches(xp), -self._logdet(mats)


# ---- declarations ---------------------------------------------------------------------------
class IMapArgs(Args):
    act: Literal["sigmoid"] = Field("sigmoid", description="the attention activation")
    mask: Literal["checkerboard", "complement"] = Field(
        "checkerboard", description="the 3-D checkerboard M[c,h,w] = (c+h+w) % 2, or 1 - M")
    residual: bool = Field(False, description="bounded identity-plus-branch form for deep "
                           "stacks: scales exp(0.5 tanh(.)) instead of sigmoid(.)")


@kind
class IMapKind(LayerKind):
    key = "attention.imap"
    Args = IMapArgs
    doc = "invertible map-based attention (iMap)"
    module = IMap
    stack_remedy = "residual"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        return c * c + c + 1 + c  # 1x1 conv weight and bias, offset, per-channel scale s

    @classmethod
    def issues(cls, shape, args):
        if shape[0] < 2:
            return [Issue("E202", f"attention imap needs at least 2 channels, but gets "
                          f"{fmt_shape(shape)}", "insert it after a squeeze")]
        return []


class ISDPArgs(Args):
    heads: int = Field(1, ge=1, le=1024, description="attention heads (disjoint column groups)")
    patches: int = Field(4, ge=1, le=4096, description="number of patches N (a square number)")
    mask: Literal["checkerboard", "complement"] = Field(
        "checkerboard", description="the 3-D checkerboard M[c,h,w] = (c+h+w) % 2, or 1 - M")
    residual: bool = Field(False, description="bounded identity-plus-branch form for deep "
                           "stacks: A = I + beta softmax(.), |beta| < 0.5")


@kind
class ISDPKind(LayerKind):
    key = "attention.isdp"
    Args = ISDPArgs
    doc = "invertible scaled dot-product attention between patches (iSDP)"
    module = ISDP
    stack_remedy = "residual"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        return 2 * (c * c + c) + 2 * arg(args, "heads")  # Q, K 1x1 convs; log d, theta per head

    @classmethod
    def issues(cls, shape, args):
        c, h, w = shape
        g = math.isqrt(args.patches)
        if g * g != args.patches:
            return [Issue("E203", f"iSDP patches={args.patches} is not a square number, so the "
                          "patches cannot tile the image", "use patches=1, 4, 16, ...", "patches")]
        if h % g or w % g:
            return [Issue("E203", f"iSDP patches={args.patches} cut the image into a {g}x{g} "
                          f"grid, but {h}x{w} is not divisible by {g}",
                          f"use a patch count whose square root divides {h} and {w}", "patches")]
        p = c * (h // g) * (w // g)
        if args.heads > p // 2:
            return [Issue("E204", f"iSDP heads={args.heads} is too many: a patch holds {p} "
                          f"features and each head needs at least 2",
                          f"use heads <= {max(1, p // 2)}", "heads")]
        return []
