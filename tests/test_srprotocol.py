"""runtime.srprotocol: the bicubic kernel, BasicSR's Y channel, border crop and SSIM, the
bicubic baseline and Table 4's average over temperatures, each against a direct computation
written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from runtime import srprotocol as sr
from runtime.images import downscale


def keys(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    """The Keys cubic convolution kernel (a = -1/2: PIL's BICUBIC)."""
    x = np.abs(x)
    return np.where(
        x < 1,
        (a + 2) * x**3 - (a + 3) * x**2 + 1,
        np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0),
    )


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Rows of resampling weights as PIL computes them: the kernel stretched by the scale
    when shrinking, renormalised where it leaves the image."""
    s = n_in / n_out
    f = max(s, 1.0)
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        c = (i + 0.5) * s
        lo, hi = max(int(c - 2 * f + 0.5), 0), min(int(c + 2 * f + 0.5), n_in)
        j = np.arange(lo, hi)
        w = keys((j - c + 0.5) / f)
        m[i, lo:hi] = w / w.sum()
    return m


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 (C, H, W) resized by the direct weights, rounded and clipped as uint8."""
    a, b = resize_matrix(img.shape[1], h), resize_matrix(img.shape[2], w)
    out = np.stack([a @ c.astype(np.float64) @ b.T for c in img])
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * math.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.rand((n, c, h // 4, w // 4), generator=g)
    x = torch.nn.functional.interpolate(smooth, size=(h, w), mode="bilinear")
    return (x * 255 + torch.rand((n, c, h, w), generator=g) * 30).clamp(0, 255).to(torch.uint8)


def test_the_kernel_is_bicubic_a_minus_half_both_ways() -> None:
    hr = images(2, 3, 24, 24)
    lr = downscale(hr, 4)
    up = sr.bicubic_upscale(lr, 4)
    for i in range(2):
        d = downscale(hr[i : i + 1], 4)[0].numpy().astype(int)
        assert np.abs(d - resize(hr[i].numpy(), 6, 6)).max() <= 1  # float32 vs float64 ties
        assert np.abs(up[i].numpy().astype(int) - resize(lr[i].numpy(), 24, 24)).max() <= 1


def test_bicubic_baseline_equals_a_direct_computation() -> None:
    hr = images(3, 3, 24, 24, seed=1)
    lr = downscale(hr, 4)
    got = sr.bicubic_baseline(hr, lr, 4, sr.Protocol())
    up = [resize(lr[i].numpy(), 24, 24) for i in range(3)]
    want = np.mean([psnr(hr[i].numpy(), up[i]) for i in range(3)])
    assert got["psnr_bicubic"] == pytest.approx(want, abs=0.02)
    lr_back = [resize(u, 6, 6) for u in up]
    want_lr = np.mean([psnr(lr[i].numpy(), lr_back[i]) for i in range(3)])
    assert got["lr_psnr_bicubic"] == pytest.approx(want_lr, abs=0.05)
    assert set(got) == {"psnr_bicubic", "ssim_bicubic", "lr_psnr_bicubic"}


def test_y_channel_and_crop_border_on_known_images() -> None:
    gt = torch.zeros((1, 3, 16, 16), dtype=torch.uint8)
    pred = gt.clone()
    pred[:, 0] = 255  # pure red everywhere: Y differs by 65.481 (BT.601 on [0, 255])
    lr = downscale(gt, 2)
    rgb = sr.sr_scores(pred, gt, lr, 2)["psnr"][0]
    y = sr.sr_scores(pred, gt, lr, 2, sr.Protocol(y_channel=True))["psnr"][0]
    assert rgb == pytest.approx(10 * math.log10(3))  # one channel of three off by 255
    assert y == pytest.approx(20 * math.log10(255 / 65.481))
    assert sr.y_channel(np.full((3, 1, 1), 255))[0, 0, 0] == pytest.approx(235.0)
    framed = gt.clone()
    framed[..., :2, :] = framed[..., -2:, :] = 200  # differs only within 2 pixels of the edge
    framed[..., :, :2] = framed[..., :, -2:] = 200
    assert math.isfinite(sr.sr_scores(framed, gt, lr, 2)["psnr"][0])
    cropped = sr.sr_scores(framed, gt, lr, 2, sr.Protocol(crop_border=2))
    assert cropped["psnr"][0] == math.inf and cropped["ssim"][0] == pytest.approx(1.0)


def basicsr_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM as BasicSR computes it on one channel: 11x11 Gaussian window (sigma 1.5),
    population moments, the map's valid part averaged."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)
    a, b = a.astype(np.float64), b.astype(np.float64)
    f = lambda x: convolve2d(x, win, mode="valid")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb, cov = f(a * a) - mu_a**2, f(b * b) - mu_b**2, f(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return float(m.mean())


def test_basicsr_ssim_window_on_the_y_channel_after_cropping() -> None:
    gt, pred = images(1, 3, 32, 32, seed=2), images(1, 3, 32, 32, seed=3)
    p = sr.Protocol(y_channel=True, crop_border=4)
    got = sr.sr_scores(pred, gt, downscale(gt, 2), 2, p)["ssim"][0]
    ya, yb = (sr.y_channel(t[0].numpy())[0, 4:-4, 4:-4] for t in (gt, pred))
    assert got == pytest.approx(basicsr_ssim(ya, yb), abs=1e-6)
    assert "gaussian 11x11" in p.describe()["ssim_window"]
    assert "uniform 7x7" in sr.Protocol().describe()["ssim_window"]


def test_table4_averages_over_the_temperatures() -> None:
    per = {
        "0.1": {"psnr": 20.0, "ssim": 0.5, "lr_psnr": 30.0},
        "0.5": {"psnr": 22.0, "ssim": 0.7, "lr_psnr": 34.0},
    }
    assert sr.table4(per, lpips=False) == {
        "psnr": 21.0,
        "ssim": 0.6,
        "lr_psnr": 32.0,
        "lpips": "unavailable",
    }
