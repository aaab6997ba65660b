"""Build a FlowModel (torch) from the layer list of a checked spec (its IR).

The model holds one module and one :class:`LayerRecord` per layer of the IR, in order, so a
forward pass is a plain loop over them. Condition encoders run once per call and
their features are resampled once per resolution that a layer needs (its kind's
``cond_hw``: the layer's own H×W, or the condition's full size for C-Glow's kinds).

Speed and memory options (``compile(..., channels_last=, compile=, checkpoint=,
autocast=)``, also :meth:`FlowModel.configure`) change how the same function is computed,
never the parameters or the ``state_dict``: channels-last memory format, ``torch.compile`` of
the forward and inverse loops, gradient checkpointing of the parameter networks, and
low-precision autocast of those networks only, so that the bijection and its
log-determinant stay in the model's dtype. See docs/performance.md.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import condflow
from .build_options import (  # noqa: F401 - the backend check's names are used from here
    CompileBackendError,
    active_autocast,
    autocast_option,
    check_compile_backend,
    compile_failure,
)
from .errors import Span
from .ir import FlowSpec
from .kinds import ENCODERS, PRIORS, prior_args
from .nn._resample import bilinear
from .nn.base import exact_products
from .records import FlowRuntimeError, LayerRecord, cond_width, layer_modules, layer_records

LOG_2PI = math.log(2 * math.pi)


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
        #: one record per layer of the IR, in order; ``layers[i]`` is its module
        self.records: list[LayerRecord] = layer_records(spec)
        self.layers = layer_modules(spec)
        self.encoders = nn.ModuleDict(
            {  # a condition modelled by a flow: that flow's model
                c.name: FlowModel(c.flow)
                if c.flow is not None
                else ENCODERS[c.encoder.kind].module_class()(tuple(c.shape), dict(c.encoder.args))
                for c in spec.conditions
            }
        )
        prior = spec.prior
        self.prior = PRIORS[prior.kind].module_class()(
            tuple(spec.latents[-1].shape), prior_args(prior), cond_width(spec, prior.on)
        )
        self.latent_shapes = [tuple(z.shape) for z in spec.latents]
        self._actnorms = [m for m in self.layers if hasattr(m, "_init_seen")]
        self.options: dict[str, Any] = {}
        self._channels_last = False
        self._net_dtype: torch.dtype | None = None
        self._compiled: dict[str, Callable] = {}
        self._compiled_sizes: dict[tuple[str, bool], int] = {}  # batch size per loop, mode
        self._compiled_dynamic = False

    @property
    def paths(self) -> list[str]:
        """The layers' paths, in order (``paths[i]`` is the path of ``layers[i]``)."""
        return [r.path for r in self.records]

    @property
    def spans(self) -> list[Span]:
        """The layers' spans in the .flow source, in order."""
        return [r.span for r in self.records]

    # ---- options
    def configure(
        self,
        *,
        channels_last: bool = False,
        compile: bool | str | dict = False,
        checkpoint: bool = False,
        autocast: bool | torch.dtype = False,
    ) -> FlowModel:
        """Set how the model computes (see :func:`compile`); returns ``self``.

        The function computed is unchanged (up to floating-point rounding, and up to the
        precision of ``autocast``), and so are the parameters and the ``state_dict``.
        """
        net_dtype = autocast_option(autocast)
        self.options = {
            "channels_last": bool(channels_last),
            "compile": compile,
            "checkpoint": bool(checkpoint),
            "autocast": net_dtype,
        }
        if bool(channels_last) != self._channels_last:
            self.to(
                memory_format=torch.channels_last if channels_last else torch.contiguous_format
            )
            self._channels_last = bool(channels_last)
        self._net_dtype = net_dtype
        for layer in self.layers:
            layer.checkpoint_net = bool(checkpoint)
            layer.net_dtype = net_dtype
        self._compiled = {}
        self._compiled_sizes = {}
        self._compiled_dynamic = False
        if compile:
            kwargs = (
                dict(compile)
                if isinstance(compile, dict)
                else {"backend": compile}
                if isinstance(compile, str)
                else {}
            )
            self._compiled_dynamic = bool(kwargs.get("dynamic"))
            check_compile_backend(kwargs.get("backend"))
            # Unbound functions: a deep copy of the model shares them and stays correct.
            self._compiled = {
                "forward": torch.compile(FlowModel._forward_layers, **kwargs),
                "inverse": torch.compile(FlowModel._inverse_layers, **kwargs),
            }
        return self

    def _run(self, name: str, eager: Callable, device_type: str, *args: Any) -> Any:
        """Run the forward or inverse loop, compiled when asked for and possible."""
        amp = active_autocast(device_type)
        if amp is None:
            return self._call(name, eager, device_type, *args)
        # Under the caller's autocast only the parameter networks run in low precision; the
        # bijection (1x1 convolutions, attention, splits) and the log-determinants do not.
        with torch.autocast(device_type, enabled=False), self._nets_in(amp):
            return self._call(name, eager, device_type, *args)

    def _call(self, name: str, eager: Callable, device_type: str, *args: Any) -> Any:
        compiled = self._compiled.get(name)
        # actnorm's data-dependent init runs once, eagerly, not inside a compiled graph
        if compiled is None or (self.training and not all(m._init_seen for m in self._actnorms)):
            return eager(self, *args)
        # A compiled loop serves the batch size of its first call (per mode): another size
        # (the last, short validation chunk; a sample grid) runs eagerly instead of
        # recompiling, which costs far more than the one eager call.
        first = args[0] if isinstance(args[0], Tensor) else args[0][0]
        size = self._compiled_sizes.setdefault((name, self.training), first.shape[0])
        if size != first.shape[0] and not self._compiled_dynamic:
            return eager(self, *args)
        try:
            with exact_products(device_type):  # the layers cannot switch TF32 in a graph
                return compiled(self, *args)
        except Exception as e:
            out = eager(self, *args)  # raises the error located at its layer, if it is one
            # The compiler failed, not the model (no C compiler, missing headers, no
            # Triton): go on eagerly, saying so once.
            self._compiled = {}
            reason = compile_failure(e)
            print(
                f"flowspec: warning: torch.compile failed ({reason}); running eagerly",
                file=sys.stderr,
            )
            return out

    @contextmanager
    def _nets_in(self, dtype: torch.dtype) -> Iterator[None]:
        saved = [layer.net_dtype for layer in self.layers]
        for layer in self.layers:
            layer.net_dtype = dtype
        try:
            yield
        finally:
            for layer, d in zip(self.layers, saved):
                layer.net_dtype = d

    # ---- conditions
    def _features(
        self,
        cond: dict[str, Tensor] | None,
        batch: int,
        check_labels: bool = True,
        cond_logp: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """The encoders' features of the conditions; ``cond_logp``, when given, receives
        ``log p(y)`` per sample of each condition modelled by a flow."""
        if not self.spec.conditions:
            return {}
        if cond is None:
            names = ", ".join(
                f"{c.name} ({c.type} {c.shape[0]}: ({batch},) class ids)"
                if c.type == "class"
                else c.name
                for c in self.spec.conditions
            )
            raise ValueError(
                f"flow `{self.spec.name}` is conditional: pass cond={{...}} with {names}"
            )
        feats: dict[str, Any] = {}
        logps = {} if cond_logp is None else cond_logp
        for c in self.spec.conditions:
            if c.name not in cond:
                what = (
                    f"class {c.shape[0]}: a ({batch},) tensor of class ids"
                    if c.type == "class"
                    else f"{c.type} {_fmt(c.shape)}"
                )
                raise ValueError(
                    f"missing condition `{c.name}` ({what}, "
                    f"declared at {c.span.file}:{c.span.line})"
                )
            t = cond[c.name]
            if c.flow is not None:  # its own flow: log p(y) and the outputs of its layers
                param = next(self.parameters())
                y = condflow.label_input(c, t.to(param.device)).to(param.dtype)
                logps[c.name], feats[c.name] = condflow.run_with_taps(self.encoders[c.name], y)
                continue
            if c.type == "class":
                t = _class_one_hot(c, t, batch, check_labels)
            elif c.type == "labels" and t.dim() == 3:
                t = F.one_hot(t.long(), c.shape[0]).permute(0, 3, 1, 2)
            param = next(self.parameters())
            t = t.to(device=param.device, dtype=param.dtype)
            if tuple(t.shape[1:]) != tuple(c.shape) or t.shape[0] != batch:
                raise ValueError(
                    f"condition `{c.name}` must have shape ({batch}, "
                    f"{', '.join(map(str, c.shape))}) as declared at "
                    f"{c.span.file}:{c.span.line}, got {tuple(t.shape)}"
                )
            if self._channels_last:
                t = t.contiguous(memory_format=torch.channels_last)
            amp = self._net_dtype
            with torch.autocast(t.device.type, dtype=amp) if amp else nullcontext():
                feats[c.name] = self.encoders[c.name](t).to(t.dtype)
        return feats

    def _at(
        self, feats: dict[str, Tensor], cache: dict, name: str | None, hw, position: Any = None
    ) -> Tensor | None:
        if name is None:
            return None
        if isinstance(feats[name], dict):  # a flow's layer outputs: the one at the position
            return feats[name][position]
        key = (name, hw[0], hw[1])
        if key not in cache:
            f = feats[name]
            own = getattr(self.encoders[name], "features_at", None)  # the encoder's own rule
            if own is not None:
                f = own(f, (int(hw[0]), int(hw[1])))
            elif f.shape[2:] == (1, 1):  # a class condition's features: the same at every pixel
                f = f.expand(-1, -1, *hw)
            elif tuple(f.shape[2:]) != tuple(hw):
                down = f.shape[2] > hw[0]
                f = bilinear(f, hw, antialias=down)  # deterministic on CUDA when asked
            cache[key] = f
        return cache[key]

    def _checked(self, r: LayerRecord | None, ld: Tensor, x: Tensor) -> Tensor:
        """``ld`` when it is one log-det per sample, ``(B,)``; else an error naming layer ``r``
        (``None``: the prior), which summing would broadcast or fail far from the cause."""
        if ld.shape == (x.shape[0],):
            return ld
        path, span = ("prior", self.spec.prior.span) if r is None else (r.path, r.span)
        raise FlowRuntimeError(
            path,
            span,
            f"its log-det has shape {tuple(ld.shape)}; a layer "
            f"returns one log-det per sample, shape ({x.shape[0]},)",
        )

    # ---- the bijection
    def _check_input(self, x: Tensor) -> None:
        """A batch of the wrong shape is a ValueError naming the spec's `input` line (layers
        such as squeeze would otherwise accept many wrong sizes silently)."""
        want = tuple(self.spec.input)
        if not isinstance(x, Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != want:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            s = self.spec.input_span
            where = f", declared by `input` at {s.file}:{s.line}" if s else ""
            raise ValueError(
                f"flow `{self.spec.name}` takes images of shape (B, "
                f"{', '.join(map(str, want))}), i.e. C×H×W = {_fmt(want)}"
                f"{where}; got a batch of shape {got}"
            )

    def forward(
        self,
        x: Tensor,
        cond: dict[str, Tensor] | None = None,
        *,
        check_labels: bool = True,
        with_cond_logp: bool = False,
    ) -> tuple[list[Tensor], Tensor] | tuple[list[Tensor], Tensor, dict[str, Tensor]]:
        """``(zs, logdet)``; with ``with_cond_logp``, ``(zs, logdet, cond_logp)``: ``log p(y)``
        per sample of each condition modelled by a flow (``encoder=flow(...)``), by name
        (empty when none is). ``check_labels=False`` skips the range check of class ids (it
        reads them on the host, a device synchronisation): for labels already checked, as
        the trainer's, checked when the data were loaded."""
        self._check_input(x)
        cond_logp: dict[str, Tensor] = {}
        feats = self._features(cond, x.shape[0], check_labels, cond_logp)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        zs, logdet = self._run("forward", FlowModel._forward_layers, x.device.type, x, feats)
        return (zs, logdet, cond_logp) if with_cond_logp else (zs, logdet)

    def _forward_layers(
        self, x: Tensor, feats: dict[str, Tensor], taps: dict | None = None
    ) -> tuple[list[Tensor], Tensor]:
        """The forward loop; ``taps`` (a condition's own flow) collects every layer's output
        by position, and the final latent before the prior under ``None``."""
        cache: dict = {}
        logdet = x.new_zeros(x.shape[0])
        zs: list[Tensor] = []
        for r, layer in zip(self.records, self.layers):
            c = self._at(feats, cache, r.on, r.cond_hw, r.tap)
            try:
                if r.emits_latent:
                    x, z, ld = layer(x, c)
                    zs.append(z)
                else:
                    x, ld = layer(x, c)
            except (RuntimeError, ValueError) as e:
                raise r.error(e) from e
            logdet = logdet + self._checked(r, ld, x)
            if taps is not None and r.position is not None:
                taps[r.position] = zs[-1] if r.emits_latent else x  # a split: its latent
        if taps is not None:
            taps[None] = x
        z, ld = self.prior(x, self._at(feats, cache, self.spec.prior.on, x.shape[2:]))
        zs.append(z)
        return zs, logdet + self._checked(None, ld, z)

    def inverse(
        self,
        zs: list[Tensor],
        cond: dict[str, Tensor] | None = None,
        *,
        return_logdet: bool = False,
    ):
        """``x`` from latents (as returned by ``forward``); optionally with the inverse's
        log-determinant."""
        if len(zs) != len(self.latent_shapes):
            raise ValueError(
                f"expected {len(self.latent_shapes)} latents "
                f"({', '.join(_fmt(s) for s in self.latent_shapes)}), got {len(zs)}"
            )
        feats = self._features(cond, zs[0].shape[0])
        if self._channels_last:
            zs = [z.contiguous(memory_format=torch.channels_last) for z in zs]
        x, logdet = self._run("inverse", FlowModel._inverse_layers, zs[0].device.type, zs, feats)
        return (x, logdet) if return_logdet else x

    def _inverse_layers(self, zs: list[Tensor], feats: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        cache: dict = {}
        top = zs[-1]
        x, logdet = self.prior.inverse(
            top, self._at(feats, cache, self.spec.prior.on, top.shape[2:])
        )
        logdet = self._checked(None, logdet, top)
        k = len(zs) - 2
        for i in range(len(self.layers) - 1, -1, -1):
            r, layer = self.records[i], self.layers[i]
            c = self._at(feats, cache, r.on, r.cond_hw, r.tap)
            try:
                if r.emits_latent:
                    x, ld = layer.inverse(x, zs[k], c)
                    k -= 1
                else:
                    x, ld = layer.inverse(x, c)
            except (RuntimeError, ValueError) as e:
                raise r.error(e) from e
            logdet = logdet + self._checked(r, ld, x)
        return x, logdet

    def log_prob(self, x: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """log p(x) in nats per sample (continuous density)."""
        zs, logdet = self(x, cond)
        return self.latent_logp(zs) + logdet

    def joint_log_prob(self, x: Tensor, cond: dict[str, Tensor] | None = None) -> Tensor:
        """``log p(x | y) + sum log p(y_k)`` over the conditions modelled by a flow
        (``encoder=flow(...)``): Full-Glow's joint likelihood. Equals ``log_prob`` when no
        condition has a flow."""
        zs, logdet, cond_logp = self(x, cond, with_cond_logp=True)
        logp = self.latent_logp(zs) + logdet
        return logp + sum(cond_logp.values()) if cond_logp else logp

    def latent_logp(self, zs: list[Tensor]) -> Tensor:
        """``sum_i log p(zs_i)`` of standardised latents: N(0, I) for the split latents and,
        for the top one, the prior's ``log_density`` (N(0, I) when it has none)."""
        top = getattr(self.prior, "log_density", standard_normal_logp)
        return sum(standard_normal_logp(z) for z in zs[:-1]) + top(zs[-1])

    @torch.no_grad()
    def sample(
        self,
        n: int,
        temperature: float = 0.7,
        cond: dict[str, Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        param = next(self.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        zs = [
            temperature * torch.randn((n, *s), device=device, dtype=dtype, generator=generator)
            for s in self.latent_shapes[:-1]
        ]
        noise = getattr(self.prior, "sample_noise", None)
        top = (n, *self.latent_shapes[-1])
        zs.append(
            temperature
            * (
                noise(top, device=device, dtype=dtype, generator=generator)
                if noise
                else torch.randn(top, device=device, dtype=dtype, generator=generator)
            )
        )
        return self.inverse(zs, cond)

    # ---- reporting
    def summary(self) -> str:
        """Parameters per layer and measured activation memory (see :mod:`.summary`)."""
        from .summary import summary

        return summary(self)


def _fmt(shape) -> str:
    return "x".join(str(d) for d in shape)


def _class_one_hot(c: Any, labels: Any, batch: int, check_range: bool = True) -> Tensor:
    """``(B, N, 1, 1)`` one-hot of a class condition's integer labels, checked: a ``(B,)``
    integer tensor (or list) with values in ``0..N-1`` (unless ``check_range`` is false), or
    one int for the whole batch."""
    n = c.shape[0]
    where = f"condition `{c.name}` (class {n}, declared at {c.span.file}:{c.span.line})"
    try:  # a tensor, or an int / list / array of ints
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"{where} takes a ({batch},) tensor of class ids, got {type(labels).__name__}"
        ) from None
    if labels.dim() == 0:
        labels = labels.expand(batch)
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"{where} takes integer class ids (e.g. torch.long), got {labels.dtype}")
    if tuple(labels.shape) != (batch,):
        raise ValueError(
            f"{where} takes one class id per sample, a tensor of shape ({batch},), "
            f"got {tuple(labels.shape)}"
        )
    if check_range and batch and (int(labels.min()) < 0 or int(labels.max()) >= n):
        bad = labels[(labels < 0) | (labels >= n)]
        raise ValueError(f"{where} takes class ids 0..{n - 1}, got {int(bad[0])}")
    return F.one_hot(labels.long(), n).view(batch, n, 1, 1)


def compile(
    spec: FlowSpec | str | os.PathLike,
    device: str | torch.device = "auto",
    seed: int = 0,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    channels_last: bool = False,
    compile: bool | str | dict = False,
    checkpoint: bool = False,
    autocast: bool | torch.dtype = False,
) -> FlowModel:
    """Build the FlowModel of a spec; parameters are a deterministic function of ``seed``.

    The options change how the model computes, not what (nor its parameters or its
    ``state_dict``):

    * ``channels_last``: parameters, the input and the conditions in channels-last memory
      format, so that the parameter networks' convolutions run NHWC kernels (oneDNN on
      CPU, cuDNN with autocast on CUDA).
    * ``compile``: ``torch.compile`` the forward and inverse loops; ``True`` for the default
      backend (inductor), a string for a backend (``"aot_eager"``), a dict for its keyword
      arguments. Actnorm's data-dependent init still runs eagerly on the first batch.
    * ``checkpoint``: recompute the coupling / injector networks during backward instead of
      storing their activations (less memory, about one more network forward per step).
    * ``autocast``: run those networks (and condition encoders) under ``torch.autocast`` in
      bfloat16 (``True``) or the given dtype; the bijection and every log-determinant stay in
      the model's dtype. A model called under the caller's own ``torch.autocast`` behaves
      the same way, with the caller's dtype.
    """
    from .flowgraph import _as_spec

    if dtype in (torch.float16, torch.bfloat16):
        raise ValueError(
            f"dtype={dtype} is not supported: the invertible maps' LU "
            "factorisations and solves have no half-precision kernels; keep "
            "float32 and pass autocast= to run the networks in half precision"
        )
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
    return model.configure(
        channels_last=channels_last, compile=compile, checkpoint=checkpoint, autocast=autocast
    )
