"""C-Glow's condition networks (Lu & Huang 2020, as MoeinSorkhei/glow2 builds them for
Full-Glow's Table 5), shared by ``cglow_actnorm``, ``cglow_invconv`` and ``coupling cglow``.

Every C-Glow operation reads the condition at its *full* resolution, whatever the level of
the step: the layer is told how many halvings separate it from the condition (``down``; the
level in a squeeze-by-2 flow), and receives the condition at ``2^down`` times its own
``H x W`` (:meth:`LayerKind.cond_hw`). Actnorm and the 1x1 convolution reduce the map to a
vector: three stride-2 2x2 convolutions to ``cond_hidden`` channels at 1/8 of the size (ReLU
after each), flattened, then linear layers to ``cond_units``, ``cond_units`` and the output
(ReLU, ReLU, tanh). The coupling resizes the map to the layer's size with one convolution
of kernel and stride ``2^down``.
"""

from __future__ import annotations

from pydantic import Field

from flowspec import codes
from flowspec.kinds import ArgsLike, CondArgs, Issue, LayerKind, Shape, arg, conv_params


class CGlowCondArgs(CondArgs):
    down: int = Field(
        1,
        ge=0,
        le=10,
        description="halvings between the condition and the "
        "layer: it receives the condition at 2^down times its H x W (the "
        "level, in a squeeze-by-2 flow)",
    )
    cond_hidden: int = Field(
        128,
        ge=1,
        le=8192,
        description="channels of the condition network's three stride-2 convolutions",
    )
    cond_units: int = Field(64, ge=1, le=8192, description="width of its linear layers")


def cond_size(shape: Shape, args: ArgsLike) -> tuple[int, int]:
    """H×W of the condition a C-Glow layer of input ``shape`` receives."""
    f = 2 ** int(arg(args, "down"))
    return (shape[1] * f, shape[2] * f)


def vector_net_params(
    cond_channels: int, hw: tuple[int, int], hidden: int, units: int, out: int
) -> int:
    """Parameters of C-Glow's vector condition network on a ``cond_channels x hw`` map."""
    convs = conv_params(cond_channels, hidden, 2) + 2 * conv_params(hidden, hidden, 2)
    flat = hidden * (hw[0] // 8) * (hw[1] // 8)
    return convs + flat * units + units + units * units + units + units * out + out


class CGlowKind(LayerKind):
    """What C-Glow's kinds share: a required condition at full size (``down`` halvings above
    the layer), which the vector network's three stride-2 convolutions need divisible by 8."""

    conditional = "required"

    @classmethod
    def cond_hw(cls, shape: Shape, args: ArgsLike) -> tuple[int, int]:
        return cond_size(shape, args)

    @classmethod
    def issues(cls, shape: Shape, args) -> list[Issue]:
        h, w = cond_size(shape, args)
        if h % 8 or w % 8:
            return [
                Issue(
                    codes.E_COND_SIZE,
                    f"`{cls.key}` reads its condition at 2^down x "
                    f"{shape[1]}x{shape[2]} = {h}x{w}, which its stride-2 convolutions need "
                    "divisible by 8",
                    help="use a larger input or a larger `down`",
                    arg="down",
                )
            ]
        return []
