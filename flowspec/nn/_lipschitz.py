"""Spectrally normalised linear maps and LipSwish: the pieces of a residual block's ``g``.

Spectral normalisation (Miyato et al. 2018, as Residual Flows uses it): the weight is divided
by ``max(1, sigma / coeff)`` where ``sigma`` estimates the operator 2-norm by power
iteration, so the layer's Lipschitz constant is at most ``coeff`` (up to the estimate's
accuracy). A 1x1 convolution or a fully connected layer iterates on its weight matrix; a
kxk convolution iterates on the convolution operator itself at the input's spatial size
(``conv2d`` and its adjoint ``conv_transpose2d``), whose norm is what bounds Lip(g).

The singular-vector estimates ``u``, ``v`` are buffers that belong to the current weight:
when the weight has changed in place since they were computed (an optimiser step, a
perturbation; torch's version counter says so, a host-side integer, no device sync), the
next forward first runs ``iters`` power iterations warm-started from them and stores the
result. ``sigma = u^T W v`` then uses the stored vectors. The normalised weight is thus a
function of the weight and the buffers alone, the same in training and eval mode and on
every call: replicas holding the same weights and buffers compute the same map (under DDP
every rank starts from rank 0's and applies the same all-reduced updates, which move the
version counters alike, so the refreshes agree without broadcasting the buffers), and a
module loaded from a state_dict computes what the saved one would have (its first forward
refreshes the loaded vectors).

Only a training-mode forward stores a refresh. An eval-mode one (a validation, a sample
grid, ``eval``) runs the same iterations from the stored vectors and uses their result
without keeping it, so its map is the same, and the buffers stay as training left them: the
next training forward refreshes from them as it would have without the evaluation. So the
buffers a checkpoint holds never depend on whether a validation preceded it, rank 0's
(which alone validates) stay those of every rank, and a resumed run refreshes exactly where
an uninterrupted one does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["INIT_ITERS", "LipSwish", "SpectralLinear"]

#: Power iterations run once at construction, from random vectors.
INIT_ITERS = 50


class LipSwish(nn.Module):
    r"""``x * sigmoid(beta x) / 1.1`` with ``beta = softplus(b)``, ``b`` learned (init 0.5).

    Swish's derivative is bounded by about 1.1 for every ``beta > 0``, so dividing by 1.1
    makes the activation 1-Lipschitz (Chen et al. 2019, section 4)."""

    def __init__(self) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.tensor([0.5]))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(x * F.softplus(self.beta)) / 1.1


class SpectralLinear(nn.Module):
    """A convolution (stride 1, padding k//2) or, with ``spatial=None``, a dense layer
    ``(B, in) -> (B, out)``, normalised to Lipschitz constant ``coeff``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        coeff: float,
        iters: int,
        spatial: tuple[int, int] | None,
    ) -> None:
        super().__init__()
        self.kernel, self.coeff, self.iters = kernel, coeff, iters
        self.dense = spatial is None
        shape = (cout, cin) if self.dense else (cout, cin, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(cout))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # torch's Linear/Conv2d init
        bound = 1.0 / math.sqrt(self.weight[0].numel())
        nn.init.uniform_(self.bias, -bound, bound)
        # the operator acts on vectors (matrix form) or on feature maps (a kxk convolution)
        if self.dense or kernel == 1:
            u_shape, v_shape = (cout,), (cin,)
        else:
            u_shape, v_shape = (1, cout, *spatial), (1, cin, *spatial)
        self.register_buffer("u", F.normalize(torch.randn(u_shape).flatten(), dim=0).view(u_shape))
        self.register_buffer("v", F.normalize(torch.randn(v_shape).flatten(), dim=0).view(v_shape))
        self._power(INIT_ITERS, store=True)
        self._seen = self.weight._version  # the version u and v were computed for

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: object) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)  # type: ignore[arg-type]
        # a checkpoint is written after an optimiser step, i.e. before the training forward
        # that would have refreshed u and v (an eval-mode one does not store its refresh):
        # the next forward refreshes them, as the saved module's would
        self._seen = -1

    def _op(self, w: Tensor, v: Tensor) -> Tensor:
        if v.dim() == 1:
            return w.reshape(w.shape[0], -1) @ v
        return F.conv2d(v, w, padding=self.kernel // 2)

    def _adjoint(self, w: Tensor, u: Tensor) -> Tensor:
        if u.dim() == 1:
            return w.reshape(w.shape[0], -1).t() @ u
        return F.conv_transpose2d(u, w, padding=self.kernel // 2)

    def _power(self, iters: int, store: bool) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            w, u, v = self.weight, self.u, self.v
            for _ in range(iters):
                v = _unit(self._adjoint(w, u))
                u = _unit(self._op(w, v))
            if store:
                self.u.copy_(u)
                self.v.copy_(v)
        return u, v

    def normalized_weight(self) -> Tensor:
        """The weight divided by ``max(1, sigma / coeff)``; ``sigma = u^T W v`` carries the
        gradient with respect to the weight (as torch's spectral_norm). In eval mode a
        needed refresh is computed and used, not stored (see the module docstring)."""
        if self.weight._version == self._seen:
            u, v = self.u.clone(), self.v.clone()  # a later update must not touch saved tensors
        elif self.training:
            self._power(self.iters, store=True)
            self._seen = self.weight._version
            u, v = self.u.clone(), self.v.clone()
        else:
            u, v = (t.clone() for t in self._power(self.iters, store=False))
        sigma = (u * self._op(self.weight, v)).sum()
        return self.weight / torch.clamp(sigma / self.coeff, min=1.0)

    def run(self, x: Tensor, weight: Tensor) -> Tensor:
        if self.dense:
            return F.linear(x, weight, self.bias)
        return F.conv2d(x, weight, self.bias, padding=self.kernel // 2)


def _unit(t: Tensor) -> Tensor:
    return t / t.norm().clamp_min(1e-12)
