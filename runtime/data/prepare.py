"""Bring loaded images to a spec's input shape: channels, resize and crop, padding."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import DataError


def prepare(
    images: torch.Tensor,
    shape: Sequence[int],
    *,
    pad: int = 0,
    resize: bool = False,
    convert_channels: bool = False,
) -> torch.Tensor:
    """Bring uint8 images ``(N, C, H, W)`` to a spec's input ``shape`` = (C, H, W).

    Nothing is changed silently: a shape that does not match after the requested
    operations is a :class:`DataError`, because a model trained on quietly stretched or
    recoloured data reports bits/dim for a different data set.

    Order: channels, then resize to the inner size ``(H - 2 pad, W - 2 pad)`` (keeping the
    aspect ratio, scaling until the image covers it, then centre-cropping; bilinear with
    anti-aliasing), then zero padding by ``pad`` on every side (MNIST 28 → 32: pad=2).

    Args:
        images: uint8 ``(N, C, H, W)``, or int64 ``(N, H, W)`` label maps, which are
            resized by nearest neighbour and padded with 0 (background); only the H, W of
            ``shape`` apply to them.
        shape: the expected ``(C, H, W)``.
        pad: zero pixels added on each side.
        resize: resize and centre-crop to fit.
        convert_channels: allow 1 → 3 (replicate) and 3 → 1 (ITU-R BT.601 luminance,
            as Pillow's "L" mode).

    Returns:
        a new tensor of the same dtype with the requested shape.
    """
    c, h, w = (int(v) for v in shape)
    is_map = images.dtype == torch.int64 and images.ndim == 3
    if not is_map and (images.dtype != torch.uint8 or images.ndim != 4):
        raise DataError(
            "prepare expects uint8 images (N, C, H, W) or int64 label maps (N, H, W); found "
            f"{images.dtype} with shape {tuple(images.shape)}"
        )
    if pad < 0 or h - 2 * pad <= 0 or w - 2 * pad <= 0:
        raise DataError(f"pad={pad} does not fit the target {c}x{h}x{w}")
    x = images[:, None] if is_map else images
    if not is_map and x.shape[1] != c and convert_channels:
        x = _convert_channels(x, c)
    if resize:
        x = _resize_crop(x, h - 2 * pad, w - 2 * pad, nearest=is_map)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=0)
    found = tuple(x.shape[1:])
    if (found[1:] == (h, w)) if is_map else (found == (c, h, w)):
        out = (x[:, 0] if is_map else x).contiguous()
        # Never hand back the caller's storage: built-in tensors are shared via the cache.
        same = out.untyped_storage().data_ptr() == images.untyped_storage().data_ptr()
        return out.clone() if same else out
    raise DataError(_mismatch_message(found, (c, h, w), pad, is_map))


def _mismatch_message(
    found: tuple[int, ...], want: tuple[int, int, int], pad: int, is_map: bool
) -> str:
    what = "label maps" if is_map else "images"
    fs = "x".join(map(str, found[1:] if is_map else found))
    ws = "x".join(map(str, want[1:] if is_map else want))
    msg = f"{what} are {fs} after pad={pad} but the spec's input is {ws}"
    tips = []
    if not is_map and found[0] != want[0]:
        tips.append(
            f"pass channels={want[0]} (on the data line or in --data) to turn "
            f"{found[0]}-channel images into {want[0]} (1->3 replicates grey, 3->1 takes "
            "luminance), or change the spec's input channels"
        )
    dh, dw = want[1] - found[-2], want[2] - found[-1]
    if dh == dw and dh > 0 and dh % 2 == 0:
        tips.append(f"pad={pad + dh // 2} adds a zero border of {dh // 2 + pad} pixels")
    elif (dh, dw) != (0, 0):
        tips.append("resize=True scales and centre-crops to the input size")
    return msg + ("; " + "; ".join(tips) if tips else "")


def _convert_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    have = x.shape[1]
    if have == 1 and c == 3:
        return x.expand(-1, 3, -1, -1)
    if have == 3 and c == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(
        f"cannot convert {have}-channel images to {c} channels; only 1->3 and 3->1 exist"
    )


def _resize_crop(x: torch.Tensor, th: int, tw: int, *, nearest: bool) -> torch.Tensor:
    """Scale (keeping aspect) until the image covers th x tw, then centre-crop."""
    h, w = x.shape[-2:]
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    if (nh, nw) != (h, w):
        chunks = []
        for part in x.split(2048):  # bounded float copies for 60k-image sets
            f = part.float()
            if nearest:
                f = F.interpolate(f, size=(nh, nw), mode="nearest-exact")
            else:
                f = F.interpolate(
                    f, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
                )
                f = f.round().clamp(0, 255)
            chunks.append(f.to(x.dtype))
        x = torch.cat(chunks)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top : top + th, left : left + tw]
