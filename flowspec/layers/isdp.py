r"""Invertible scaled dot-product attention (iSDP) between patches, exact log-det.

The masks and the three forms are described in :mod:`._attention`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Literal

from einops import rearrange
from pydantic import Field, field_validator

from flowspec.kinds import Args, Issue, LayerKind, arg, kind

from ._attention import (
    BETA_BOUND,
    LEGACY_DEFAULTS,
    RESIDUAL_BOUND,
    Form,
    check_residual,
    form_field,
    form_of,
    mask_arg,
    module_form,
    residual_field,
    shown_args,
)
from .base import FlowLayer, Shape, checkerboard_3d

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)

#: Diagonal floor of the paper form: ``A = softmax(.) + (1 + DIAG_FLOOR + softplus(theta)) I``.
DIAG_FLOOR = 1e-2
#: Bounds on iSDP's ``log d`` and attention logits: keep softmax finite for any parameters.
_LOG_D_BOUND = 30.0
_LOGIT_BOUND = 1e4


class ISDP(FlowLayer):
    r"""Invertible scaled dot-product attention over a grid of patches.

    ``x`` (B, C, H, W) is cut into ``N = patches`` patches on a ``sqrt(N) x sqrt(N)`` grid and
    each patch flattened to ``P = C (H/sqrt N) (W/sqrt N)`` features (order ``c, h, w``):
    ``X`` is (B, N, P); the mask ``M`` seen the same way is an ``N x P`` binary matrix (its
    rows differ between patches when a patch side is odd). ``Q``, ``K`` come from two 1x1
    convolutions of ``M x``, rearranged alike. The ``P`` columns are split into ``heads``
    contiguous groups; head ``h`` has a scale ``d_h = exp(log d_h)`` (init ``sqrt`` of its
    group size), and ``S_h = softmax(Q_h K_h^T / d_h)`` (N x N, row-stochastic). The layer
    mixes the free entries of each column ``j`` of head ``h`` with a matrix ``A_h`` built
    from ``S_h``: for free row set ``U_j``, ``y[U_j, j] = A_h[U_j, U_j] x[U_j, j]``, and
    masked entries are copied.

    Exactness: ``A_h`` depends only on the masked entries, which pass unchanged, so the
    Jacobian is block triangular with an identity block and one block ``A_h[U_j, U_j]`` per
    column: ``logdet = sum_j log det A_h[U_j, U_j]``. Columns with the same ``U_j`` share the
    block, so this is one determinant per (head, pattern) times the pattern's column count;
    with the 3-D checkerboard there are at most two patterns per head.

    The forms (``theta_h``, ``gamma_h`` learnable, ``S = S_h``):

    * ``identity`` (default): ``A = g (I + beta S)``, ``g = exp(gamma)``,
      ``beta = b tanh(theta)``, ``b = BETA_BOUND = 0.9``; ``theta = gamma = 0`` at the start,
      where the layer is exactly the identity (``theta`` and ``gamma`` get a gradient at once,
      ``Q`` and ``K`` as soon as ``beta != 0``). ``log det A[U, U] = |U| gamma +
      log det (I + beta S[U, U])``.
      *Invertible for every parameter value*: ``S[U, U]`` is non-negative with row sums at
      most 1 (a principal submatrix of a row-stochastic matrix), so its infinity norm and
      hence its spectral radius are at most 1, and every eigenvalue of ``I + beta S[U, U]``
      lies in the disk ``|lambda - 1| <= |beta| < b < 1``: it has positive real part, so the
      block is non-singular and, complex eigenvalues coming in conjugate pairs, its
      determinant is positive. The Neumann series gives ``||(I + beta S[U, U])^{-1}||_inf
      <= 1 / (1 - b) = 10``: one layer's inverse amplifies errors by at most 10 relative to
      the gain ``g`` (the paper form: 100).
    * ``paper``: ``A = S + (1 + delta + softplus(theta)) I``, ``delta = DIAG_FLOOR``. Every
      principal submatrix is strictly diagonally dominant with positive diagonal and margin
      at least ``delta`` (the floor keeps the margin when ``softplus`` underflows and the
      softmax saturates to a permutation), so by Gershgorin ``det A[U, U] > 0`` and
      ``||A[U, U]^{-1}||_inf <= 1 / delta``. At ``theta = 0`` it scales the free entries by
      about 1.7 plus a softmax mixing, far from the identity.
    * ``residual``: ``A = I + beta S``, ``beta = b tanh(theta)``, ``b = RESIDUAL_BOUND = 0.5``,
      no gain: the identity form's argument with ``b = 0.5`` gives ``||A[U, U]||_inf <= 1.5``
      and ``||A[U, U]^{-1}||_inf <= 2``, for deep stacks.

    ``log d`` is clamped to ``[-30, 30]`` and non-finite logits are replaced (NaN by 0,
    infinities by ``+-1e4``), so the softmax is finite whatever ``Q``, ``K`` and ``d`` are.

    Kernel (the heads are batched, not looped): ``Q`` and ``K`` are one batched matrix
    product with the two weights stacked; the logits of all heads are the elementwise
    products of every pair of patches, ``Q[n, j] K[m, j]`` (B, N, N, P), times one
    ``P x heads`` matrix ``w[j, h] = [j in head h] / d_h``, then one softmax over
    (B, heads, N, N); the mixing is
    one batched product of every head's matrix with the free entries and one gather of each
    column's head. Each (head, pattern) block is embedded in an ``N x N`` matrix that is the
    identity outside ``U x U`` (same determinant, same solution on ``U``), so all blocks go
    through one ``slogdet`` (forward) or one LU factorisation (inverse: its diagonal gives
    the log-det, its solve the inverse). When every patch has the same mask (even patch
    sides, the usual case) each head has one block covering every row, and the blocks are
    the heads' matrices themselves.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        self.form = module_form(args)
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
        mask = checkerboard_3d(self.in_shape, mask_arg(args))
        self.register_buffer("mask", mask.unsqueeze(0), persistent=False)
        free = ~self._to_patches(mask.unsqueeze(0))[0]  # (N, P)
        self.register_buffer("free", free.unsqueeze(0), persistent=False)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        groups = torch.tensor_split(torch.arange(features), heads)
        self.group_bounds = [(int(g[0]), int(g[-1]) + 1) for g in groups]
        self.log_d = nn.Parameter(torch.tensor([0.5 * math.log(len(g)) for g in groups]))
        self.theta = nn.Parameter(torch.zeros(heads))  # identity / residual: beta = 0
        if self.form == "identity":
            self.gamma = nn.Parameter(torch.zeros(heads))  # g = 1
        col_head = torch.cat([torch.full((len(g),), i) for i, g in enumerate(groups)])
        self.register_buffer("head_cols", F.one_hot(col_head, heads).T.float(),
                             persistent=False)  # (heads, P): column j belongs to head h
        self._init_blocks(free, col_head)

    def _init_blocks(self, free: Tensor, col_head: Tensor) -> None:
        """One block per (head, free-row pattern): rows ``U``, columns, count."""
        n, p = free.shape
        self.blocks: list[tuple[int, str, str, int]] = []
        col_block = torch.zeros(p, dtype=torch.long)
        masks = []
        for head, (lo, hi) in enumerate(self.group_bounds):
            patterns, which = torch.unique(free[:, lo:hi].T, dim=0, return_inverse=True)
            for i, pattern in enumerate(patterns):
                rows = torch.nonzero(pattern).flatten()
                cols = lo + torch.nonzero(which == i).flatten()
                if rows.numel() == 0:
                    continue
                col_block[cols] = len(self.blocks)
                masks.append(pattern.unsqueeze(1) & pattern.unsqueeze(0))
                rname, cname = f"block{len(self.blocks)}_rows", f"block{len(self.blocks)}_cols"
                self.register_buffer(rname, rows, persistent=False)
                self.register_buffer(cname, cols, persistent=False)
                self.blocks.append((head, rname, cname, int(cols.numel())))
        heads = [b[0] for b in self.blocks]
        counts = torch.tensor([float(b[3]) for b in self.blocks])
        sizes = torch.tensor([float(getattr(self, b[1]).numel()) for b in self.blocks])
        # every head one block over every row: the blocks are the heads' matrices
        self.whole = heads == list(range(self.heads)) and \
            all(getattr(self, b[1]).numel() == n for b in self.blocks)
        self.register_buffer("block_head", torch.tensor(heads, dtype=torch.long),
                             persistent=False)
        self.register_buffer("block_count", counts, persistent=False)
        self.register_buffer("block_rows", torch.stack(masks) if masks else
                             torch.zeros(0, n, n, dtype=torch.bool), persistent=False)
        # free entries per head (the gain's log-det weight) and each column's block
        self.register_buffer("head_free", torch.zeros(self.heads).index_add_(
            0, torch.tensor(heads, dtype=torch.long), counts * sizes), persistent=False)
        self.register_buffer("col_head", col_head.view(1, 1, 1, p), persistent=False)
        self.register_buffer("col_block", col_block.view(1, 1, 1, p), persistent=False)

    def _to_patches(self, t: Tensor) -> Tensor:
        return rearrange(t, "b c (g1 h) (g2 w) -> b (g1 g2) (c h w)", g1=self.grid, g2=self.grid)

    def _from_patches(self, t: Tensor) -> Tensor:
        c, h, w = self.in_shape
        g = self.grid
        return rearrange(
            t, "b (g1 g2) (c h w) -> b c (g1 h) (g2 w)", g1=g, g2=g, c=c, h=h // g, w=w // g
        )

    def attention(self, x: Tensor) -> Tensor:
        """Every head's mixing matrix without the gain, (B, heads, N, N): ``I + beta S``
        (identity, residual) or ``S + diag I`` (paper). It depends on ``M x`` only."""
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x_masked = torch.where(self.mask, x, zero)
        b, c, h, w = x.shape
        weight = torch.cat([self.q.weight, self.k.weight]).view(2 * c, c)
        bias = torch.cat([self.q.bias, self.k.bias]).view(1, 2 * c, 1)
        qk = torch.baddbmm(bias, weight.expand(b, -1, -1), x_masked.reshape(b, c, h * w))
        g = self.grid
        qk = rearrange(qk.view(b, 2 * c, h, w), "b (two c) (g1 h) (g2 w) -> b two (g1 g2) (c h w)",
                       two=2, g1=g, g2=g)
        q, k = qk[:, 0], qk[:, 1]
        # logits[b, h, n, m] = sum_j q[b, n, j] k[b, m, j] [j in head h] / d_h: the products of
        # every pair of patches, then one matrix product sums each head's columns
        d = torch.exp(self.log_d.clamp(-_LOG_D_BOUND, _LOG_D_BOUND))
        pairs = (q.unsqueeze(2) * k.unsqueeze(1)).view(b, -1, self.features)
        logits = (pairs @ (self.head_cols.T.to(q.dtype) / d)).view(b, self.patches,
                                                                     self.patches, -1)
        logits = torch.nan_to_num(logits.permute(0, 3, 1, 2), nan=0.0, posinf=_LOGIT_BOUND,
                                  neginf=-_LOGIT_BOUND)
        soft = torch.softmax(logits, dim=-1)
        eye = torch.eye(self.patches, dtype=x.dtype, device=x.device)
        if self.form == "paper":
            diag = 1.0 + DIAG_FLOOR + F.softplus(self.theta)
            return soft + diag.view(-1, 1, 1) * eye
        bound = BETA_BOUND if self.form == "identity" else RESIDUAL_BOUND
        return (bound * torch.tanh(self.theta)).view(-1, 1, 1) * soft + eye

    def _blocks(self, a: Tensor) -> Tensor:
        """(B, blocks, N, N): block ``(h, U)`` is ``A_h`` on ``U x U`` and ``I`` elsewhere."""
        if self.whole:
            return a
        eye = torch.eye(self.patches, dtype=a.dtype, device=a.device)
        return torch.where(self.block_rows, a[:, self.block_head], eye)

    def _gain_logdet(self, logdet: Tensor) -> Tensor:
        if self.form != "identity":
            return logdet
        return logdet + torch.dot(self.head_free.to(self.gamma.dtype), self.gamma)

    def _select(self, z: Tensor, index: Tensor) -> Tensor:
        """Column ``j`` of ``z[:, index[j]]``: (B, K, N, P) -> (B, N, P)."""
        b, _, n, p = z.shape
        return torch.gather(z, 1, index.expand(b, 1, n, p)).squeeze(1)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = self.attention(x)
        logdet = self.block_count.to(a.dtype) @ torch.linalg.slogdet(self._blocks(a))[1].T
        mix = a * torch.exp(self.gamma).view(-1, 1, 1) if self.form == "identity" else a
        xp = self._to_patches(x)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        x_free = torch.where(self.free, xp, zero)
        mixed = self._select(mix @ x_free.unsqueeze(1), self.col_head)
        y = torch.where(self.free, mixed, xp)
        return self._from_patches(y), self._gain_logdet(logdet)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        a = self.attention(y)  # M y == M x: the masked entries were copied
        lu, pivots = torch.linalg.lu_factor(self._blocks(a))
        logdet = self.block_count.to(a.dtype) @ \
            lu.diagonal(dim1=-2, dim2=-1).abs().log().sum(-1).T  # every det is > 0
        eye = torch.eye(self.patches, dtype=a.dtype, device=a.device)
        inv = torch.linalg.lu_solve(lu, pivots, eye.expand_as(lu))
        if self.form == "identity":
            inv = inv * torch.exp(-self.gamma)[self.block_head].view(-1, 1, 1)
        yp = self._to_patches(y)
        zero = torch.zeros((), dtype=y.dtype, device=y.device)
        y_free = torch.where(self.free, yp, zero)
        x_free = self._select(inv @ y_free.unsqueeze(1), self.col_block)
        x = torch.where(self.free, x_free, yp)
        return self._from_patches(x), -self._gain_logdet(logdet)


