r"""Super-resolution scores as the papers report them, and the bicubic baseline beside them.

**Default protocol: SRFlow's measure** (Lugmayr et al. 2020, Table 4). PSNR and SSIM of the
super-resolved image against the ground truth on all colour channels (uint8, data range 255),
from scikit-image with its defaults (SSIM: a uniform 7x7 window, channels averaged), no
border crop. LR-PSNR: the SR image downscaled by the kernel that made the low-resolution
input, against that input (how consistent the output is with what it was given). Each is
the mean over images, then averaged over the temperatures 0.1 ... 0.9.

**BasicSR's conventions** (``y_channel``, ``crop_border``; the EDSR/ESRGAN tables):
``y_channel`` scores the luma of ITU-R BT.601 on [0, 255],
``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` (grey images are scored as they are);
``crop_border N`` drops N pixels on every side first; SSIM then uses an 11x11 Gaussian
window with sigma 1.5 and population (co)variances (Wang et al. 2004), averaged over the
window's valid positions, as BasicSR computes it. LR-PSNR keeps SRFlow's definition either
way (all channels, no crop).

**The kernel.** Low-resolution inputs are made by :func:`runtime.images.downscale`: torch's
antialiased bicubic, i.e. the Keys cubic with ``a = -1/2`` (PIL's ``BICUBIC``), stretched by
the scale factor, weights renormalised at the borders. The bicubic baseline upsamples the
same inputs with the same kernel (:func:`bicubic_upscale`) and is scored like the model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import RunError
from .images import downscale

KEYS = ("psnr", "ssim", "lr_psnr")
#: BasicSR's SSIM window: 11x11 Gaussian, sigma 1.5 (scikit-image: radius int(3.5 * 1.5 + .5))
GAUSS_SIGMA = 1.5
GAUSS_WINDOW = 11


@dataclass(frozen=True)
class Protocol:
    """How SR images are scored: SRFlow's measure, or with BasicSR's ``y_channel`` and
    ``crop_border`` (which also switch SSIM to BasicSR's Gaussian window)."""

    y_channel: bool = False
    crop_border: int = 0

    def __post_init__(self) -> None:
        if self.crop_border < 0:
            raise RunError(f"crop_border must be 0 or more pixels, got {self.crop_border}")

    @property
    def basicsr(self) -> bool:
        return self.y_channel or self.crop_border > 0

    def describe(self) -> dict[str, Any]:
        ssim = (
            f"gaussian {GAUSS_WINDOW}x{GAUSS_WINDOW} sigma={GAUSS_SIGMA} (BasicSR)"
            if self.basicsr
            else "uniform 7x7 (scikit-image default, SRFlow)"
        )
        return {
            "channels": "y (BT.601)" if self.y_channel else "all",
            "crop_border": self.crop_border,
            "ssim_window": ssim,
            "lr_psnr": "SR downscaled by the input's bicubic kernel vs LR input, all channels",
            "kernel": "bicubic a=-0.5, antialiased (PIL BICUBIC)",
        }


def y_channel(img: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of ``(3, H, W)`` RGB on [0, 255] as float64 ``(1, H, W)``;
    other channel counts come back as float64 unchanged."""
    x = img.astype(np.float64)
    if x.shape[0] != 3:
        return x
    return (16.0 + (65.481 * x[0] + 128.553 * x[1] + 24.966 * x[2]) / 255.0)[None]


def _prepared(img: np.ndarray, p: Protocol) -> np.ndarray:
    x = y_channel(img) if p.y_channel else img.astype(np.float64)
    c = p.crop_border
    return x[:, c:-c, c:-c] if c else x


def _ssim(a: np.ndarray, b: np.ndarray, p: Protocol) -> float:
    from skimage.metrics import structural_similarity

    chan = None if a.shape[0] == 1 else 0
    a, b = (a[0], b[0]) if chan is None else (a, b)
    m = min(a.shape[-2:])
    if p.basicsr:
        if m < GAUSS_WINDOW:
            raise RunError(
                f"BasicSR's SSIM needs images of at least {GAUSS_WINDOW}x"
                f"{GAUSS_WINDOW} pixels after crop_border={p.crop_border}, "
                f"got {'x'.join(map(str, a.shape[-2:]))}"
            )
        return float(
            structural_similarity(
                a,
                b,
                data_range=255,
                channel_axis=chan,
                gaussian_weights=True,
                sigma=GAUSS_SIGMA,
                use_sample_covariance=False,
            )
        )
    win = 7 if m >= 7 else (m if m % 2 else m - 1)  # skimage wants an odd window
    return float(structural_similarity(a, b, data_range=255, win_size=win, channel_axis=chan))


def sr_scores(
    pred: Tensor, gt: Tensor, lr: Tensor, scale: int, protocol: Protocol = Protocol()
) -> dict[str, np.ndarray]:
    """Per-image PSNR, SSIM (against ``gt``) and LR-PSNR (against ``lr``) of ``pred``.

    All uint8 ``(N, C, H, W)``; ``lr`` is ``(N, C, H/scale, W/scale)``.
    """
    from skimage.metrics import peak_signal_noise_ratio as psnr

    down = downscale(pred, scale)
    out: dict[str, list[float]] = {k: [] for k in KEYS}
    p_, g_, d_, l_ = (t.cpu().numpy() for t in (pred, gt, down, lr))
    with warnings.catch_warnings():  # identical images: PSNR is inf, which we keep
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(p_.shape[0]):
            a, b = _prepared(g_[i], protocol), _prepared(p_[i], protocol)
            out["psnr"].append(psnr(a, b, data_range=255))
            out["ssim"].append(_ssim(a, b, protocol))
            out["lr_psnr"].append(psnr(l_[i], d_[i], data_range=255))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def finite_mean(values: np.ndarray) -> float:
    """Mean over images; a perfect reconstruction (PSNR = inf) would hide every other
    image, so infinite values are capped at 100 dB first."""
    return float(np.mean(np.minimum(values, 100.0)))


def row(
    pred: Tensor, gt: Tensor, lr: Tensor, scale: int, protocol: Protocol, lpips: Any = None
) -> dict[str, float]:
    """Mean scores of one set of SR images (one temperature, or the baseline)."""
    out = {k: finite_mean(v) for k, v in sr_scores(pred, gt, lr, scale, protocol).items()}
    if lpips is not None:
        out["lpips"] = float(lpips(gt, pred).mean())  # reference first
    return out


def bicubic_upscale(lr: Tensor, scale: int) -> Tensor:
    """uint8 ``(N, C, h, w)`` -> ``(N, C, h*scale, w*scale)`` with the kernel of
    :func:`runtime.images.downscale` (antialiased bicubic, ``a = -1/2``)."""
    h, w = lr.shape[-2:]
    f = F.interpolate(
        lr.float() / 255.0,
        size=(h * scale, w * scale),
        mode="bicubic",
        antialias=True,
        align_corners=False,
    )
    return (f * 255.0).round().clamp(0, 255).to(torch.uint8)


def table4(per: dict[str, dict[str, float]], lpips: bool) -> dict[str, Any]:
    """The top-level scores: each averaged over the temperatures of ``per``."""
    out: dict[str, Any] = {k: sum(r[k] for r in per.values()) / len(per) for k in KEYS}
    out["lpips"] = (sum(r["lpips"] for r in per.values()) / len(per)) if lpips else "unavailable"
    return out


def bicubic_baseline(
    gt: Tensor, lr: Tensor, scale: int, protocol: Protocol, lpips: Any = None
) -> dict[str, float]:
    """``psnr_bicubic``, ``ssim_bicubic``, ``lr_psnr_bicubic`` (and ``lpips_bicubic``) of
    the bicubic upsampling of ``lr``, scored as the model's samples are."""
    scores = row(bicubic_upscale(lr, scale), gt, lr, scale, protocol, lpips)
    return {f"{k}_bicubic": v for k, v in scores.items()}
