"""The base of flowspec's torch modules, and the helpers the layer kinds share.

Every layer kind is one :class:`FlowLayer` subclass, constructed as
``Cls(shape, args, cond_channels)`` where ``shape`` is the ``(C, H, W)`` of one input
sample, ``args`` holds *all* of the kind's arguments (defaults filled in by the caller)
and ``cond_channels`` is the channel count of the conditioning feature map, or ``None``
for an unconditional layer. A regular layer implements

* ``forward(x, cond=None) -> (y, logdet)`` and
* ``inverse(y, cond=None) -> (x, logdet)``,

where ``logdet`` has shape ``(B,)``, is in nats, and is the log-absolute-determinant of
the Jacobian of the map actually applied (so ``inverse`` returns minus the forward
log-determinant at the recovered point). ``out_shape`` is the ``(C, H, W)`` of the output.

Plain torch: every module of flowspec's vocabulary lives in ``flowspec/nn/``, one file per
kind named as its declaration in ``flowspec/layers/``, and imports torch at the top.
"""

from __future__ import annotations

import sys
import warnings
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "BOUNDED_SCALE_B",
    "MIN_INIT_STD",
    "SCALE_EPS",
    "TF32_DEVICES",
    "FlowLayer",
    "Module",
    "Shape",
    "batch_logdet",
    "bounded_scale",
    "cat_cond",
    "channel_init",
    "checkerboard_3d",
    "draws_random",
    "exact_products",
    "legacy_bind",
    "make_scale",
    "rng_layers",
    "sum_except_batch",
    "tanh_scale",
]

Shape = tuple[int, int, int]

#: Floor added to every bounded scale, ``scale = sigmoid(.) + SCALE_EPS``: the scale is then
#: strictly positive even when the sigmoid underflows, so every such layer stays invertible
#: and its log-determinant finite for any parameter value.
SCALE_EPS = 1e-4

#: ``b`` of ``scale=bounded`` (affine couplings, injectors): ``scale = exp(b tanh(raw))`` lies
#: in ``[e^-b, e^b]``, so one layer's inverse amplifies errors by at most ``e^b`` (the sigmoid
#: form: up to ``1 / SCALE_EPS = 1e4``). ``b = 1`` keeps the log-scale range of a Glow step
#: useful (x0.37 .. x2.7 per layer; ActNorm/InvConv carry the global scales) while a stack
#: of 48 couplings measured to stay at float32 rounding level (tests/test_deep_flows.py).
BOUNDED_SCALE_B = 1.0


_NAMES = ("torch", "nn", "F")


def legacy_bind(cls: type) -> None:
    """Bind ``torch``, ``nn``, ``F`` in the file of ``cls`` where that file set them to
    ``None`` (the old way of defining a module without importing torch; see
    :mod:`flowspec.layers.base`), with a DeprecationWarning naming the file and the change."""
    namespace = getattr(sys.modules.get(cls.__module__), "__dict__", {})
    unbound = [name for name in _NAMES if name in namespace and namespace[name] is None]
    if not unbound:
        return
    values = {"torch": torch, "nn": torch.nn, "F": torch.nn.functional}
    for name in unbound:
        namespace[name] = values[name]
    warnings.warn(
        f"module `{cls.__module__}` sets `{' = '.join(unbound)} = None` for flowspec to bind; "
        "this is deprecated: import torch there instead (`import torch`, `from torch import "
        "nn`, `import torch.nn.functional as F`)",
        DeprecationWarning,
        stacklevel=3,
    )


