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

from flowspec.kinds import conv_params

#: widths of Full-Glow's ``ConvNet`` (1x1 conv, then two unpadded 3x3 convs) and ``LinearNet``
CONV_WIDTHS = (8, 4, 2)
MLP_WIDTHS = (32, 64, 48)


def flat_size(h: int, w: int) -> int:
    """Numbers left after the two unpadded 3x3 convolutions, flattened (maps under 5x5 are
    padded to 5x5 first)."""
    return CONV_WIDTHS[-1] * (max(h, 5) - 4) * (max(w, 5) - 4)


def vector_net_params(cond_channels: int, h: int, w: int, out: int) -> int:
    """Parameters of :class:`VectorCondNet`."""
    a, b, c = CONV_WIDTHS
    convs = conv_params(cond_channels, a, 1) + conv_params(a, b, 3) + conv_params(b, c, 3)
    widths = (flat_size(h, w), *MLP_WIDTHS, out)
    return convs + sum(i * o + o for i, o in pairwise(widths))


def map_net_params(cond_channels: int, hidden: int, out: int) -> int:
    return conv_params(cond_channels, hidden, 3) + conv_params(hidden, out, 3)
