"""Full-Glow's condition networks (Sorkhei et al. 2021; MoeinSorkhei/glow2), shared by
``cond_actnorm``, ``cond_invconv`` and ``coupling cond_affine``.

Full-Glow conditions every operation of a step of the image flow on the activation of the
label-map flow at the same place. Actnorm and the 1x1 convolution need one vector per
sample (a scale and shift per channel; a C x C matrix), so their condition network reduces
the whole condition map to a vector: a 1x1 convolution to 8 channels and two *unpadded* 3x3
convolutions to 4 and 2 channels (each with ReLU), flattened (``2 (H-4)(W-4)`` numbers), then
linear layers to 32, 64 and 48 units (ReLU) and a last linear layer whose weight starts at
zero, so that the layer starts from its bias (the unconditional initialisation). The
flattening makes its first linear layer as wide as the map: most of Full-Glow's parameters
at 256x256 are there. Full-Glow's code fails on maps under 5x5; here they are zero-padded to
5x5 first (one number per channel left after the convolutions).
"""

from __future__ import annotations

from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers._fullglow import CONV_WIDTHS, MLP_WIDTHS, flat_size


class VectorCondNet(nn.Module):
    """Full-Glow's ``ConvNet`` + ``LinearNet``: a ``(B, Cc, H, W)`` condition map to ``(B, out)``.

    The last layer's weight starts at zero, so at initialisation the output is the bias
    (``bias`` argument, or zero) for every condition.
    """

    def __init__(self, cond_channels: int, h: int, w: int, out: int) -> None:
        super().__init__()
        a, b, c = CONV_WIDTHS
        self.conv = nn.Sequential(
            nn.Conv2d(cond_channels, a, 1),
            nn.ReLU(),
            nn.Conv2d(a, b, 3),
            nn.ReLU(),
            nn.Conv2d(b, c, 3),
            nn.ReLU(),
        )
        widths = (flat_size(h, w), *MLP_WIDTHS)
        layers: list = []
        for i, o in pairwise(widths):
            layers += [nn.Linear(i, o), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.last = nn.Linear(MLP_WIDTHS[-1], out)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)

    def forward(self, cond: Tensor) -> Tensor:
        h, w = cond.shape[2], cond.shape[3]
        if h < 5 or w < 5:
            cond = F.pad(cond, (0, max(0, 5 - w), 0, max(0, 5 - h)))
        return self.last(self.mlp(self.conv(cond).flatten(1)))


class MapCondNet(nn.Module):
    """Full-Glow's ``CouplingCondNet``: conv3x3 to ``hidden``, ReLU, conv3x3 to ``out``, ReLU
    (padded: the map keeps its size)."""

    def __init__(self, cond_channels: int, hidden: int, out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(cond_channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, out, 3, padding=1),
            nn.ReLU(),
        )

    def forward(self, cond: Tensor) -> Tensor:
        return self.net(cond)