# ---- declaration ----------------------------------------------------------------------------
class ISDPArgs(Args):
    heads: int = Field(1, ge=1, le=1024, description="attention heads (disjoint column groups)")
    patches: int = Field(4, ge=1, le=4096, description="number of patches N (a square number)")
    mask: Literal["checkerboard", "complement"] = Field(
        "checkerboard", description="the 3-D checkerboard M[c,h,w] = (c+h+w) % 2, or 1 - M")
    form: Form | None = form_field()
    residual: bool | None = residual_field()

    _residual = field_validator("residual")(check_residual)


@kind
class ISDPKind(LayerKind):
    key = "attention.isdp"
    Args = ISDPArgs
    doc = "invertible scaled dot-product attention between patches (iSDP)"
    module = ISDP
    stack_remedy = "residual"
    stack_remedy_hint = "form=residual"
    legacy_defaults = LEGACY_DEFAULTS  # absent from an old IR: see _attention.py

    @classmethod
    def shown_args(cls, args):
        return shown_args(args)

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        per_head = 3 if form_of(args) == "identity" else 2  # log d, theta (and gamma)
        return 2 * (c * c + c) + per_head * arg(args, "heads")  # Q, K 1x1 convs

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


__all__ = ["DIAG_FLOOR", "ISDP", "ISDPArgs", "ISDPKind"]
