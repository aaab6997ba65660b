r"""Metrics: bits/dim, super-resolution scores (scikit-image), LPIPS hook, the JSONL log.

Bits per dimension with uniform dequantisation. The model gives a continuous density
``p`` on model space ``x in [-1/2, 1/2)^D`` (:mod:`runtime.images`). The dequantised
levels ``y = x_int + u = 2^b (x + 1/2)`` live on ``[0, 2^b)^D`` with density
``p_y(y) = p(x) 2^{-bD}`` (change of variables; the shift by 1/2 has unit Jacobian), and
``-log P(x_int) <= E_u[-log p_y(x_int + u)]`` (Theorem 1 of Theis et al. 2016). So

.. math:: \mathrm{bpd} = \frac{-\log p(x) + D\, b \log 2}{D \log 2}
                       = b - \frac{\log p(x)}{D \log 2},

in bits per sub-pixel of the ``b``-bit image: comparable with published numbers at
``b = 8`` (and a model that ignored the data entirely would score ``b``).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import RunError

LN2 = math.log(2.0)


def bits_per_dim(logp: Tensor, dims: int, bits: int) -> Tensor:
    """Per-sample bits/dim of the ``bits``-bit data from the continuous log-density."""
    return bits - logp / (dims * LN2)


# --------------------------------------------------------------------------- SR scores

def sr_scores(pred: Tensor, gt: Tensor, lr: Tensor, scale: int) -> dict[str, np.ndarray]:
    """Per-image PSNR and SSIM of ``pred`` against ``gt``, and LR-PSNR.

    All inputs are uint8 ``(N, C, H, W)`` (``lr`` is ``(N, C, H/scale, W/scale)``). LR-PSNR
    compares ``pred`` downscaled by the same bicubic kernel that made ``lr`` with ``lr``:
    how consistent the super-resolved image is with its input. Scores come from
    scikit-image (``peak_signal_noise_ratio``, ``structural_similarity``, data range 255;
    SSIM with its default uniform 7x7 window, per channel for colour).
    """
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from .images import downscale

    down = downscale(pred, scale)
    out: dict[str, list[float]] = {"psnr": [], "ssim": [], "lr_psnr": []}
    p, g, d, lo = (t.cpu().numpy() for t in (pred, gt, down, lr))
    with warnings.catch_warnings():  # identical images: PSNR is inf, which we keep
        warnings.simplefilter("ignore", RuntimeWarning)
        for i in range(p.shape[0]):
            out["psnr"].append(peak_signal_noise_ratio(g[i], p[i], data_range=255))
            out["lr_psnr"].append(peak_signal_noise_ratio(lo[i], d[i], data_range=255))
            a, b = (g[i][0], p[i][0]) if g.shape[1] == 1 else (g[i], p[i])
            m = min(a.shape[-2:])
            win = 7 if m >= 7 else (m if m % 2 else m - 1)  # skimage wants an odd window
            out["ssim"].append(structural_similarity(
                a, b, data_range=255, win_size=win,
                channel_axis=None if g.shape[1] == 1 else 0))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def finite_mean(values: np.ndarray) -> float:
    """Mean over images; a perfect reconstruction (PSNR = inf) would hide every other
    image, so infinite values are capped at 100 dB first."""
    return float(np.mean(np.minimum(values, 100.0)))


def load_lpips(path: str | os.PathLike | None) -> Callable[[Tensor, Tensor], Tensor] | None:
    """An LPIPS network from a local TorchScript file, or ``None`` when none is given.

    No package ships LPIPS weights together with their AlexNet/VGG backbone, and flowspec
    downloads nothing, so LPIPS is computed only from a file the user exported, e.g.
    ``torch.jit.script(lpips.LPIPS(net="alex")).save("lpips_alex.pt")``. The module must
    map two image batches in [-1, 1] to one distance per image.
    """
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise RunError(f"LPIPS weights file {p} does not exist")
    try:
        net = torch.jit.load(str(p), map_location="cpu").eval()
    except Exception as e:  # any load failure means "not a usable file"
        raise RunError(f"cannot load {p} as a TorchScript LPIPS module ({e}); export one "
                       "with torch.jit.script(lpips.LPIPS(net='alex')).save(PATH)") from e

    def score(pred: Tensor, gt: Tensor) -> Tensor:
        a = pred.float() / 127.5 - 1.0
        b = gt.float() / 127.5 - 1.0
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        with torch.no_grad():
            return net(a, b).reshape(a.shape[0])

    return score


# --------------------------------------------------------------------------- JSONL log

class MetricsLog:
    """``metrics.jsonl``: one JSON object per line, flushed as written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut short by a kill
                        break
        return out

    def truncate_after(self, step: int, pretrain: int | None = None) -> list[dict[str, Any]]:
        """Drop the records of steps after ``step`` (they are redone on resume), and with
        ``pretrain`` those of the encoder's pretraining after that step of it."""
        kept = [r for r in self.read() if r.get("step", 0) <= step and (
            pretrain is None or r.get("pretrain_step", 0) <= pretrain)]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)
        return kept
