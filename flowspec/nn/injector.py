"""SRFlow's conditional affine injector."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .base import FlowLayer, Shape, make_scale, sum_except_batch
from .nets import make_net


class AffineInjector(FlowLayer):
    r"""``y = x * s(cond) + t(cond)`` with ``s = sigmoid(h + 2) + eps``.

    Scale and shift depend on the condition only, so the Jacobian w.r.t. ``x`` is diagonal:
    ``logdet = sum log s`` over all ``C H W`` entries; ``s > 0`` makes it invertible,
    ``x = (y - t) / s``. The network is Glow's (conv3x3-ReLU-conv1x1-ReLU-zero conv3x3, of
    width ``hidden``), so the layer starts as a fixed rescaling by ``sigmoid(2)``.
    ``scale=bounded``: ``s = exp(b tanh(h))``, ``log s = b tanh(h)`` exactly (``b =
    BOUNDED_SCALE_B``), starting as the identity; the inverse divides by at most ``e^b``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("injector is always conditional: it needs on=COND")
        c = self.in_shape[0]
        self.net = make_net(args, self.cond_channels, 2 * c)
        self.scale_fn = make_scale(args.get("scale", "sigmoid"))

    def _shift_scale(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        h = self.run_net(self.net, self._cond(cond, x).to(x.dtype))
        c = self.in_shape[0]
        scale, log_scale = self.scale_fn(h[:, c:])
        return h[:, :c], scale, log_scale

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, scale, log_scale = self._shift_scale(x, cond)
        return x * scale + shift, sum_except_batch(log_scale)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, scale, log_scale = self._shift_scale(y, cond)
        return (y - shift) / scale, -sum_except_batch(log_scale)
