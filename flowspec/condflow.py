"""Conditions modelled by a flow: ``condition seg: labels NxHxW encoder=flow(NAME)``.

Full-Glow (Sorkhei et al. 2021) couples two Glows: a flow on the label map, trained on its
own likelihood, whose activations condition the image flow. Here the condition's flow is an
ordinary flow of the file (checked IR inside the condition, built as a nested
:class:`~flowspec.build.FlowModel`). It runs forward on the condition; the output of its
layer at each *position* (level, step, k-th layer written in the step; see
:meth:`flowspec.ir.FlowSpec.positions`) is what the image flow's layer at the same position
receives when it is conditioned ``on=`` that condition (a split hands on the latent it
factors out: Dual-Glow's ``split prior=dual``), and its final latent is what the image
flow's prior receives. Its log-likelihood is kept for the joint loss
``log p(x | y) + log p(y)``.

What the label-map flow sees: an ``image`` condition as it is; a ``labels`` map one-hot
(``N`` channels, a 1-bit image per class) or drawn in colour (3 channels, an 8-bit image:
the Cityscapes colours of ``*_gtFine_color.png`` for 34 classes, as Full-Glow's code reads
them, a fixed palette otherwise), in the model's [-1/2, 1/2) units. Integer label ids are
put at the centre of their dequantisation bin; a caller that trains the label flow passes
the dequantised input itself (a float tensor of the flow's input shape), see
:func:`label_input`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .ir import ConditionIR, Position

if TYPE_CHECKING:
    from .build import FlowModel

#: Cityscapes' colours of label ids 0..33 (cityscapesScripts ``labels.py``), as in
#: ``*_gtFine_color.png``, which Full-Glow's code feeds to its label-map flow.
CITYSCAPES_COLOURS = [
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (0, 0, 0),
    (111, 74, 0),
    (81, 0, 81),
    (128, 64, 128),
    (244, 35, 232),
    (250, 170, 160),
    (230, 150, 140),
    (70, 70, 70),
    (102, 102, 156),
    (190, 153, 153),
    (180, 165, 180),
    (150, 100, 100),
    (150, 120, 90),
    (153, 153, 153),
    (153, 153, 153),
    (250, 170, 30),
    (220, 220, 0),
    (107, 142, 35),
    (152, 251, 152),
    (70, 130, 180),
    (220, 20, 60),
    (255, 0, 0),
    (0, 0, 142),
    (0, 0, 70),
    (0, 60, 100),
    (0, 0, 90),
    (0, 0, 110),
    (0, 80, 100),
    (0, 0, 230),
    (119, 11, 32),
]


def palette(n: int) -> Tensor:
    """uint8 ``(n, 3)`` colours of label ids: Cityscapes' for 34 classes, else distinct
    colours (class 0 black) spread over hue and brightness."""
    if n == len(CITYSCAPES_COLOURS):
        return torch.tensor(CITYSCAPES_COLOURS, dtype=torch.uint8)
    out = [(0, 0, 0)]
    for k in range(1, n):
        hue = (k * 0.618034) % 1.0  # golden-ratio hues: neighbours far apart
        value = 1.0 if k % 2 else 0.6
        rgb = [max(0.0, min(1.0, abs((hue * 6 + s) % 6 - 3) - 1)) for s in (0, 4, 2)]
        out.append(tuple(round(255 * value * c) for c in rgb))
    return torch.tensor(out, dtype=torch.uint8)


def label_bits(c: ConditionIR) -> int | None:
    """Bits per dimension of the data the condition's flow models: 1 for a one-hot map, 8
    for a colour map, None for an image condition (fed as it comes)."""
    if c.type != "labels" or c.flow is None:
        return None
    return 1 if c.flow.input[0] == c.shape[0] else 8


def label_levels(c: ConditionIR, labels: Tensor) -> Tensor:
    """Integer label ids ``(B, H, W)`` as the integer levels the condition's flow models:
    one-hot ``(B, N, H, W)`` in {0, 1}, or palette colours ``(B, 3, H, W)`` in 0..255."""
    labels = labels.long()
    if label_bits(c) == 1:
        return F.one_hot(labels, c.shape[0]).permute(0, 3, 1, 2)
    return palette(c.shape[0]).to(labels.device)[labels].permute(0, 3, 1, 2).long()


def label_input(c: ConditionIR, value: Tensor, noise: Tensor | None = None) -> Tensor:
    """The input of the condition's flow: ``value`` as is when it is a float tensor of the
    flow's input shape (already dequantised) or an image condition; otherwise integer label
    ids ``(B, H, W)`` put in the model's units, ``(level + u) / 2^bits - 1/2`` with ``u =
    noise`` (uniform in [0, 1), the flow's input shape) or the bin centre ``u = 1/2``."""
    want = tuple(c.flow.input)
    if c.type == "image" or (value.is_floating_point() and tuple(value.shape[1:]) == want):
        return value
    if value.dim() != 3 or value.is_floating_point():
        raise ValueError(
            f"condition `{c.name}` takes ({value.shape[0]}, {c.shape[1]}, "
            f"{c.shape[2]}) integer label ids, or its flow's input "
            f"({value.shape[0]}, {', '.join(map(str, want))}) as floats; got "
            f"{tuple(value.shape)} {value.dtype}"
        )
    levels = label_levels(c, value).to(noise.dtype if noise is not None else torch.float32)
    u = 0.5 if noise is None else noise.to(levels.device)
    return (levels + u) / 2 ** label_bits(c) - 0.5


def run_with_taps(model: FlowModel, x: Tensor) -> tuple[Tensor, dict[Position | None, Tensor]]:
    """Run an unconditional flow forward; return ``log p(x)`` per sample and the output of
    every layer by position (``None``: the final latent, before the prior)."""
    model._check_input(x)
    taps: dict[Position | None, Tensor] = {}
    zs, logdet = model._forward_layers(x, {}, taps)
    return model.latent_logp(zs) + logdet, taps
