r"""Pixels in and out of model space: dequantisation, grids, label colours, PNG, curves.

Model space is the centred unit cube: an 8-bit image ``img`` kept at ``bits`` bits is
``x_int = floor(img / 2^(8-bits))`` in ``{0, ..., 2^bits - 1}``, dequantised to
``x = (x_int + u) / 2^bits - 1/2`` with ``u ~ U[0, 1)^D``. Centring is a shift, so it
changes no density; see :func:`runtime.metrics.bits_per_dim` for the discretisation term.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def levels(img: Tensor, bits: int) -> Tensor:
    """The integer level ``floor(img / 2^(8-bits))`` of uint8 images."""
    return torch.div(img.long(), 2 ** (8 - bits), rounding_mode="floor")


def dequantize(img: Tensor, bits: int, noise: Tensor) -> Tensor:
    """uint8 images and uniform ``noise`` in [0, 1) -> model-space floats in [-1/2, 1/2)."""
    return (levels(img, bits).to(noise.dtype) + noise) / 2**bits - 0.5


def to_uint8(x: Tensor, bits: int) -> Tensor:
    """Model-space images back to uint8: the level whose bin holds ``x`` (clamped)."""
    n = 2**bits
    lv = torch.floor((x.detach().float() + 0.5) * n).clamp(0, n - 1)
    return (lv * 2 ** (8 - bits)).to(torch.uint8).cpu()


def quantized(img: Tensor, bits: int) -> Tensor:
    """uint8 images reduced to ``bits`` bits, in the same units as :func:`to_uint8`."""
    return (levels(img, bits) * 2 ** (8 - bits)).to(torch.uint8)


def to_condition(img: Tensor) -> Tensor:
    """A uint8 conditioning image (the low-res input) in model units, [-1/2, 1/2]."""
    return img.float() / 255.0 - 0.5


def downscale(img: Tensor, scale: int) -> Tensor:
    """Bicubic downscaling by an integer factor with anti-aliasing, uint8 -> uint8.

    The same function makes the low-res condition from a high-res image and scores the
    LR-consistency of a super-resolved output, so LR-PSNR of the ground truth is infinite.
    """
    h, w = img.shape[-2:]
    f = F.interpolate(
        img.float() / 255.0,
        size=(h // scale, w // scale),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    return (f * 255.0).round().clamp(0, 255).to(torch.uint8)


def upscale_nearest(img: Tensor, size: Sequence[int]) -> Tensor:
    """Blow up uint8 images by pixel repetition (for showing a low-res input in a grid)."""
    return F.interpolate(img.float(), size=tuple(size), mode="nearest").to(torch.uint8)


# --------------------------------------------------------------------------- label maps


def palette(num_classes: int) -> Tensor:
    """A fixed colour per class (0 = black background), uint8 ``(num_classes, 3)``."""
    base = [
        (0, 0, 0),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (220, 190, 255),
        (170, 110, 40),
        (255, 250, 200),
        (128, 0, 0),
        (170, 255, 195),
        (128, 128, 0),
        (255, 215, 180),
        (0, 0, 128),
        (128, 128, 128),
        (255, 255, 255),
    ]
    rng = np.random.default_rng(0)
    extra = [
        tuple(int(v) for v in rng.integers(0, 256, 3))
        for _ in range(max(0, num_classes - len(base)))
    ]
    return torch.tensor((base + extra)[:num_classes], dtype=torch.uint8)


def colourise(maps: Tensor, num_classes: int) -> Tensor:
    """int64 label maps ``(N, H, W)`` -> uint8 RGB ``(N, 3, H, W)``."""
    pal = palette(max(num_classes, int(maps.max()) + 1))
    return pal[maps.long().cpu()].permute(0, 3, 1, 2).contiguous()


def to_rgb(img: Tensor) -> Tensor:
    return img.expand(-1, 3, -1, -1) if img.shape[1] == 1 else img


# --------------------------------------------------------------------------- grids

GRID_PAD = 2


def grid_size(n: int, ncol: int, h: int, w: int, pad: int = GRID_PAD) -> tuple[int, int]:
    """(height, width) in pixels of :func:`make_grid` for ``n`` tiles of ``h x w``."""
    nrow = math.ceil(n / ncol)
    return nrow * h + (nrow + 1) * pad, ncol * w + (ncol + 1) * pad


def make_grid(tiles: Tensor, ncol: int, pad: int = GRID_PAD, fill: int = 255) -> Tensor:
    """uint8 tiles ``(N, C, H, W)`` laid out row by row, ``ncol`` per row -> ``(C, H', W')``."""
    n, c, h, w = tiles.shape
    gh, gw = grid_size(n, ncol, h, w, pad)
    out = torch.full((c, gh, gw), fill, dtype=torch.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        out[:, top : top + h, left : left + w] = tiles[i]
    return out


#: Height in pixels of the band of column labels above a grid (:func:`label_columns`).
LABEL_BAND = 14


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (ImportError, OSError, TypeError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _band(
    width: int, height: int, texts: Sequence[tuple[str, float, float]], size: int, channels: int
) -> Tensor:
    """A white uint8 ``(channels, height, width)`` band with each ``(text, x, y)`` drawn
    in black, centred on ``(x, y)``."""
    from PIL import Image, ImageDraw

    band = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(band)
    font = _font(size)
    for text, x, y in texts:
        draw.text((x, y), text, fill=0, font=font, anchor="mm")
    return torch.from_numpy(np.asarray(band).copy())[None].expand(channels, -1, -1)


def label_columns(
    grid: Tensor, spans: Sequence[tuple[str, int, int]], tile_w: int, pad: int = GRID_PAD
) -> Tensor:
    """A :func:`make_grid` grid with a band of :data:`LABEL_BAND` pixels on top naming its
    columns: each ``(text, first, end)`` is centred over the tile columns first..end-1."""
    c, _, w = grid.shape
    texts = [
        (t, pad + (a * (tile_w + pad) + b * (tile_w + pad) - pad) / 2, LABEL_BAND / 2)
        for t, a, b in spans
    ]
    return torch.cat([_band(w, LABEL_BAND, texts, 11, c), grid], dim=1)


def label_rows(grid: Tensor, names: Sequence[str], tile_h: int, pad: int = GRID_PAD) -> Tensor:
    """A :func:`make_grid` grid with a column on its left naming each row of tiles (class
    names of a class-conditional grid). Names are cut to 24 characters; the text shrinks
    with small tiles, down to 8 pixels."""
    c, h, _ = grid.shape
    size = max(8, min(11, tile_h))
    shown = [n if len(n) <= 24 else n[:23] + "…" for n in names]
    font = _font(size)
    width = 2 * pad + max(int(font.getlength(n)) for n in shown) + 2 if shown else 0
    texts = [(n, width / 2, pad + r * (tile_h + pad) + tile_h / 2) for r, n in enumerate(shown)]
    return torch.cat([_band(width, h, texts, size, c), grid], dim=2)


def save_png(img: Tensor, path: str | os.PathLike) -> Path:
    """Write a uint8 ``(C, H, W)`` image (C = 1 or 3) as PNG, atomically."""
    return save_image(img, path, "PNG")


def image_format(path: str | os.PathLike) -> str:
    """The Pillow format that writes ``path``, from its extension (``.jpg`` -> JPEG).

    Raises ValueError naming the extensions that work, for one Pillow cannot write.
    """
    from PIL import Image

    Image.init()
    ext = Path(path).suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"cannot write a `{ext or 'no extension'}` image ({path}); use one "
            f"of {', '.join(IMAGE_SUFFIXES)}"
        )
    return fmt


#: Extensions offered in messages (Pillow writes a few more).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def save_image(img: Tensor, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write a uint8 ``(C, H, W)`` image (C = 1 or 3) atomically, in the format of its
    extension unless ``fmt`` names one (JPEG at quality 95: samples are small)."""
    from PIL import Image

    path = Path(path)
    fmt = fmt or image_format(path)
    arr = img.cpu().numpy()
    # uint8 (H, W) is read as mode L and (H, W, 3) as RGB
    pil = Image.fromarray(
        np.ascontiguousarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pil.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    os.replace(tmp, path)
    return path


def read_image(path: str | os.PathLike, channels: int) -> Tensor:
    """An image file as uint8 ``(1, C, H, W)`` (grey or RGB as asked)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.convert("L" if channels == 1 else "RGB"))
    t = torch.from_numpy(arr.copy())
    return (t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]).contiguous()


def read_label_map(path: str | os.PathLike) -> Tensor:
    """A single-channel PNG of class ids as int64 ``(1, H, W)``."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(
                f"{path} is a {im.mode} image; a label map is one channel of "
                "class ids (mode L, P or I)"
            )
        arr = np.asarray(im).astype(np.int64)
    return torch.from_numpy(arr)[None]


