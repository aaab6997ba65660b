"""A run's random streams: a seed per (run seed, purpose, index), and a generator of it.

Data order, dequantisation noise, augmentation and sample noise each draw from their own
stream (:func:`stream_seed`), so a run resumed or evaluated later draws exactly what it drew.
"""

from __future__ import annotations

import hashlib

import torch


def stream_seed(seed: int, tag: str, index: float) -> int:
    """A 63-bit seed that is a pure function of (run seed, purpose, index).

    Data order, dequantisation noise and sample noise all come from generators seeded
    this way, so a step's batch depends on nothing but (seed, step): resuming from a
    checkpoint at step k replays exactly the batches an uninterrupted run sees.
    """
    h = hashlib.sha256(f"{seed}/{tag}/{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g
