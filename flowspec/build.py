"""Build a FlowModel (torch) from the FlowGraph of a checked spec.

The graph is flattened into one straight sequence of layer modules, so a forward pass is
a plain loop with no per-call graph walking. Condition encoders run once per call and
their features are resampled once per resolution that a layer needs.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import Span
from .flowgraph import graph as build_graph
from .flowgraph import layer_sequence
from .ir import FlowSpec
from .layers import ENCODERS, MODULES

LOG_2PI = math.log(2 * math.pi)


class FlowRuntimeError(RuntimeError):
    """An error inside a layer, re-raised with the layer's path and its .flow span."""

    def __init__(self, path: str, span: Span | None, message: str):
        where = f" ({span.file}:{span.line}:{span.column})" if span else ""
        super().__init__(f"in layer `{path}`{where}: {message}")
        self.path = path
        self.span = span


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def standard_normal_logp(z: Tensor) -> Tensor:
    return -0.5 * (z.pow(2) + LOG_2PI).reshape(z.shape[0], -1).sum(1)


class FlowModel(nn.Module):
    """A compiled flow: ``x -> (zs, logdet)`` and back.

    The latents ``zs`` are standardised: under the model each is N(0, I), so
    ``log_prob(x) = sum_i log N(zs_i; 0, I) + logdet`` and sampling draws
    ``zs_i = T * N(0, I)`` (T = 0 gives the prior mean image).
    """

    def __init__(self, spec: FlowSpec):
        super().__init__()
        self.spec = spec
        g = build_graph(spec)
        self.graph = g
        self.paths: list[str] = []
        self.spans: list[Span] = []
        self.on: list[str | None] = []
        self.is_split: list[bool] = []
        layers = []
        for path, node in layer_sequence(g):
            on = node["on"]
            cond_ch = g.nodes[f"encoder:{on}"]["out_shape"][0] if on else None
            layers.append(MODULES[node["kind"]](tuple(node["in_shape"]), node["args"], cond_ch))
            self.paths.append(path)
            self.spans.append(Span(**node["span"]))
            self.on.append(on)
            self.is_split.append(node["kind"] == "split")
        self.layers = nn.ModuleList(layers)
        self.encoders = nn.ModuleDict({
            c.name: ENCODERS[c.encoder.kind](self._encoder_input(c), dict(c.encoder.args))
            for c in spec.conditions})
        prior = spec.prior
        prior_ch = g.nodes[f"encoder:{prior.on}"]["out_shape"][0] if prior.on else None
        self.prior = MODULES["prior.gaussian"](tuple(spec.latents[-1].shape),
                                               {"learned": prior.learned, "on": prior.on},
                                               prior_ch)
        self.latent_shapes = [tuple(z.shape) for z in spec.latents]

    @staticmethod
    def _encoder_input(c) -> tuple[int, int, int]:
        return tuple(c.shape)

    # ---- conditions
    def _features(self, cond: dict[str, Tensor] | None, batch: int) -> dict[str, Tensor]:
        if not self.spec.conditions:
            return {}
        if cond is None:
            names = ", ".join(c.name for c in self.spec.conditions)
            raise ValueError(f"flow `{self.spec.name}` is conditional: pass cond={{...}} with "
                             f"{names}")
        feats = {}
        for c in self.spec.conditions:
            if c.name not in cond:
                raise ValueError(f"missing condition `{c.name}` ({c.type} {_fmt(c.shape)}, "
                                 f"declared at {c.span.file}:{c.span.line})")
            t = cond[c.name]
            if c.type == "labels" and t.dim() == 3:
                t = F.one_hot(t.long(), c.shape[0]).permute(0, 3, 1, 2)
            param = next(self.parameters())
            t = t.to(device=param.device, dtype=param.dtype)
            if tuple(t.shape[1:]) != tuple(c.shape) or t.shape[0] != batch:
                raise ValueError(f"condition `{c.name}` must have shape ({batch}, "
                                 f"{', '.join(map(str, c.shape))}) as declared at "
                                 f"{c.span.file}:{c.span.line}, got {tuple(t.shape)}")
            feats[c.name] = self.encoders[c.name](t)
        return feats

    @staticmethod
    def _at(feats: dict[str, Tensor], cache: dict, name: str | None, hw) -> Tensor | None:
        if name is None:
            return None
        key = (name, hw[0], hw[1])
        if key not in cache:
            f = feats[name]
            if tuple(f.shape[2:]) != tuple(hw):
                down = f.shape[2] > hw[0]
                f = F.interpolate(f, size=tuple(hw), mode="bilinear", align_corners=False,
                                  antialias=down)
            cache[key] = f
        return cache[key]

    def _fail(self, i: int, e: Exception) -> FlowRuntimeError:
        return FlowRuntimeError(self.paths[i], self.spans[i], f"{type(e).__name__}: {e}")

    # ---- the bijection
    def forward(self, x: Tensor, cond: dict[str, Tensor] | None = None
                ) -> tuple[list[Tensor], Tensor]:
        feats = self._features(cond, x.shape[0])
        cache: dict = {}
        logdet = x.new_zeros(x.shape[0])
        zs: list[Tensor] = []
        for i, layer in enumerate(self.layers):
            c = self._at(feats, cache, self.on[i], x.shape[2:])
            try:
                if self.is_split[i]:
                    x, z, ld = layer(x, c)
                    zs.append(z)
                else:
                    x, ld = layer(x, c)
            except (RuntimeError, ValueError) as e:
                raise self._fail(i, e) from e
            logdet = logdet + ld
        z, ld = self.prior(x, self._at(feats, cache, self.spec.prior.on, x.shape[2:]))
        zs.append(z)
        return zs, logdet + ld

    def inverse(self, zs: list[Tensor], cond: dict[str, Tensor] | None = None, *,
                return_logdet: bool = False):
        """``x`` from latents (as returned by ``forward``); optionally with the inverse's
        log-determinant."""
        if len(zs) != len(self.latent_shapes):
            raise ValueError(f"expected {len(self.latent_shapes)} latents "
                             f"({', '.join(_fmt(s) for s in self.latent_shapes)}), got {len(zs)}")
        batch = zs[0].shape[0]
        feats = self._features(cond, batch)
        cache: dict = {}
        top = zs[-1]
        x, logdet = self.prior.inverse(top, self._at(feats, cache, self.spec.prior.on,
                                                     top.shape[2:]))
        k = len(zs) - 2
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            in_hw = layer.in_shape[1:]
            c = self._at(feats, cache, self.on[i], in_hw)
            try:
                if self.is_split[i]:
                    x, ld = layer.inverse(x, zs[k], c)
                    k -= 1
                else:
                    x, ld = layer.inverse(x, c)
            except (RuntimeError, ValueError) as e:
                raise self._fail(i, e) from e
            logdet = logdet + ld
        return (x, logdet) if return_logdet else x

    def log_prob(self, x: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """log p(x) in nats per sample (continuous density)."""
        zs, logdet = self(x, cond)
        return sum(standard_normal_logp(z) for z in zs) + logdet

    @torch.no_grad()
    def sample(self, n: int, temperature: float = 0.7, cond: dict[str, Tensor] | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        zs = [temperature * torch.randn((n, *s), device=device, dtype=dtype,
                                        generator=generator) for s in self.latent_shapes]
        return self.inverse(zs, cond)

    # ---- reporting
    def summary(self) -> str:
        rows = []
        total = 0
        for path, layer in zip(self.paths, self.layers):
            n = sum(p.numel() for p in layer.parameters())
            total += n
            rows.append((path, n, _fmt(layer.out_shape)))
        for name, enc in self.encoders.items():
            n = sum(p.numel() for p in enc.parameters())
            total += n
            rows.append((f"encoder:{name}", n, ""))
        n = sum(p.numel() for p in self.prior.parameters())
        total += n
        rows.append(("prior", n, _fmt(self.latent_shapes[-1])))
        width = max(len(r[0]) for r in rows)
        act = sum(math.prod(layer.out_shape) for layer in self.layers)
        bytes_per = 4
        lines = [f"{'path'.ljust(width)}  {'params':>12}  output"]
        lines += [f"{p.ljust(width)}  {n:>12,}  {s}" for p, n, s in rows]
        lines.append(f"{'total'.ljust(width)}  {total:>12,}  ({total * 4 / 2**20:.2f} MiB "
                     "float32)")
        lines.append(f"activations for one sample: {act:,} values "
                     f"({act * bytes_per / 2**20:.2f} MiB float32, x2-3 when training)")
        return "\n".join(lines)


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


def compile(spec: FlowSpec | str | os.PathLike, device: str | torch.device = "auto",
            seed: int = 0, *, flow: str | None = None,
            overrides: dict[str, Any] | None = None, dtype: torch.dtype | None = None
            ) -> FlowModel:
    """Build the FlowModel of a spec; parameters are a deterministic function of ``seed``."""
    from .flowgraph import _as_spec

    spec = _as_spec(spec, flow, overrides)
    dev = resolve_device(device)
    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices) if devices else nullcontext():
        if not devices:
            state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        model = FlowModel(spec)
        if not devices:
            torch.random.set_rng_state(state)
    model = model.to(dev)
    if dtype is not None:
        model = model.to(dtype)
    return model