# --------------------------------------------------------------------------- curves


def plot_curve(records: list[dict[str, Any]], path: str | os.PathLike, title: str = "") -> Path:
    """Training bits/dim (raw and smoothed) and validation bits/dim against the step."""
    # A Figure with its own Agg canvas: no pyplot, so the caller's backend (a notebook's)
    # is neither changed nor used, and no figure is left registered anywhere.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["step"], r["bpd"]) for r in records if r.get("kind") == "train"]
    val = [(r["step"], r["bpd"]) for r in records if r.get("kind") == "val"]
    fig = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if train:
        s, b = zip(*train)
        ax.plot(s, b, lw=0.6, alpha=0.35, color="C0", label="train (per step)")
        k = max(1, len(b) // 50)
        if k > 1:
            sm = np.convolve(b, np.ones(k) / k, mode="valid")
            ax.plot(s[k - 1 :], sm, lw=1.5, color="C0", label=f"train (mean of {k})")
    if val:
        s, b = zip(*val)
        ax.plot(s, b, "o-", color="C3", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    if train:  # the first steps are far above the rest; keep the interesting part in view
        lo = min(b for _, b in train + val)
        hi = float(np.percentile([b for _, b in train], 95))
        ax.set_ylim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.1 * (hi - lo + 1e-9))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)
    return path
