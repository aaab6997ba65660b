"""The standard logistic top prior (NICE), with an optional learned diagonal scaling."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowspec.kinds import prior

from .prior import GaussianPrior, GaussianPriorArgs, GaussianPriorKind

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)


class LogisticPrior(GaussianPrior):
    r"""Standardise the final latent, ``eps = (z - mu) e^{-l}``, and score ``eps`` under the
    standard logistic density (NICE, Dinh et al. 2015, eq. 5 and section 5.1):

        ``log p(eps) = sum -softplus(eps) - softplus(-eps)``.

    ``learned``: ``mu``, ``l`` per entry (or from the condition, ``on=COND``) exactly as for
    ``prior gaussian learned``; the per-entry ``e^{l}`` is NICE's final diagonal scaling layer
    ``S`` (``logdet = -sum l``). Samples are ``eps = T log(u / (1 - u))``, ``u ~ U(0, 1)``.
    """

    def log_density(self, eps: Tensor) -> Tensor:
        """``(B,)``: the standard logistic log-density of every entry, summed."""
        flat = eps.reshape(eps.shape[0], -1)
        return -(F.softplus(flat) + F.softplus(-flat)).sum(dim=1)

    def sample_noise(self, shape: tuple[int, ...], *, device: Any = None, dtype: Any = None,
                     generator: Any = None) -> Tensor:
        """Standard logistic noise: the logit of a uniform draw, kept off 0 and 1."""
        u = torch.rand(shape, device=device, dtype=dtype, generator=generator)
        info = torch.finfo(u.dtype)
        u = u.clamp(info.tiny, 1.0 - info.eps)
        return torch.log(u) - torch.log1p(-u)


class LogisticPriorArgs(GaussianPriorArgs):
    pass


@prior
class LogisticPriorKind(GaussianPriorKind):
    key = "logistic"
    Args = LogisticPriorArgs
    doc = ("standard logistic (NICE); `learned`: a per-entry scale and shift, NICE's "
           "diagonal scaling (or from the condition with on=COND)")
    module = LogisticPrior
