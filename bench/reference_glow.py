"""A plain, hand-written PyTorch Glow: the yardstick of ``bench/speed.py``.

Written the way one writes Glow by hand (cf. Kingma & Dhariwal 2018 and the common PyTorch
ports), independently of ``flowspec.layers``, but with exactly the architecture that
``specs/glow_mnist.flow`` describes, so that a speed or memory comparison is one of
implementations, not of models:

* ``L`` levels; each: squeeze (``pixel_unshuffle`` order), ``K`` steps of

  - actnorm ``y = (x + b) e^s`` (data-dependent init on the first training batch),
  - LU-parameterised invertible 1x1 convolution ``W = P (L + I) (U + diag(sign e^{log s}))``
    with full ``C x C`` lower/upper parameter matrices masked to their triangles,
  - affine coupling on the channel halves (the first ``C - C//2`` channels are kept), its
    network conv3x3(hidden) - ReLU - conv1x1(hidden) - ReLU - zero-initialised conv3x3,
    whose output is ``(shift, raw)`` and whose scale is ``sigmoid(raw + 2) + 1e-4``,

  then (except in the last level) a split whose learned Gaussian prior comes from a
  zero-initialised conv3x3 of the kept half, ``z = (x2 - mu) e^{-l}``;
* the top latent standardised by a learned ``(C, H, W)`` mean and log-scale when the spec
  says ``prior gaussian learned``, by nothing otherwise.

Log-determinants of the sample-independent layers are scalars added once per layer; only
the coupling, split and learned-prior terms are per sample. ``bench/speed.py`` asserts that
the parameter counts agree with the compiled spec and, after copying the weights over, that
the outputs agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


class ActNorm(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.initialized = False

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        std = flat.std(dim=1, unbiased=False)
        self.bias.copy_(-flat.mean(dim=1).view_as(self.bias))
        self.logs.copy_(
            torch.where(std > 1e-6, -torch.log(std.clamp_min(1e-6)), 0.0).view_as(self.logs)
        )
        self.initialized = True

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.training and not self.initialized:
            self._init(x)
        return (x + self.bias) * torch.exp(self.logs), x.shape[2] * x.shape[3] * self.logs.sum()

    def reverse(self, y: Tensor) -> Tensor:
        return y * torch.exp(-self.logs) - self.bias


class InvConvLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("lmask", torch.tril(torch.ones(channels, channels), -1))
        self.register_buffer("eye", torch.eye(channels))
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diag.abs()).float())

    def _lu(self) -> tuple[Tensor, Tensor]:
        lower = self.lower * self.lmask + self.eye
        upper = self.upper * self.lmask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return lower, upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._lu()
        weight = self.perm @ lower @ upper
        c = weight.shape[0]
        return F.conv2d(x, weight.view(c, c, 1, 1)), x.shape[2] * x.shape[3] * self.log_s.sum()

    def reverse(self, y: Tensor) -> Tensor:
        lower, upper = self._lu()
        inv = torch.linalg.solve_triangular(
            upper, torch.linalg.solve_triangular(lower, self.eye, upper=False), upper=True
        )
        weight = inv @ self.perm.T
        c = weight.shape[0]
        return F.conv2d(y, weight.view(c, c, 1, 1))


def zero_conv(cin: int, cout: int) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class AffineCoupling(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.keep, self.n = channels - channels // 2, channels // 2
        self.net = nn.Sequential(
            nn.Conv2d(self.keep, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1),
            nn.ReLU(),
            zero_conv(hidden, 2 * self.n),
        )

    def _shift_scale(self, xa: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(xa)
        return h[:, : self.n], torch.sigmoid(h[:, self.n :] + 2.0) + 1e-4

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        xa, xb = x[:, : self.keep], x[:, self.keep :]
        shift, scale = self._shift_scale(xa)
        return torch.cat([xa, xb * scale + shift], 1), torch.log(scale).sum(dim=(1, 2, 3))

    def reverse(self, y: Tensor) -> Tensor:
        ya, yb = y[:, : self.keep], y[:, self.keep :]
        shift, scale = self._shift_scale(ya)
        return torch.cat([ya, (yb - shift) / scale], 1)


class Split(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.keep, self.n = channels - channels // 2, channels // 2
        self.prior = zero_conv(self.keep, 2 * self.n)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, x2 = x[:, : self.keep], x[:, self.keep :]
        h = self.prior(y)
        mu, logs = h[:, : self.n], h[:, self.n :]
        return y, (x2 - mu) * torch.exp(-logs), -logs.sum(dim=(1, 2, 3))

    def reverse(self, y: Tensor, z: Tensor) -> Tensor:
        h = self.prior(y)
        mu, logs = h[:, : self.n], h[:, self.n :]
        return torch.cat([y, z * torch.exp(logs) + mu], 1)


class Level(nn.Module):
    def __init__(self, channels: int, steps: int, hidden: int, split: bool) -> None:
        super().__init__()
        c = 4 * channels
        self.flows = nn.ModuleList()
        for _ in range(steps):
            self.flows.extend([ActNorm(c), InvConvLU(c), AffineCoupling(c, hidden)])
        self.split = Split(c) if split else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        x = F.pixel_unshuffle(x, 2)
        logdet = x.new_zeros(x.shape[0])
        for flow in self.flows:
            x, ld = flow(x)
            logdet = logdet + ld
        z = None
        if self.split is not None:
            x, z, ld = self.split(x)
            logdet = logdet + ld
        return x, z, logdet

    def reverse(self, x: Tensor, z: Tensor | None) -> Tensor:
        if self.split is not None:
            x = self.split.reverse(x, z)
        for flow in reversed(self.flows):
            x = flow.reverse(x)
        return F.pixel_shuffle(x, 2)


class Glow(nn.Module):
    """``x -> (zs, logdet)`` with standardised latents, like ``flowspec``'s FlowModel."""

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        levels: int,
        steps: int,
        hidden: int,
        learned_top: bool,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        self.levels = nn.ModuleList()
        self.z_shapes = []
        for i in range(levels):
            last = i == levels - 1
            self.levels.append(Level(c, steps, hidden, split=not last))
            c, h, w = 4 * c, h // 2, w // 2
            if not last:
                self.z_shapes.append((c // 2, h, w))
                c = c - c // 2
        self.z_shapes.append((c, h, w))
        self.learned_top = learned_top
        if learned_top:
            self.top_mean = nn.Parameter(torch.zeros(1, c, h, w))
            self.top_logs = nn.Parameter(torch.zeros(1, c, h, w))

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        zs = []
        logdet = x.new_zeros(x.shape[0])
        for level in self.levels:
            x, z, ld = level(x)
            logdet = logdet + ld
            if z is not None:
                zs.append(z)
        if self.learned_top:
            x = (x - self.top_mean) * torch.exp(-self.top_logs)
            logdet = logdet - self.top_logs.sum()
        zs.append(x)
        return zs, logdet

    def log_prob(self, x: Tensor) -> Tensor:
        zs, logdet = self(x)
        return logdet + sum(-0.5 * (z * z + LOG_2PI).flatten(1).sum(1) for z in zs)

    def reverse(self, zs: list[Tensor]) -> Tensor:
        x = zs[-1]
        if self.learned_top:
            x = x * torch.exp(self.top_logs) + self.top_mean
        for i in range(len(self.levels) - 1, -1, -1):
            x = self.levels[i].reverse(x, zs[i] if i < len(zs) - 1 else None)
        return x

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 0.7) -> Tensor:
        p = next(self.parameters())
        return self.reverse(
            [
                temperature * torch.randn((n, *s), device=p.device, dtype=p.dtype)
                for s in self.z_shapes
            ]
        )


def from_spec(spec) -> Glow:
    """The reference Glow of a checked flowspec Glow spec (its input, L, K, hidden, prior)."""
    params = spec.params
    return Glow(
        tuple(spec.input),
        int(params["L"]),
        int(params["K"]),
        int(params["hidden"]),
        bool(spec.prior.learned),
    )
