"""The density half of a prior's row in ``flowspec verify``.

A prior is a bijection of the final latent onto ``eps`` (checked like a layer), plus
``log_density(eps)`` that scores ``eps`` and ``sample_noise(shape)`` that draws it (both
N(0, I) when the module has none). Here, deterministically (fixed seeds) and in float64:

* **Factorisation.** ``f = log_density`` is a product of one-entry marginals when
  ``f(x) = f(0) + sum_i [f(x_i e_i) - f(0)]``; checked at ``SEP_POINTS`` random points to
  ``SEP_TOL`` (relative).
* **Normalisation, factorising.** ``log Z = f(0) + sum_i log int exp(f(x e_i) - f(0)) dx``,
  every one-entry integral by the trapezoid rule on ``t in [-T_MAX, T_MAX]`` (``NODES``
  nodes) after ``x = sinh(pi/2 sinh t)``. The change of variables turns any integrable
  algebraic tail ``|x|^(-1-a)`` (Student-t, Cauchy) into a double-exponential decay in
  ``t``, so light and heavy tails alike integrate to about 1e-12. Pass: ``|log Z| <= NORM_TOL``.
* **Normalisation, otherwise.** Importance sampling over the whole latent with a product
  of standard Cauchy densities as the proposal (heavy-tailed, so the weights of a Gaussian
  or Student-t target have finite variance): ``IS_DRAWS`` draws, ``Z`` estimated with its
  relative standard error. Pass: ``|Z - 1| <= IS_TOL`` with a standard error below
  ``IS_TOL / 4``; a larger standard error (many entries) fails as not established.
* **Sampling, factorising.** ``SAMPLE_DRAWS`` draws of ``sample_noise``; every entry's draws
  mapped through that entry's marginal CDF (the same quadrature, cumulated) must be
  uniform: Kolmogorov-Smirnov distance at most ``KS_TOL``, the critical value at level
  ``KS_ALPHA`` per entry.
* **Sampling, otherwise.** Stein's identity ``E_p[x . grad f(x) + D] = 0`` over
  ``SAMPLE_DRAWS`` draws: the mean within ``STEIN_Z`` standard errors of zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .build import standard_normal_logp

T_MAX = 4.5
NODES = 577  # a step of 1/64 in t
NORM_TOL = 1e-6
SEP_POINTS = 4
SEP_TOL = 1e-9
SAMPLE_DRAWS = 16384
KS_ALPHA = 1e-9
KS_TOL = math.sqrt(math.log(2 / KS_ALPHA) / (2 * SAMPLE_DRAWS))
IS_DRAWS = 65536
IS_TOL = 0.05
STEIN_Z = 6.0
_CHUNK = 1 << 21  # entries per call of log_density


@dataclass
class Density:
    """What the density checks measured, and the first failure (``error``)."""

    log_z: float | None = None
    sample_stat: float | None = None
    note: str = ""
    error: str | None = None


def check_density(module: torch.nn.Module, shape: tuple[int, ...], seed: int) -> Density:
    """Normalisation of ``module``'s ``log_density`` and consistency of its ``sample_noise``
    on ``eps`` of ``shape`` (C, H, W)."""
    logp = getattr(module, "log_density", None) or standard_normal_logp
    gen = torch.Generator().manual_seed(seed + 1)
    d = math.prod(shape)

    def f(flat: Tensor) -> Tensor:  # (N, D) -> (N,), evaluated in chunks
        outs = [logp(part.reshape(-1, *shape)) for part in flat.split(max(1, _CHUNK // d))]
        out = torch.cat([o.reshape(-1) for o in outs])
        if out.shape[0] != flat.shape[0]:
            raise ValueError(
                f"log_density of a ({flat.shape[0]}, {', '.join(map(str, shape))})"
                f" batch has shape {tuple(outs[0].shape)}, expected ({len(flat)},)"
            )
        return out

    draws = _draw(module, (SAMPLE_DRAWS, *shape), gen).reshape(SAMPLE_DRAWS, d)
    if _factorises(f, d, gen):
        return _factorised(f, d, draws)
    return _joint(f, d, draws, gen)


def _draw(module: torch.nn.Module, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    noise = getattr(module, "sample_noise", None)
    if noise is None:
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    else:
        x = noise(shape, device="cpu", dtype=torch.float64, generator=gen)
    if tuple(x.shape) != shape:
        raise ValueError(f"sample_noise{shape} returned shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("sample_noise returned values that are not finite")
    return x.to(torch.float64)


def _axes(values: Tensor, entries: range, d: int) -> Tensor:
    """``(len(entries) * n, d)``: for each entry i, the n points ``values[k] e_i``."""
    n, m = values.shape[0], len(entries)
    pts = torch.zeros(m, n, d, dtype=torch.float64)
    pts[torch.arange(m), :, torch.tensor(list(entries))] = values.to(torch.float64).expand(m, n)
    return pts.reshape(m * n, d)


def _factorises(f: Callable[[Tensor], Tensor], d: int, gen: torch.Generator) -> bool:
    f0 = f(torch.zeros(1, d, dtype=torch.float64))[0]
    for _ in range(SEP_POINTS):
        x = 1.5 * torch.randn(d, generator=gen, dtype=torch.float64)
        pts = torch.zeros(d, d, dtype=torch.float64)
        pts[torch.arange(d), torch.arange(d)] = x
        parts = f(pts) - f0
        whole = f(x[None])[0]
        if not bool(torch.isfinite(whole)) or not bool(torch.isfinite(parts).all()):
            return False
        scale = 1.0 + float(f0.abs()) + float(parts.abs().sum())
        if abs(float(whole - f0 - parts.sum())) > SEP_TOL * scale:
            return False
    return True


def _marginals(f: Callable[[Tensor], Tensor], d: int) -> tuple[float, Tensor, float]:
    """``(f(0), log of every entry's unnormalised marginal mass at the nodes (d, NODES), h)``:
    the mass of node k is ``exp(f(x_k e_i) - f(0)) dx/dt h``."""
    t = torch.linspace(-T_MAX, T_MAX, NODES, dtype=torch.float64)
    h = 2 * T_MAX / (NODES - 1)
    s = torch.sinh(t)
    x = torch.sinh(math.pi / 2 * s)
    log_dxdt = math.log(math.pi / 2) + _logcosh(math.pi / 2 * s) + _logcosh(t)
    f0 = float(f(torch.zeros(1, d, dtype=torch.float64))[0])
    block = max(1, _CHUNK // (NODES * d))
    g = (
        torch.cat(
            [
                f(_axes(x, range(i, min(i + block, d)), d)).reshape(-1, NODES)
                for i in range(0, d, block)
            ]
        )
        - f0
    )
    bad = torch.nonzero(torch.isnan(g) | (g == math.inf))
    if len(bad):
        i, k = int(bad[0, 0]), int(bad[0, 1])
        raise ValueError(
            f"log_density is not finite at entry {i} = {float(x[k]):.3g} (the other entries 0)"
        )
    w = torch.full((NODES,), h, dtype=torch.float64)
    w[[0, -1]] = h / 2
    return f0, g + log_dxdt + torch.log(w), h


def _logcosh(v: Tensor) -> Tensor:
    a = v.abs()
    return a + torch.log1p(torch.exp(-2 * a)) - math.log(2)


def _factorised(f: Callable[[Tensor], Tensor], d: int, draws: Tensor) -> Density:
    f0, mass, h = _marginals(f, d)
    log_int = torch.logsumexp(mass, dim=1)
    log_z = f0 + float(log_int.sum())
    out = Density(log_z=log_z)
    cdf = torch.cumsum(torch.exp(mass - log_int[:, None]), dim=1)
    t = torch.asinh(torch.asinh(draws) * (2 / math.pi)).clamp(-T_MAX, T_MAX)
    pos = (t + T_MAX) / h
    k = pos.floor().long().clamp(0, NODES - 2)
    frac = pos - k
    cols = cdf.T  # (NODES, d): gather the CDF at each draw's node, entry by entry
    u = torch.gather(cols, 0, k) * (1 - frac) + torch.gather(cols, 0, k + 1) * frac
    u, _ = u.sort(dim=0)
    n = draws.shape[0]
    i = torch.arange(1, n + 1, dtype=torch.float64)[:, None]
    ks = torch.maximum(i / n - u, u - (i - 1) / n).max(dim=0).values
    worst = int(ks.argmax())
    out.sample_stat = float(ks[worst])
    out.note = (
        f"log Z = {log_z:.1e} by quadrature of each entry's marginal ({NODES} nodes; "
        f"tolerance {NORM_TOL:g}); sample_noise: largest KS distance {out.sample_stat:.3f}"
        f" over {n} draws (tolerance {KS_TOL:.3f})"
    )
    if not abs(log_z) <= NORM_TOL:
        out.error = (
            f"log_density is not normalised: log of its integral {log_z:.6g}, "
            f"expected 0 (quadrature of each entry's marginal, tolerance "
            f"{NORM_TOL:g})"
        )
    elif not out.sample_stat <= KS_TOL:
        out.error = (
            f"sample_noise does not draw from log_density: entry {worst}'s "
            f"{n} draws are at KS distance {out.sample_stat:.3f} from its marginal "
            f"(tolerance {KS_TOL:.3f})"
        )
    return out


def _joint(f: Callable[[Tensor], Tensor], d: int, draws: Tensor, gen: torch.Generator) -> Density:
    u = torch.rand((IS_DRAWS, d), generator=gen, dtype=torch.float64)
    x = torch.tan(math.pi * (u - 0.5))
    log_q = -(math.log(math.pi) + torch.log1p(x * x)).sum(dim=1)
    lw = f(x) - log_q
    log_z = float(torch.logsumexp(lw, 0)) - math.log(IS_DRAWS)
    ratio = float(torch.logsumexp(2 * lw, 0)) - math.log(IS_DRAWS) - 2 * log_z
    rse = math.sqrt(max(math.expm1(ratio), 0.0) / IS_DRAWS) if math.isfinite(ratio) else math.inf
    xs = draws.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(f(xs).sum(), xs)
    s = (draws * grad).sum(dim=1) + d
    z = float(s.mean() / (s.std() / math.sqrt(len(s)) + 1e-300))
    out = Density(
        log_z=log_z,
        sample_stat=abs(z),
        note=(
            f"log Z = {log_z:.1e} by importance sampling ({IS_DRAWS} Cauchy draws, relative "
            f"standard error {rse:.1e}; tolerance |Z - 1| <= {IS_TOL:g}), log_density does not "
            f"factorise; sample_noise: Stein's identity off by {abs(z):.1f} standard errors over "
            f"{SAMPLE_DRAWS} draws (tolerance {STEIN_Z:g})"
        ),
    )
    if not rse <= IS_TOL / 4:
        out.error = (
            f"log_density does not factorise over entries and importance sampling "
            f"cannot establish its normalisation for {d} entries: relative standard "
            f"error {rse:.2g} > {IS_TOL / 4:g} ({IS_DRAWS} Cauchy draws)"
        )
    elif not abs(math.expm1(log_z)) <= IS_TOL:
        out.error = (
            f"log_density is not normalised: its integral is {math.exp(log_z):.4g}, "
            f"expected 1 (importance sampling, {IS_DRAWS} draws, tolerance "
            f"{IS_TOL:g})"
        )
    elif not abs(z) <= STEIN_Z:
        out.error = (
            f"sample_noise does not draw from log_density: Stein's identity "
            f"E[x . grad log p + D] = 0 fails by {abs(z):.1f} standard errors over "
            f"{SAMPLE_DRAWS} draws (tolerance {STEIN_Z:g})"
        )
    return out
