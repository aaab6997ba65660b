r"""Invertible scaled dot-product attention (iSDP) between patches, exact log-det.

The masks and the three forms are described in :mod:`flowspec.layers._attention`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from flowspec.layers._attention import mask_arg, module_form

from ._isdp_kernel import (
    ISDPForward,
    _blocks_t,
    _transposed_mixing,
    coefficients,
    inv_scale,
    inverse,
)
from .base import FlowLayer, Shape, checkerboard_3d


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

    Kernel (:mod:`._isdp_kernel`): ``Q`` and ``K`` are one batched matrix product (the two
    convolutions stacked, the bias as a weight on a row of ones), each gathered by one
    ``index_select`` (indices precomputed) into a ``(heads, N, width)`` layout, each head's
    columns side by side (zero-padded when the heads' widths differ), so all heads' logits
    are one batched product and one softmax. The free entries are gathered alike
    into a ``(blocks, N, width)`` layout (columns without free rows, half of them when the
    patch sides are even, are left out), mixed by one batched product with the blocks and
    scattered back by one more ``index_select``. Each block is embedded in an ``N x N``
    matrix that is the identity outside ``U x U`` (same determinant, same solution on
    ``U``); when every patch has the same mask each head has one block covering every row,
    and the blocks are the heads' matrices themselves. The gain is folded into the blocks
    on ``U x U`` (``det`` then includes ``g^|U|``), one LU factorisation per call gives the
    log-det, the backward's ``B^{-T}`` and the inverse's solve. The forward is one autograd
    node whose backward is written out and reuses the forward's tensors.

    Parameters: two tensors, because an optimiser's cost per tensor is, at these sizes, that
    of its arithmetic: ``qk`` (2, C, C + 1), the 1x1 convolutions of ``Q`` and ``K`` with
    the bias as the last column, and ``coef`` (rows, heads), the rows ``log d``, ``theta``
    and, in the identity form, ``gamma`` (readable as ``layer.log_d`` etc.).
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
        # the masks as 0 / 1 floats: a product or lerp with them is several times cheaper
        # on CPU than ``where`` with a bool mask, and exact for finite values
        self.register_buffer("mask_f", mask.unsqueeze(0).float(), persistent=False)
        self.register_buffer("ones_row", torch.ones(1, 1, h * w), persistent=False)
        free = ~self._to_patches(mask.unsqueeze(0))[0]  # (N, P)
        self.register_buffer("free", free.unsqueeze(0), persistent=False)
        # Q's and K's 1x1 convolutions, bias as the last column, initialised as nn.Conv2d's
        # (uniform in +-1/sqrt(C), weight then bias, Q then K)
        bound = 1.0 / math.sqrt(c)
        qk = torch.empty(2, c, c + 1)
        for i in range(2):
            qk[i, :, :c] = torch.empty(c, c).uniform_(-bound, bound)
            qk[i, :, c] = torch.empty(c).uniform_(-bound, bound)
        self.qk = nn.Parameter(qk)
        groups = torch.tensor_split(torch.arange(features), heads)
        self.group_bounds = [(int(g[0]), int(g[-1]) + 1) for g in groups]
        # per head: log d (init sqrt of the group size), theta (identity / residual: beta = 0)
        # and, in the identity form, gamma (g = 1)
        coef = torch.zeros(3 if self.form == "identity" else 2, heads)
        coef[0] = torch.tensor([0.5 * math.log(len(g)) for g in groups])
        self.coef = nn.Parameter(coef)
        self._init_blocks(free)

    def _init_blocks(self, free: Tensor) -> None:
        """The blocks and the two gather layouts of the kernel (see the class docstring).

        A block is the columns of one head with one non-empty free-row pattern ``U``:
        ``blocks`` lists them as ``(head, rows buffer, columns buffer, count)``. Columns
        without free rows take part in the logits only.
        """
        n = free.shape[0]
        c, h, w = self.in_shape
        entry = self._to_patches(torch.arange(c * h * w).view(1, c, h, w))[0]  # (N, P)
        self.blocks: list[tuple[int, str, str, int]] = []
        patterns = []
        for head, (lo, hi) in enumerate(self.group_bounds):
            unique, which = torch.unique(free[:, lo:hi].T, dim=0, return_inverse=True)
            for i, pattern in enumerate(unique):
                rows = torch.nonzero(pattern).flatten()
                if rows.numel() == 0:
                    continue
                cols = lo + torch.nonzero(which == i).flatten()
                rname, cname = f"block{len(self.blocks)}_rows", f"block{len(self.blocks)}_cols"
                self.register_buffer(rname, rows, persistent=False)
                self.register_buffer(cname, cols, persistent=False)
                self.blocks.append((head, rname, cname, int(cols.numel())))
                patterns.append(pattern)
        # Q and K: (heads, N, width), each head's columns; the free entries: (blocks, N,
        # width), each block's columns. Slots past a group's width are padding.
        self._layout("qk", entry, [torch.arange(lo, hi) for lo, hi in self.group_bounds])
        # Q and K come from one (B, 2C, HW) product: K's entries after Q's; their gradients
        # are scattered back together, K's slots after Q's
        self.register_buffer("k_index", self.qk_index + c * h * w, persistent=False)
        self.qk_back = torch.cat([self.qk_back, self.qk_back + math.prod(self.qk_shape)])
        self._layout("free", entry, [getattr(self, b[2]) for b in self.blocks])
        self.register_buffer(
            "free_slots",
            (torch.stack(patterns).view(-1, n, 1).float() * self.free_used),
            persistent=False,
        )
        self.register_buffer("eye", torch.eye(n), persistent=False)
        block_head = torch.tensor([b[0] for b in self.blocks], dtype=torch.long)
        counts = torch.tensor([float(b[3]) for b in self.blocks])
        sizes = torch.stack(patterns).sum(1).to(counts.dtype)
        # every head one block over every row: the blocks are the heads' matrices themselves
        self.whole = block_head.tolist() == list(range(self.heads)) and bool(sizes.eq(n).all())
        self.register_buffer("block_head", block_head, persistent=False)
        # the same map as a (blocks, heads) one-hot matrix, for deterministic mode
        self.register_buffer(
            "block_onehot", F.one_hot(block_head, self.heads).float(), persistent=False
        )
        self.register_buffer(
            "block_rows",
            torch.stack([pt.unsqueeze(1) & pt.unsqueeze(0) for pt in patterns]),
            persistent=False,
        )
        # the log-det's weights: per block, and per entry of the blocks' LU diagonals
        self.register_buffer("block_weight", counts.view(-1, 1, 1), persistent=False)
        self.register_buffer("diag_count", counts.repeat_interleave(n), persistent=False)

    def _layout(self, name: str, entry: Tensor, groups: list[Tensor]) -> None:
        """Buffers ``{name}_index`` (image entry of each slot), ``{name}_used`` (not padding)
        and ``{name}_back`` (each image entry's slot; 0 for entries in no group), and the
        shape ``(groups, N, width)``."""
        n = entry.shape[0]
        width = max(int(cols.numel()) for cols in groups)
        index = torch.zeros(len(groups), n, width, dtype=torch.long)
        used = torch.zeros(len(groups), 1, width, dtype=torch.bool)
        back = torch.zeros(entry.numel(), dtype=torch.long)
        slot = torch.arange(index.numel()).view(index.shape)
        for g, cols in enumerate(groups):
            index[g, :, : cols.numel()] = entry[:, cols]
            used[g, 0, : cols.numel()] = True
            back[entry[:, cols].flatten()] = slot[g, :, : cols.numel()].flatten()
        self.register_buffer(f"{name}_index", index.flatten(), persistent=False)
        self.register_buffer(f"{name}_used", used.float(), persistent=False)
        self.register_buffer(f"{name}_back", back, persistent=False)
        setattr(self, f"{name}_shape", (len(groups), n, width))
        setattr(self, f"{name}_padded", bool((~used).any()))

    def _to_patches(self, t: Tensor) -> Tensor:
        return rearrange(t, "b c (g1 h) (g2 w) -> b (g1 g2) (c h w)", g1=self.grid, g2=self.grid)

    # The parameters are two tensors, ``qk`` and ``coef`` (an optimiser's per-tensor cost,
    # at these sizes, is that of the arithmetic); these are views of them.
    @property
    def log_d(self) -> Tensor:
        return self.coef[0]

    @property
    def theta(self) -> Tensor:
        return self.coef[1]

    @property
    def gamma(self) -> Tensor:
        if self.form != "identity":
            raise AttributeError("only the identity form of iSDP has a gain gamma")
        return self.coef[2]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Checkpoints written before the parameters were packed hold ``q.weight``,
        ``q.bias``, ``k.weight``, ``k.bias``, ``log_d``, ``theta`` (and ``gamma``)."""
        old = [prefix + n for n in ("q.weight", "q.bias", "k.weight", "k.bias")]
        if all(n in state_dict for n in old):
            c = self.in_shape[0]
            wq, bq, wk, bk = (state_dict.pop(n) for n in old)
            state_dict[prefix + "qk"] = torch.stack(
                [torch.cat([w.reshape(c, c), b.reshape(c, 1)], 1) for w, b in ((wq, bq), (wk, bk))]
            )
            rows = ["log_d", "theta"] + (["gamma"] if self.form == "identity" else [])
            if all(prefix + r in state_dict for r in rows):
                state_dict[prefix + "coef"] = torch.stack(
                    [state_dict.pop(prefix + r) for r in rows]
                )
        super()._load_from_state_dict(state_dict, prefix, *args)

    def attention(self, x: Tensor) -> Tensor:
        """Every head's mixing matrix without the gain, (B, heads, N, N): ``I + beta S``
        (identity, residual) or ``S + diag I`` (paper). It depends on ``M x`` only; for
        inspection (no gradient)."""
        with torch.no_grad():
            alpha, delta, _ = coefficients(self, self.coef)
            t = _transposed_mixing(self, x, self.qk, inv_scale(self.coef), alpha, delta)[-1]
        return t.transpose(-1, -2)

    def _blocks(self, a: Tensor) -> Tensor:
        """(B, G, N, N): group ``(h, U)``'s block is ``a[:, h]`` on ``U x U``, ``I`` elsewhere."""
        return _blocks_t(self, a)  # U x U is symmetric: the same for A and its transpose

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return ISDPForward.apply(x, self.qk, self.coef, self)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return inverse(self, y)
