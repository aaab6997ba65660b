"""Write small_features.pt: an untrained two-convolution TorchScript feature network mapping
images in [0, 1], (B, 3, H, W), to (B, 32) features. It shows the mechanics of
`flowspec eval --metrics fid,kid,is --features FILE` (README, "Evaluating a model"); its
numbers compare with nothing but themselves.

    .venv/bin/python scripts/small_features.py [OUT]
"""

from __future__ import annotations

import sys

import torch


class SmallFeatures(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(16, 32, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.c2(torch.relu(self.c1(x)))).mean(dim=(2, 3))


if __name__ == "__main__":
    torch.manual_seed(0)
    out = sys.argv[1] if len(sys.argv) > 1 else "small_features.pt"
    torch.jit.script(SmallFeatures()).save(out)
    print(out)
