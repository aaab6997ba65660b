"""SRFlow's RRDB encoder, the torch module: what it computes and why is in
the declaration's docstring, :mod:`flowspec.layers.srflow_encoder`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers.srflow_encoder import GROWTH, head_convs, head_doublings, n_taps

from .base import Shape
from .encoders import RRDB


def tapped_blocks(blocks: int, taps: int) -> list[int]:
    """0-based indices of ``taps`` evenly spaced blocks of ``blocks``, the last one included:
    ``blocks=8, taps=4`` gives ``[1, 3, 5, 7]``, SRFlow's ``stackRRDB: blocks: [1, 3, 5, 7]``."""
    return [round((j + 1) * blocks / taps) - 1 for j in range(taps)]


class SRFlowEncoder(nn.Module):
    """Stem conv, ``blocks`` RRDBs (growth 32), trunk conv with SRFlow's long skip, ``ups``
    learned 2x upsampling convolutions; output ``(B, features * (taps + 1), H, W)`` at the
    condition's own resolution, ``[lr, tap_1, ..., tap_taps]`` along channels.
    ``features_at`` gives the features of a layer at another resolution (see the module
    docstring). The dense blocks' convolutions start as SRFlow's (Kaiming normal times 0.1,
    zero bias). With ``head=true``, ``sr`` is the RRDB's own super-resolved image."""

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        blocks, f = int(args["blocks"]), int(args["features"])
        taps, ups = n_taps(args), int(args.get("ups", 2))
        if blocks < 1 or f < 1 or ups < 0:
            raise ValueError(
                f"srflow encoder needs blocks >= 1, features >= 1 and ups >= 0, got {args}"
            )
        self.in_shape, self.features = tuple(in_shape), f
        self.out_channels = f * (taps + 1)
        self.taps = tapped_blocks(blocks, taps) if taps else []
        self.stem = nn.Conv2d(in_shape[0], f, 3, padding=1)
        self.body = nn.ModuleList(RRDB(f, GROWTH) for _ in range(blocks))
        self.trunk = nn.Conv2d(f, f, 3, padding=1)
        self.up = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1) for _ in range(ups))
        self.act = nn.LeakyReLU(0.2)
        for conv in (m for m in self.body.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)
        # built last: the other parameters start as they do without a head
        self.doublings = head_doublings(args)
        if self.doublings:  # the SR head: SRFlow's upconv{ups+1..}, HRconv, conv_last
            self.head_up = nn.ModuleList(
                nn.Conv2d(f, f, 3, padding=1) for _ in range(head_convs(args))
            )
            self.hr_conv = nn.Conv2d(f, f, 3, padding=1)
            self.conv_last = nn.Conv2d(f, in_shape[0], 3, padding=1)

    def _trunk(self, c: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``lr`` (the trunk's output with the long skip) and the tapped blocks' outputs."""
        fea = self.stem(c)
        tapped = []
        for i, block in enumerate(self.body):
            fea = block(fea)
            if i in self.taps:
                tapped.append(fea)
        return fea + self.trunk(fea), tapped

    def forward(self, c: Tensor) -> Tensor:
        lr, tapped = self._trunk(c)
        return torch.cat([lr, *tapped], dim=1)

    def sr(self, c: Tensor) -> Tensor:
        """The super-resolved image of the low-resolution ``c``: ``(B, C, H * scale,
        W * scale)``, in ``c``'s units. Needs ``head=true``."""
        if not self.doublings:
            raise ValueError(
                "this srflow encoder has no super-resolution head; build it "
                "with head=true and scale=S"
            )
        fea = self._trunk(c)[0]
        convs = [*self.up, *self.head_up][: self.doublings]
        for conv in convs:  # nearest 2x, conv, LeakyReLU: the flow's fea_up2, fea_up4, ...
            fea = self.act(conv(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.hr_conv(fea)))

    def head_parameters(self) -> list[Tensor]:
        """The parameters only :meth:`sr` uses (the flow never reads them)."""
        if not self.doublings:
            return []
        return [
            *self.head_up.parameters(),
            *self.hr_conv.parameters(),
            *self.conv_last.parameters(),
        ]

    def features_at(self, f: Tensor, hw: tuple[int, int]) -> Tensor:
        """The features of a layer at resolution ``hw``, from this encoder's output ``f``.

        ``lr`` (the first ``features`` channels) goes through one learned upsampling step per
        doubling (up to ``ups`` of them; the rest of the way, and any other ratio, bilinear);
        the block taps are resampled nearest, as SRFlow does.
        """
        h, w = f.shape[2], f.shape[3]
        if (h, w) == tuple(hw):
            return f
        lr, tapped = f[:, : self.features], f[:, self.features :]
        k = 0  # SRFlow's LeakyReLU is in place, so its fea_up2, fea_up4 are activated too
        while k < len(self.up) and hw[0] % (h << (k + 1)) == 0 and hw[1] % (w << (k + 1)) == 0:
            lr = self.act(self.up[k](F.interpolate(lr, scale_factor=2, mode="nearest")))
            k += 1
        if tuple(lr.shape[2:]) != tuple(hw):
            from ._resample import bilinear

            lr = bilinear(lr, hw)
        if tapped.shape[1]:
            tapped = F.interpolate(tapped, size=tuple(hw), mode="nearest")
        return torch.cat([lr, tapped], dim=1)
