r"""Invertible residual block of Residual Flows (Chen et al. 2019): ``y = x + g(x)``.

``g`` alternates spectrally normalised layers (Lipschitz ``coeff`` < 1 each, see
:mod:`._lipschitz`) with 1-Lipschitz LipSwish activations, so Lip(g) < 1: the map is
invertible and ``log|det(I + J_g)| = sum_k (-1)^(k+1) tr(J_g^k) / k`` converges.

Log-determinant, ``logdet=estimate`` (the official estimator):

* Hutchinson: ``tr(J^k) ~= v^T J^k v`` with ``v ~ N(0, I)``, one ``v`` per sample, the
  products ``v^T J^k`` computed by ``k`` vector-Jacobian products;
* Russian roulette: the series is cut after ``N = terms + n`` terms with ``n ~ Poisson(2)``
  (or ``Geometric(1/2)`` on ``{0, 1, ...}``), term ``k`` weighted by ``1 / P(N >= k)``:
  unbiased for the infinite series. ``n`` is drawn on the CPU from the module's own
  ``torch.Generator`` (seeded at construction from the global RNG), so no device sync, and
  is the same on every rank (the same seed); ``v`` from a generator of its own on the
  input's device, seeded from the same seed and the rank; :meth:`ResidualBlock.rng_state`
  and :meth:`ResidualBlock.set_rng_state` save and restore both streams (a checkpoint keeps
  them, :mod:`runtime.run_state`, so a resumed run draws what an uninterrupted one would);
  eval mode uses ``eval_terms`` always-computed terms instead of ``terms`` (less variance);
* the value returned is that unbiased estimate; its gradient is the Neumann-series one,
  ``d logdet = tr((I + J)^-1 dJ) ~= v^T [sum_{j<=N} (-1)^j J^j / P(N >= j)] dJ v``, from the
  same products without keeping their graphs: memory does not grow with ``N``.

``logdet=exact`` computes ``slogdet(I + J_g)`` of the brute-force per-sample Jacobian
(``torch.func``), for small inputs (the declaration refuses more than 4096 entries).

Inverse: the fixed point ``x <- y - g(x)`` (a contraction), from ``x = y``, until
``max|x_k - x_{k-1}| <= INVERSE_TOL[dtype] * (1 + max|y|)`` or ``MAX_INVERSE_ITERS``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._lipschitz import LipSwish, SpectralLinear
from .base import FlowLayer, Shape

__all__ = ["INVERSE_TOL", "MAX_INVERSE_ITERS", "POISSON_RATE", "ResidualBlock", "roulette_weights"]

#: Stopping tolerance of the fixed-point inverse, relative to ``1 + max|y|``.
INVERSE_TOL = {
    torch.float64: 1e-13,
    torch.float32: 1e-6,
    torch.float16: 1e-3,
    torch.bfloat16: 1e-2,
}
MAX_INVERSE_ITERS = 2000
#: The official defaults: Poisson(2) or Geometric(1/2) further terms.
POISSON_RATE = 2.0
GEOMETRIC_P = 0.5


def roulette_weights(count: int, fixed: int, dist: str) -> list[float]:
    """``1 / P(N >= k)`` for ``k = 1..count`` where ``N = fixed + n``, ``n`` of ``dist``."""
    out = []
    for k in range(1, count + 1):
        m = k - fixed  # term k is kept iff n >= m
        if m <= 0:
            out.append(1.0)
        elif dist == "poisson":
            cdf = sum(
                math.exp(-POISSON_RATE) * POISSON_RATE**i / math.factorial(i) for i in range(m)
            )
            out.append(1.0 / max(1.0 - cdf, 1e-300))
        else:
            out.append(1.0 / (1.0 - GEOMETRIC_P) ** m)
    return out


class ResidualBlock(FlowLayer):
    """``y = x + g(x)`` with Lip(g) < 1; see the module docstring for the log-det."""

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        ks = [int(k) for k in str(args.get("kernels", "3-1-3")).split("-")]
        hidden, coeff = int(args.get("hidden", 512)), float(args.get("coeff", 0.98))
        iters = int(args.get("power_iters", 5))
        self.fc = args.get("net", "conv") == "fc"
        self.exact = args.get("logdet", "estimate") == "exact"
        self.dist = str(args.get("dist", "poisson"))
        self.terms, self.eval_terms = int(args.get("terms", 2)), int(args.get("eval_terms", 20))
        widths = ([c * h * w] if self.fc else [c]) + [hidden] * (len(ks) - 1)
        widths.append(widths[0])
        spatial = None if self.fc else (h, w)
        self.linears = nn.ModuleList(
            SpectralLinear(i, o, 1 if self.fc else k, coeff, iters, spatial)
            for i, o, k in zip(widths, widths[1:], ks)
        )
        self.preact = bool(args.get("preact", True))
        self.acts = nn.ModuleList(LipSwish() for _ in range(len(ks) - (0 if self.preact else 1)))
        self._seed = int(torch.randint(0, 2**62, (1,)))  # from the global RNG: compile's seed
        self._rng = torch.Generator().manual_seed(self._seed)
        self._vecs: dict[torch.device, torch.Generator] = {}
        #: probe-generator states restored by set_rng_state, by device, for the generator
        #: of that device when it is next made (lazily, as the first one is)
        self._saved_vecs: dict[str, Tensor] = {}

    # ---- g ---------------------------------------------------------------------------------
    def weights(self) -> list[Tensor]:
        """Every layer's normalised weight (see :mod:`._lipschitz` for when buffers update)."""
        return [lin.normalized_weight() for lin in self.linears]

    def g(self, x: Tensor, ws: list[Tensor]) -> Tensor:
        h = x.flatten(1) if self.fc else x
        acts = list(self.acts)
        if self.preact:
            h = acts.pop(0)(h)
        for i, (lin, w) in enumerate(zip(self.linears, ws)):
            h = lin.run(h, w)
            if i < len(ws) - 1:
                h = acts[i](h)
        return h.view_as(x)

    # ---- log-det ---------------------------------------------------------------------------
    def _exact(self, x: Tensor, ws: list[Tensor]) -> Tensor:
        def one(xs: Tensor) -> Tensor:
            return self.g(xs[None], ws)[0].flatten()

        jac = torch.func.vmap(torch.func.jacrev(one))(x)  # (B, D, C, H, W)
        d = math.prod(x.shape[1:])
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        return torch.linalg.slogdet(eye + jac.reshape(x.shape[0], d, d))[1]

    def _draw(self) -> int:
        """The number of random terms, drawn on the CPU (no device sync)."""
        if self.dist == "poisson":
            return int(torch.poisson(torch.tensor([POISSON_RATE]), generator=self._rng))
        return int(torch.empty(1).geometric_(GEOMETRIC_P, generator=self._rng)) - 1

    def _probes(self, device: torch.device) -> torch.Generator:
        """The generator of the Hutchinson vectors on ``device``: the module's own, so a run
        is a function of its seed (the trainer never seeds the global one), offset by the
        process's rank so that ranks draw independent vectors for their own samples."""
        if device not in self._vecs:
            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            gen = torch.Generator(device).manual_seed(self._seed + 1 + rank)
            saved = self._saved_probes(device)
            if saved is not None:
                gen.set_state(saved)
            self._vecs[device] = gen
        return self._vecs[device]

    # ---- the random streams' state (checkpoints) -------------------------------------------
    def rng_state(self) -> dict[str, Any]:
        """The state of both random streams, as CPU tensors (``weights_only`` loads them):
        ``terms``, the term counts' generator; ``probes``, each device's Hutchinson
        generator by device name (``cpu``, ``cuda:0``), those made so far (a device whose
        generator was never made has drawn nothing: its stream starts from the seed)."""
        probes = {str(dev): gen.get_state() for dev, gen in self._vecs.items()}
        unused = {k: v for k, v in self._saved_vecs.items() if k not in probes}
        return {"terms": self._rng.get_state(), "probes": {**unused, **probes}}

    def set_rng_state(self, state: dict[str, Any]) -> None:
        """Continue both streams from :meth:`rng_state`'s ``state``. The probe generators
        are made again, each from its saved state when the layer next runs on its device.

        A generator's state is a device kind's own format: the CPU one Mersenne Twister's
        (5056 bytes), a CUDA one Philox's seed and offset (16 bytes), the same on every CUDA
        device. So a saved state goes only to a generator of its device's kind: on a CPU
        run the ``cpu`` entry, on a CUDA run the entry of that device, or the one CUDA entry
        there is (a process draws on one device, whose index a restart may change). A CUDA
        state resumed on the CPU (or the reverse) is left unused: that probe stream starts
        from the seed, as a change of device never continues a run bit for bit anyway."""
        self._rng.set_state(state["terms"])
        self._vecs = {}
        self._saved_vecs = dict(state.get("probes") or {})

    def _saved_probes(self, device: torch.device) -> Tensor | None:
        """The restored state of ``device``'s probe generator (see :meth:`set_rng_state`)."""
        if str(device) in self._saved_vecs:
            return self._saved_vecs.pop(str(device))
        same = [k for k in self._saved_vecs if torch.device(k).type == device.type]
        if device.type == "cuda" and len(same) == 1:
            return self._saved_vecs.pop(same[0])
        return None

    def _estimate(self, x: Tensor, ws: list[Tensor], fixed: int) -> tuple[Tensor, Tensor]:
        """``(g(x), logdet)``: the unbiased estimate with the Neumann-series gradient."""
        want_grad = torch.is_grad_enabled()
        count = fixed + self._draw()
        weights = roulette_weights(count, fixed, self.dist)
        with torch.enable_grad():
            xi = x if x.requires_grad else x.detach().requires_grad_(True)
            g = self.g(xi, ws)
            v = torch.randn(
                x.shape, generator=self._probes(x.device), dtype=x.dtype, device=x.device
            )
            vjp, neumann = v, v
            est = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
            for k in range(1, count + 1):  # vjp = v^T J^k
                vjp = torch.autograd.grad(g, xi, vjp, retain_graph=True)[0]
                est = est + ((-1) ** (k + 1) / k * weights[k - 1]) * (vjp * v).flatten(1).sum(1)
                neumann = neumann + ((-1) ** k * weights[k - 1]) * vjp
            if want_grad:
                vjac = torch.autograd.grad(g, xi, neumann.detach(), create_graph=True)[0]
                surrogate = (vjac * v).flatten(1).sum(1)
                logdet = est.detach() + (surrogate - surrogate.detach())
            else:
                logdet = est.detach()
        return (g if want_grad else g.detach()), logdet

    def estimate_logdet(self, x: Tensor, fixed: int | None = None) -> Tensor:
        """One draw of the estimator at ``x`` (no gradient), with ``fixed`` always-computed
        terms (default: training's ``terms``)."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self._estimate(x, self.weights(), self.terms if fixed is None else fixed)[1]
        finally:
            self.train(was)

    def _logdet(self, x: Tensor, ws: list[Tensor]) -> tuple[Tensor, Tensor]:
        if self.exact:
            g = self.g(x, ws)
            return g, self._exact(x, ws)
        return self._estimate(x, ws, self.terms if self.training else self.eval_terms)

    # ---- the bijection ---------------------------------------------------------------------
    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        g, logdet = self._logdet(x, self.weights())
        return x + g, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        ws = self.weights()
        tol = INVERSE_TOL.get(y.dtype, 1e-6) * (1.0 + float(y.detach().abs().max()))
        # differentiable when grad is enabled (the unrolled iteration's derivative converges
        # to (I + J)^-1 at the same rate); sampling runs it under no_grad
        x = y - self.g(y, ws)
        for i in range(MAX_INVERSE_ITERS):
            nxt = y - self.g(x, ws)
            step = (nxt - x).detach()
            x = nxt
            if i % 8 == 7 and float(step.abs().max()) <= tol:  # a sync every 8 steps
                break
        _, logdet = self._logdet(x, ws)
        return x, -logdet
