"""Coupling networks (``net=glow|resnet``): a registry that plugins extend with @flowspec.net.

These networks only ever compute the *parameters* of an elementwise bijection (shifts,
scales, mixture parameters) from the part of the input that the bijection leaves alone, so
they need not be invertible and may be arbitrary. They must however treat every sample of
a batch independently (no batch normalisation): a layer's Jacobian is per sample. Their
last convolution starts at zero, so the enclosing bijection starts at its neutral point.
"""

from __future__ import annotations

from torch import Tensor, nn

from flowspec.kinds import NETS, ArgsLike
from flowspec.layers.nets import _net


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``x + conv3x3(relu(conv3x3(relu(x))))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 3):
    """A convolution whose weight and bias start at zero (the last layer of a network)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


def glow_net(in_channels: int, out_channels: int, hidden: int):
    """Glow's coupling network: conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        zero_conv(hidden, out_channels),
    )


def resnet_net(in_channels: int, out_channels: int, hidden: int, blocks: int = 2):
    """conv3x3 stem, ``blocks`` residual blocks, ReLU, zero-initialised conv3x3 head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        *(ResidualBlock(hidden) for _ in range(blocks)),
        nn.ReLU(),
        zero_conv(hidden, out_channels),
    )


def make_net(args: ArgsLike, in_channels: int, out_channels: int):
    """Build the network a layer's arguments name (``net``, ``hidden``, ``net_args``)."""
    key, hidden, extra = _net(args)
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    if key not in NETS:
        raise ValueError(f"unknown net {key!r}; registered: {', '.join(sorted(NETS))}")
    return NETS[key].module_class()(in_channels, out_channels, hidden, **extra)
