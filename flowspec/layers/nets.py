"""Sub-networks shared by the coupling, injector, split and prior layers.

These networks only ever compute the *parameters* of an elementwise bijection (shifts,
scales, mixture parameters) from the part of the input that the bijection leaves alone, so
they need not be invertible and may be arbitrary. They must however treat every sample of
a batch independently (no batch normalisation): a layer's Jacobian is per sample.
"""

from __future__ import annotations

from torch import Tensor, nn


class ZeroConv2d(nn.Conv2d):
    """A 3x3 (or 1x1) convolution whose weight and bias start at zero.

    As the last layer of a parameter network it makes the enclosing bijection start at its
    neutral point (zero shift, fixed scale), which is what keeps deep flows trainable.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


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


def glow_net(in_channels: int, out_channels: int, hidden: int) -> nn.Sequential:
    """Glow's coupling network: conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, hidden, 1),
        nn.ReLU(),
        ZeroConv2d(hidden, out_channels),
    )


def resnet_net(in_channels: int, out_channels: int, hidden: int, blocks: int = 2) -> nn.Sequential:
    """conv3x3 stem, ``blocks`` residual blocks, ReLU, zero-initialised conv3x3 head."""
    return nn.Sequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1),
        *(ResidualBlock(hidden) for _ in range(blocks)),
        nn.ReLU(),
        ZeroConv2d(hidden, out_channels),
    )


def make_net(kind: str, in_channels: int, out_channels: int, hidden: int) -> nn.Sequential:
    """Build the parameter network named by a layer's ``net`` argument (``glow``/``resnet``)."""
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    if kind == "glow":
        return glow_net(in_channels, out_channels, hidden)
    if kind == "resnet":
        return resnet_net(in_channels, out_channels, hidden)
    raise ValueError(f"unknown net {kind!r}; expected 'glow' or 'resnet'")
