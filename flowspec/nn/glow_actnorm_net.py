"""``net=glow_actnorm``: Glow's coupling network as Glow's and SRFlow's code build it.

The ``glow`` net is the usual simplification (convolutions with biases). The official code
(openai/glow ``f()``; andreas128/SRFlow ``CondAffineSeparatedAndCond.F``) instead gives the
two hidden convolutions no bias and follows each by an actnorm with data-dependent
initialisation, and scales the zero-initialised output convolution by ``exp(3 logs)`` with a
learned per-channel ``logs`` (``Conv2dZeros``, starting at 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers.glow_actnorm_net import LOGSCALE_FACTOR

from .actnorm import ActNorm


class GlowActNormNet(nn.Module):
    """conv3x3 (no bias) + actnorm, ReLU, conv1x1 (no bias) + actnorm, ReLU, zero conv3x3
    times ``exp(3 logs)``.

    The actnorms are :class:`~flowspec.layers.actnorm.ActNorm` modules: initialised once, on
    the first training batch (averaged over ranks under ``torch.distributed``), never again
    after a checkpoint load. They act on each sample alone afterwards, so the network treats
    the samples of a batch independently, as a coupling network must. The hidden convolutions
    start as SRFlow's (normal, std 0.05).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False)
        self.norm1 = ActNorm((hidden, 1, 1), {})
        self.conv2 = nn.Conv2d(hidden, hidden, 1, bias=False)
        self.norm2 = ActNorm((hidden, 1, 1), {})
        self.out = nn.Conv2d(hidden, out_channels, 3, padding=1)
        self.logs = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        for conv in (self.conv1, self.conv2):
            nn.init.normal_(conv.weight, 0.0, 0.05)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def _init_seen(self) -> bool:
        """Whether both actnorms have initialised (what FlowModel waits for before running
        a compiled graph)."""
        return self.norm1._init_seen and self.norm2._init_seen

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.norm1(self.conv1(x))[0])
        h = F.relu(self.norm2(self.conv2(h))[0])
        return self.out(h) * torch.exp(LOGSCALE_FACTOR * self.logs)
