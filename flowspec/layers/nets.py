"""Coupling networks (``net=glow|resnet``): a registry that plugins extend with @flowspec.net.

These networks only ever compute the *parameters* of an elementwise bijection (shifts,
scales, mixture parameters) from the part of the input that the bijection leaves alone, so
they need not be invertible and may be arbitrary. They must however treat every sample of
a batch independently (no batch normalisation): a layer's Jacobian is per sample. Their
last convolution starts at zero, so the enclosing bijection starts at its neutral point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from flowspec.kinds import ArgsLike, NetKind, arg, conv_params, net

from .base import Module

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)


def zero_conv(in_channels: int, out_channels: int, kernel_size: int = 3):
    """A convolution whose weight and bias start at zero (the last layer of a network)."""
    from torch import nn as tnn

    conv = tnn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    tnn.init.zeros_(conv.weight)
    tnn.init.zeros_(conv.bias)
    return conv


class ResidualBlock(Module):
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


def glow_net(in_channels: int, out_channels: int, hidden: int):
    """Glow's coupling network: conv3x3 - ReLU - conv1x1 - ReLU - zero-initialised conv3x3."""
    from torch import nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(in_channels, hidden, 3, padding=1),
        tnn.ReLU(),
        tnn.Conv2d(hidden, hidden, 1),
        tnn.ReLU(),
        zero_conv(hidden, out_channels),
    )


def resnet_net(in_channels: int, out_channels: int, hidden: int, blocks: int = 2):
    """conv3x3 stem, ``blocks`` residual blocks, ReLU, zero-initialised conv3x3 head."""
    from torch import nn as tnn

    return tnn.Sequential(
        tnn.Conv2d(in_channels, hidden, 3, padding=1),
        *(ResidualBlock(hidden) for _ in range(blocks)),
        tnn.ReLU(),
        zero_conv(hidden, out_channels),
    )


@net
class GlowNet(NetKind):
    key = "glow"
    doc = "Glow's network: conv3x3, ReLU, conv1x1, ReLU, zero-initialised conv3x3"
    module = glow_net

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int) -> int:
        return (conv_params(cin, hidden, 3) + conv_params(hidden, hidden, 1)
                + conv_params(hidden, cout, 3))


@net
class ResNet(NetKind):
    key = "resnet"
    doc = "conv3x3 stem, 2 pre-activation residual blocks, zero-initialised conv3x3 head"
    module = resnet_net

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int) -> int:
        return (conv_params(cin, hidden, 3) + 4 * conv_params(hidden, hidden, 3)
                + conv_params(hidden, cout, 3))


def _net(args: ArgsLike) -> tuple[str, int, dict]:
    """A layer's ``net``, ``hidden`` and ``net_args`` (``net=NAME(k=v)``; absent in an IR
    from before nets took arguments)."""
    key, hidden = arg(args, "net") if _has(args, "net") else "glow", int(arg(args, "hidden"))
    extra = arg(args, "net_args") if _has(args, "net_args") else None
    return key, hidden, dict(extra or {})


def _has(args: ArgsLike, name: str) -> bool:
    return name in args if isinstance(args, Mapping) else hasattr(args, name)


def make_net(args: ArgsLike, in_channels: int, out_channels: int):
    """Build the network a layer's arguments name (``net``, ``hidden``, ``net_args``)."""
    from flowspec.kinds import NETS

    key, hidden, extra = _net(args)
    if hidden < 1:
        raise ValueError(f"hidden must be >= 1, got {hidden}")
    if key not in NETS:
        raise ValueError(f"unknown net {key!r}; registered: {', '.join(sorted(NETS))}")
    return NETS[key].module_class()(in_channels, out_channels, hidden, **extra)


def net_params(args: ArgsLike, in_channels: int, out_channels: int) -> int:
    """Parameters of the network a layer's arguments name, without torch when the net
    declares its count."""
    from flowspec.kinds import NETS

    key, hidden, extra = _net(args)
    return NETS[key].params(in_channels, out_channels, hidden, **extra)