class Module(nn.Module):
    """``torch.nn.Module`` for plugins' networks, encoders and priors (``flowspec.Module``).

    The same as ``nn.Module``; a subclass defined in a file written the old way, which
    starts with ``torch = nn = F = None`` instead of importing torch, still works, with a
    DeprecationWarning (see :func:`legacy_bind`).
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        legacy_bind(cls)


class FlowLayer(Module):
    """Base of every layer module: stores the shapes, the arguments and the condition width.

    Args:
        shape: ``(C, H, W)`` of one input sample.
        args: all arguments of the layer kind, defaults already filled in.
        cond_channels: channels of the conditioning map (``None`` when unconditional).
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__()
        if len(shape) != 3 or any(int(v) < 1 for v in shape):
            raise ValueError(f"shape must be a positive (C, H, W) triple, got {shape!r}")
        c, h, w = (int(v) for v in shape)
        self.in_shape: Shape = (c, h, w)
        self.out_shape: Shape = (c, h, w)
        self.args: dict[str, Any] = dict(args)
        self.cond_channels: int | None = None if cond_channels is None else int(cond_channels)

    #: Set by the compiler (``flowspec.compile(..., checkpoint=True)``): recompute the
    #: parameter network during backward instead of keeping its activations.
    checkpoint_net: bool = False
    #: Set by the compiler (``autocast=...``, or for one call when the model runs under the
    #: caller's ``torch.autocast``): the parameter network runs under autocast in this dtype.
    net_dtype: Any = None

    def run_net(self, net: nn.Module, inp: Tensor) -> Tensor:
        """Evaluate a parameter network on ``inp``; the result has ``inp``'s dtype.

        The networks only compute shifts, scales and mixture parameters, so they may run in
        low precision (``net_dtype``) and be recomputed in backward (``checkpoint_net``);
        casting their output back keeps the bijection and its log-determinant in the
        stream's precision.
        """
        if self.net_dtype is not None:
            with torch.autocast(inp.device.type, dtype=self.net_dtype):
                out = self._net_call(net, inp)
        else:
            out = self._net_call(net, inp)
        return out.to(inp.dtype)

    def _net_call(self, net: nn.Module, inp: Tensor) -> Tensor:
        if self.checkpoint_net and torch.is_grad_enabled():
            # A network with active dropout draws random numbers: the recomputation in
            # backward must draw the same ones, or the gradients are those of another mask.
            # Stashing the RNG state costs a copy per call, so only such networks pay it.
            return checkpoint(
                net,
                inp,
                use_reentrant=False,
                preserve_rng_state=net.training and draws_random(net),
            )
        return net(inp)

    def extra_repr(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"in={self.in_shape}, out={self.out_shape}" + (f", {shown}" if shown else "")

    def _cond(self, cond: Tensor | None, x: Tensor) -> Tensor | None:
        """Validate the condition: required for conditional layers, ignored otherwise."""
        if self.cond_channels is None:
            return None
        if cond is None:
            raise ValueError(f"{type(self).__name__} is conditional but got cond=None")
        expected = (x.shape[0], self.cond_channels, x.shape[2], x.shape[3])
        if tuple(cond.shape) != expected:
            raise ValueError(
                f"{type(self).__name__} expects cond of shape {expected}, got {tuple(cond.shape)}"
            )
        return cond


#: Device types whose float32 matrix products may run in TF32 (tests add ``"cpu"``).
TF32_DEVICES: tuple[str, ...] = ("cuda",)


class _IeeeMatmul:
    """Float32 matrix products in full precision (no TF32) inside the block, restored after."""

    def __enter__(self) -> None:
        matmul = torch.backends.cuda.matmul
        if hasattr(matmul, "fp32_precision"):  # torch >= 2.9: only the new API, never mixed
            self.saved = matmul.fp32_precision
            matmul.fp32_precision = "ieee"
        else:
            self.saved = matmul.allow_tf32
            matmul.allow_tf32 = False

    def __exit__(self, *exc: Any) -> None:
        matmul = torch.backends.cuda.matmul
        if hasattr(matmul, "fp32_precision"):
            matmul.fp32_precision = self.saved
        else:
            matmul.allow_tf32 = self.saved


def exact_products(t: Tensor | str) -> Any:
    """A context (for a tensor's device, or a device type) in which the invertible maps' own
    products (1x1 convolution weights and mixing, iSDP's blocks, their LU factors and
    log-determinants) run in full float32.

    TF32 keeps 10 mantissa bits: a map and its inverse computed in it disagree by ~1e-3,
    and so would the log-determinant and the map actually applied. The parameter networks
    are left to torch's global flags (cuDNN convolutions TF32 by default, matmuls as
    ``torch.set_float32_matmul_precision`` says). Inside a graph being compiled this is a
    no-op: :class:`flowspec.build.FlowModel` runs a compiled loop under it as a whole."""
    device_type = t if isinstance(t, str) else t.device.type
    if device_type not in TF32_DEVICES or torch.compiler.is_compiling():
        return nullcontext()
    return _IeeeMatmul()


def draws_random(net: nn.Module) -> bool:
    """Whether a network draws random numbers in training mode: it holds a dropout module
    with ``p > 0``, or a module with a positive float ``dropout`` attribute (a rate that it
    passes to a functional op, as attention's ``dropout_p`` does). Cached on the network."""
    cached = net.__dict__.get("_draws_random")
    if cached is None:
        dropout = nn.modules.dropout._DropoutNd
        cached = any(
            (isinstance(m, dropout) and m.p > 0)
            or (isinstance(getattr(m, "dropout", None), float) and m.dropout > 0)
            for m in net.modules()
        )
        net.__dict__["_draws_random"] = cached
    return cached


def rng_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules of ``model`` that draw from random generators of their own (a residual
    block's term counts and Hutchinson vectors), by module name: those with
    ``rng_state() -> dict`` (CPU tensors and plain values) and ``set_rng_state(dict)``. The
    runtime saves those states per rank in checkpoints and keeps validation and sampling
    from moving them."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if callable(getattr(m, "rng_state", None)) and callable(getattr(m, "set_rng_state", None))
    ]


def cat_cond(x: Tensor, cond: Tensor | None) -> Tensor:
    """Concatenate the condition to a network input along channels (no-op without one)."""
    return x if cond is None else torch.cat([x, cond.to(x.dtype)], dim=1)


def sum_except_batch(t: Tensor) -> Tensor:
    """Sum a ``(B, ...)`` tensor to shape ``(B,)``."""
    return t.reshape(t.shape[0], -1).sum(dim=1)


def batch_logdet(value: Tensor, x: Tensor) -> Tensor:
    """Broadcast a sample-independent log-determinant (a scalar) to shape ``(B,)``.

    An expanded view, not a copy: one op instead of two on every call of actnorm and the 1x1
    convolution (writing into it in place raises instead of silently sharing).
    """
    return value.to(x.dtype).expand(x.shape[0])


def bounded_scale(raw: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(scale, log scale)`` with ``scale = sigmoid(raw + 2) + SCALE_EPS``.

    The scale lies in ``(SCALE_EPS, 1 + SCALE_EPS)``: bounded above (training cannot blow
    activations up) and strictly positive (the map is invertible for any ``raw``). The shift
    by 2 makes a zero-initialised network start close to the identity (scale ~ 0.88).
    """
    scale = torch.sigmoid(raw + 2.0) + SCALE_EPS
    return scale, torch.log(scale)


def tanh_scale(raw: Tensor) -> tuple[Tensor, Tensor]:
    """Return ``(scale, log scale)`` with ``log scale = b tanh(raw)`` exactly, ``b =``
    :data:`BOUNDED_SCALE_B`: the scale lies in ``[e^-b, e^b]`` and is 1 for ``raw = 0`` (a
    zero-initialised network starts as the identity)."""
    log_scale = BOUNDED_SCALE_B * torch.tanh(raw)
    return torch.exp(log_scale), log_scale


def make_scale(kind: str):
    """The ``(scale, log scale)`` function of a ``scale=`` argument: sigmoid or bounded."""
    if kind == "sigmoid":
        return bounded_scale
    if kind == "bounded":
        return tanh_scale
    raise ValueError(f"unknown scale {kind!r}; expected 'sigmoid'/'bounded'")


def checkerboard_3d(shape: Shape, complement: bool = False) -> Tensor:
    """The 3-D checkerboard ``M[c, h, w] = (c + h + w) % 2`` as a bool tensor (or ``1 - M``)."""
    c, h, w = shape
    idx = torch.arange(c).view(c, 1, 1) + torch.arange(h).view(1, h, 1)
    idx = idx + torch.arange(w).view(1, 1, w)
    mask = (idx % 2) == 1
    return ~mask if complement else mask


#: A channel whose batch standard deviation is below this is treated as constant by the
#: data-dependent initialisations (actnorm, cond_actnorm): ``1 / std`` would be enormous.
MIN_INIT_STD = 1e-6


def channel_init(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(mean, log_scale)`` per channel of a batch, with ``log_scale = -log std`` (0 for a
    constant channel), averaged over the ranks of ``torch.distributed`` so that every
    replica starts identical. In float64; no gradient."""
    with torch.no_grad():
        xs = x.detach().transpose(0, 1).reshape(x.shape[1], -1).to(torch.float64)
        moments = torch.stack([xs.mean(dim=1), (xs * xs).mean(dim=1)])
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(moments)
            moments /= dist.get_world_size()
        mean, second = moments[0], moments[1]
        std = (second - mean * mean).clamp_min(0.0).sqrt()
        log_scale = torch.where(std > MIN_INIT_STD, -torch.log(std.clamp_min(MIN_INIT_STD)), 0.0)
    return mean, log_scale
