"""Augmentation of the training batches (``augment hflip``, ``--augment hflip``).

Which images of step ``s``'s batch are mirrored is a pure function of ``(seed, s)``: bits
drawn from a generator of their own (:func:`runtime.streams.stream_seed`, tag ``hflip``), one
per position of the global batch, so a resumed run and every DDP rank (each taking its
shard of the same bits) see the same flips, and the global RNG is never touched. The flip
is applied to the stored uint8 images before anything is derived from them: the
low-resolution input of super-resolution is made from the flipped image, and translation's
label maps are flipped with their images. Class labels stay as they are. Validation,
evaluation and sampling never see a flip.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .streams import generator, stream_seed

__all__ = ["AUGMENTERS", "apply", "flips", "hflip"]


def flips(seed: int, step: int, batch: int) -> Tensor:
    """Which of the ``batch`` images of step ``step`` are mirrored (bool, each with
    probability 1/2)."""
    g = generator(stream_seed(seed, "hflip", step))
    return torch.randint(0, 2, (batch,), generator=g).bool()


def hflip(images: Tensor, maps: Tensor | None, which: Tensor) -> tuple[Tensor, Tensor | None]:
    """``images`` (N, C, H, W) and per-pixel ``maps`` (N, H, W) mirrored left-right where
    ``which`` is true; per-image labels (N,) unchanged."""
    images = torch.where(which[:, None, None, None], images.flip(-1), images)
    if maps is not None and maps.dim() == 3:
        maps = torch.where(which[:, None, None], maps.flip(-1), maps)
    return images, maps


#: the implementation of each name of :data:`flowspec.recipe.AUGMENTATIONS`
AUGMENTERS = {"hflip": hflip}


def apply(
    name: str | None,
    seed: int,
    step: int,
    batch: int,
    shard: slice,
    images: Tensor,
    maps: Tensor | None,
) -> tuple[Tensor, Tensor | None]:
    """A training batch's (this rank's ``shard`` of the global ``batch``) images and maps
    under augmentation ``name`` (``none``: as they are)."""
    if name in (None, "none"):
        return images, maps
    return AUGMENTERS[name](images, maps, flips(seed, step, batch)[shard])
