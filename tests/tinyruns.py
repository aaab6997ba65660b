"""Tiny flows on real built-in data, trained for a few steps, for the runtime's tests of
evaluation, tracking and self-contained checkpoints: the plumbing is the point, not the
numbers they reach."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

TINY_GEN = """flowspec 0.1
flow tiny_gen(K = 1, hidden = 8) {
  input 1 x 8 x 8
  prior gaussian learned
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine hidden=hidden }
    split prior=learned
  }
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine hidden=hidden }
  }
  train {
    task generation
    data digits
    bits 5
    batch 16
    optimizer adam lr=3e-3
    steps 8
  }
}
"""

TINY_RES = """flowspec 0.2
flow tiny_res(K = 1, hidden = 8) {
  input 1 x 8 x 8
  prior gaussian
  level {
    step x K { residual hidden=hidden preact=false; actnorm }
    squeeze
  }
  level {
    step x K { residual hidden=hidden; actnorm }
  }
  train {
    task generation
    data digits
    bits 5
    batch 16
    optimizer adam lr=3e-3
    steps 8
  }
}
"""

TINY_SR = """flowspec 0.1
flow tiny_sr(K = 1, hidden = 8) {
  input 1 x 24 x 24
  condition lr: image 1 x 6 x 6 encoder=rrdb(blocks=1, features=8)
  prior gaussian learned on=lr
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine on=lr hidden=hidden }
    split prior=learned on=lr
  }
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine on=lr hidden=hidden }
  }
  train {
    task super_resolution scale=4
    data faces resize=true
    bits 8
    batch 8
    optimizer adam lr=3e-3 clip=50.0
    steps 6
  }
}
"""


def write_spec(folder: Path, text: str, name: str = "tiny.flow") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


class TinyFeatures(nn.Module):
    """A feature network as users export one: images in [0,1] (B,3,H,W) -> (B,16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def tiny_features(path: Path) -> Path:
    torch.manual_seed(0)
    torch.jit.script(TinyFeatures()).save(str(path))
    return path
