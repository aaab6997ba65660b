r"""Metrics: bits/dim and the JSONL log (super-resolution scores: :mod:`runtime.srprotocol`;
LPIPS: :mod:`runtime.perceptual`).

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
from pathlib import Path
from typing import Any

from torch import Tensor

LN2 = math.log(2.0)


def bits_per_dim(logp: Tensor, dims: int, bits: int) -> Tensor:
    """Per-sample bits/dim of the ``bits``-bit data from the continuous log-density."""
    return bits - logp / (dims * LN2)


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
        kept = [
            r
            for r in self.read()
            if r.get("step", 0) <= step
            and (pretrain is None or r.get("pretrain_step", 0) <= pretrain)
        ]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)
        return kept
