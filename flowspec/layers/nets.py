"""Coupling networks (``net=glow|resnet``): a registry that plugins extend with @flowspec.net.

These networks only ever compute the *parameters* of an elementwise bijection (shifts,
scales, mixture parameters) from the part of the input that the bijection leaves alone, so
they need not be invertible and may be arbitrary. They must however treat every sample of
a batch independently (no batch normalisation): a layer's Jacobian is per sample. Their
last convolution starts at zero, so the enclosing bijection starts at its neutral point.
"""

from __future__ import annotations

from collections.abc import Mapping

from flowspec.kinds import ArgsLike, NetKind, arg, conv_params, net


@net
class GlowNet(NetKind):
    key = "glow"
    doc = "Glow's network: conv3x3, ReLU, conv1x1, ReLU, zero-initialised conv3x3"
    module = "flowspec.nn.nets:glow_net"

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int) -> int:
        return (
            conv_params(cin, hidden, 3)
            + conv_params(hidden, hidden, 1)
            + conv_params(hidden, cout, 3)
        )


@net
class ResNet(NetKind):
    key = "resnet"
    doc = "conv3x3 stem, 2 pre-activation residual blocks, zero-initialised conv3x3 head"
    module = "flowspec.nn.nets:resnet_net"

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int) -> int:
        return (
            conv_params(cin, hidden, 3)
            + 4 * conv_params(hidden, hidden, 3)
            + conv_params(hidden, cout, 3)
        )


def _net(args: ArgsLike) -> tuple[str, int, dict]:
    """A layer's ``net``, ``hidden`` and ``net_args`` (``net=NAME(k=v)``; absent in an IR
    from before nets took arguments)."""
    key, hidden = arg(args, "net") if _has(args, "net") else "glow", int(arg(args, "hidden"))
    extra = arg(args, "net_args") if _has(args, "net_args") else None
    return key, hidden, dict(extra or {})


def _has(args: ArgsLike, name: str) -> bool:
    return name in args if isinstance(args, Mapping) else hasattr(args, name)


def net_params(args: ArgsLike, in_channels: int, out_channels: int) -> int:
    """Parameters of the network a layer's arguments name, without torch when the net
    declares its count."""
    from flowspec.kinds import NETS

    key, hidden, extra = _net(args)
    return NETS[key].params(in_channels, out_channels, hidden, **extra)
