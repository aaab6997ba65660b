"""``flowspec verify``: the exactness harness for a flow, plugins included.

For every distinct layer of a flow (kind, arguments, channels, condition width), built at
the smallest spatial size its shape rule accepts (or at its real size with ``full``), its
parameters perturbed away from their initialisation, in float64:

* its log-det against ``slogdet`` of the brute-force autograd Jacobian,
* its inverse round trip, and the inverse's log-det against minus the forward one.

The top prior gets the same checks at ``C x 2 x 2`` (a conditional prior with a random
condition), plus its density: ``log_density`` normalised and ``sample_noise`` drawing from
it (see :mod:`.verify_prior`, which states the methods, sample counts and tolerances).

Then the whole model, at the smallest input size its levels accept: its log-det against
the Jacobian of ``x -> (z1..zL)`` (when that has at most ``MAX_MODEL_DIMS`` entries) and its
round trip. A check that raises is a failure with the error's text, never a traceback.
Every check seeds the global RNG with ``seed`` (networks are initialised from it) and
restores it afterwards, so the numbers are a function of ``seed`` alone.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from .errors import Span
from .ir import FlowSpec
from .kinds import KINDS, PRIORS, REGISTRIES, prior_args
from .numerics import jacobian_logdet, perturb_, random_cond
from .verify_prior import check_density
from .verify_reduce import NARROW, exact_mode, narrowed, reduced_model_spec, reduced_shape
from .verify_report import Check, Report

#: relative tolerance of log-dets, ``|measured - expected| <= TOL * (1 + |expected|)``
TOL = 1e-6
#: tolerance of round trips, ``max|x' - x| <= INVERSE_TOL * (1 + max|x|)`` (float64)
INVERSE_TOL = 1e-7
#: the whole model's Jacobian is computed up to this many input entries
MAX_MODEL_DIMS = 3072
_BATCH = 2
_INIT_BATCH = 32
_PERTURB = 0.3


def _cond_tensor(
    batch: int, channels: int | None, hw: tuple[int, int], gen: torch.Generator
) -> Tensor | None:
    if channels is None:
        return None
    return torch.randn((batch, channels, *hw), generator=gen, dtype=torch.float64)


def _inputs(module: Any, size: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Test points: N(0, 1), or inside the module's ``domain = (low, high)`` when it has one
    (e.g. ``logit``, defined on the data's [-1/2, 1/2))."""
    domain = getattr(module, "domain", None)
    if domain is None:
        return torch.randn(size, generator=gen, dtype=torch.float64)
    low, high = domain
    u = 0.05 + 0.9 * torch.rand(size, generator=gen, dtype=torch.float64)
    return low + (high - low) * u


def _flat(out: tuple[Tensor, ...]) -> Tensor:
    """A layer's output as one (B, N) tensor: ``y`` or, for a split, ``(y, z)``."""
    return torch.cat([t.reshape(t.shape[0], -1) for t in out[:-1]], dim=1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The global CPU RNG seeded with ``seed`` (networks initialise from it, dropout draws
    from it), and restored afterwards: the caller's random stream is unaffected."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """``module``'s parameters without ``requires_grad`` (restored afterwards): the Jacobian
    is taken with respect to the input only, and autograd then records nothing for a
    path that starts at parameters alone (a condition's network or flow)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def check_layer(
    kind_key: str,
    shape: tuple[int, int, int],
    args: dict[str, Any],
    cond_channels: int | None,
    *,
    seed: int = 0,
    path: str = "",
    device: str | torch.device = "cpu",
) -> Check:
    """Build one layer in float64 on ``device``, perturb it, and compare it with autograd.
    Parameters and test points are drawn on the CPU, so every device checks the same."""
    out = Check(path=path or kind_key, kind=kind_key, shape=shape, args=dict(args))
    start = time.perf_counter()
    try:
        with seeded(seed):
            _check_layer(out, KINDS[kind_key], shape, args, cond_channels, seed, device)
    except Exception as e:  # noqa: BLE001 - a layer that raises fails its check
        out.error = f"raised {type(e).__name__}: {e}"
    out.seconds = time.perf_counter() - start
    return out


def _check_layer(
    out: Check,
    kind: Any,
    shape: tuple[int, int, int],
    args: dict[str, Any],
    cond_channels: int | None,
    seed: int,
    device: str | torch.device = "cpu",
) -> Any:
    """Fill ``out``; returns the module (perturbed, in eval mode, on ``device``)."""
    gen = torch.Generator().manual_seed(seed)
    module = kind.module_class()(shape, dict(args), cond_channels).double().to(device)
    module.train()
    hw = kind.cond_hw(shape, args) if hasattr(kind, "cond_hw") else shape[1:]  # not priors
    with torch.no_grad():  # data-dependent initialisations
        module(
            _on(_inputs(module, (_INIT_BATCH, *shape), gen), device),
            _on(_cond_tensor(_INIT_BATCH, cond_channels, hw, gen), device),
        )
    x = _on(_inputs(module, (_BATCH, *shape), gen), device)
    cond = _on(_cond_tensor(_BATCH, cond_channels, hw, gen), device)
    perturb_(module, _PERTURB, gen)
    module.eval()
    with torch.no_grad():
        result = module(x, cond)
    logdet = result[-1]
    if tuple(logdet.shape) != (_BATCH,):
        out.error = (
            f"its log-det has shape {tuple(logdet.shape)}, expected ({_BATCH},): one "
            "value per sample"
        )
        return module

    def fn(xb: Tensor, *cb: Tensor | None) -> Tensor:
        return _flat(module(xb, *cb))

    # the Jacobian (the slow part of verify) of the first sample only: its copies never meet
    # the batch's other sample, so a map that mixes the samples of a batch still differs
    # from the batch's forward; the round trip below covers both samples
    with frozen(module):
        expected, _ = jacobian_logdet(fn, x[:1], None if cond is None else cond[:1])
    out.expected, out.measured = float(expected[0]), float(logdet[0])
    out.logdet_err = _rel(logdet[:1], expected)
    with torch.no_grad():
        x_rec, inv_logdet = module.inverse(*result[:-1], cond)
    out.inverse_err = _round_trip_err(x_rec, x)
    out.inverse_logdet_err = _rel(inv_logdet, -logdet)
    if not out.logdet_err <= TOL:
        out.error = _logdet_message(out, out.logdet_err)
    elif not out.inverse_err <= INVERSE_TOL:
        out.error = _inverse_message(x_rec, x, out.inverse_err, INVERSE_TOL)
    elif not out.inverse_logdet_err <= TOL:
        j = _worst(inv_logdet, -logdet)
        out.error = (
            f"the inverse's log-det {float(inv_logdet[j]):.10g} is not minus the "
            f"forward one, {float(-logdet[j]):.10g} (relative error "
            f"{out.inverse_logdet_err:.1e}, tolerance {TOL:g})"
        )
    return module


def _on(t: Any, device: str | torch.device) -> Any:
    """A tensor, a dict of tensors or None, on ``device``."""
    if isinstance(t, dict):
        return {k: v.to(device) for k, v in t.items()}
    return None if t is None else t.to(device)


def _worst(a: Tensor, b: Tensor) -> int:
    err = (a - b).abs() / (1.0 + b.abs())
    return int(torch.nan_to_num(err, nan=math.inf).argmax())


def _logdet_message(out: Check, err: float) -> str:
    return (
        f"measured log-det {out.measured:.10g}, expected log-det {out.expected:.10g} "
        f"(slogdet of the autograd Jacobian): relative error {err:.1e}, tolerance {TOL:g}"
    )


def _round_trip_err(x_rec: Tensor, x: Tensor) -> float:
    err = float((x_rec - x).abs().max()) / (1.0 + float(x.abs().max()))
    return err if math.isfinite(err) else math.inf


def _inverse_message(x_rec: Tensor, x: Tensor, err: float, tol: float) -> str:
    return (
        f"the inverse does not reproduce the input: max|x' - x| = "
        f"{float((x_rec - x).abs().max()):.1e}, relative {err:.1e} (tolerance {tol:g})"
    )


def _rel(a: Tensor, b: Tensor) -> float:
    err = ((a - b).abs() / (1.0 + b.abs())).max()
    return float(err) if torch.isfinite(err) else math.inf


def _data(batch: int, spec: FlowSpec, gen: torch.Generator) -> Tensor:
    """Images as the tasks feed them: dequantised, in [-1/2, 1/2)."""
    return torch.rand((batch, *spec.input), generator=gen, dtype=torch.float64) - 0.5


def check_model(
    spec: FlowSpec, *, full: bool = False, seed: int = 0, device: str | torch.device = "cpu"
) -> Check:
    """The whole model: log-det against autograd (when small enough) and round trip."""
    small = exact_mode(spec if full else reduced_model_spec(spec))
    out = Check(
        path=spec.name,
        kind="model",
        shape=tuple(small.input),
        count=len(spec.layers),
        where=_where(spec.span),
    )
    start = time.perf_counter()
    try:
        with seeded(seed):
            _check_model(out, small, seed, device)
    except Exception as e:  # noqa: BLE001
        out.error = f"raised {type(e).__name__}: {e}"
    out.seconds = time.perf_counter() - start
    return out


def _check_model(
    out: Check, small: FlowSpec, seed: int, device: str | torch.device = "cpu"
) -> None:
    from .build import compile as build

    gen = torch.Generator().manual_seed(seed)
    model = build(small, device="cpu", seed=seed).double().to(device)
    model.train()
    with torch.no_grad():  # data-dependent init on a batch large enough for its moments
        model(
            _on(_data(_INIT_BATCH, small, gen), device),
            _on(random_cond(small, _INIT_BATCH, gen), device),
        )
    perturb_(model, 0.05, gen)
    model.eval()
    x = _on(_data(_BATCH, small, gen), device)
    cond = _on(random_cond(small, _BATCH, gen), device)
    with torch.no_grad():
        zs, logdet = model(x, cond)
        x_rec, inv_logdet = model.inverse(zs, cond, return_logdet=True)
    out.measured = float(logdet[0])
    out.inverse_err = _round_trip_err(x_rec, x)
    out.inverse_logdet_err = _rel(inv_logdet, -logdet)
    if math.prod(small.input) <= MAX_MODEL_DIMS:
        names = list(cond) if cond else []

        def fn(xb: Tensor, *cb: Tensor) -> Tensor:
            z, _ = model(xb, dict(zip(names, cb)) if names else None)
            return torch.cat([t.flatten(1) for t in z], dim=1)

        # one sample: the Jacobian of a deep model is the slow part of verify
        one = [t[:1] for t in cond.values()] if cond else []
        with frozen(model):
            expected, _ = jacobian_logdet(fn, x[:1], *one)
        out.expected = float(expected[0])
        out.logdet_err = _rel(logdet[:1], expected)
        if not out.logdet_err <= TOL:
            out.error = _logdet_message(out, out.logdet_err)
    if out.error is None and not out.inverse_err <= INVERSE_TOL * 100:
        out.error = _inverse_message(x_rec, x, out.inverse_err, INVERSE_TOL * 100)
    if out.error is None and not out.inverse_logdet_err <= TOL:
        j = _worst(inv_logdet, -logdet)
        out.error = (
            f"the inverse's log-det {float(inv_logdet[j]):.10g} is not minus the "
            f"forward one, {float(-logdet[j]):.10g} (relative error "
            f"{out.inverse_logdet_err:.1e}, tolerance {TOL:g})"
        )


def check_prior(
    spec: FlowSpec, *, full: bool = False, seed: int = 0, device: str | torch.device = "cpu"
) -> Check:
    """The top prior: its bijection as a layer's (at ``C x 2 x 2``, or the latent's real size
    with ``full``; a conditional prior with a random condition of its width) on ``device``,
    then its density (:func:`.verify_prior.check_density`, on the CPU)."""
    p = spec.prior
    c, h, w = spec.latents[-1].shape
    shape = (c, h, w) if full else (c, min(2, h), min(2, w))
    args = prior_args(p)
    width = spec.cond_width(p.on) if p.on else None
    out = Check(path="prior", kind=f"prior.{p.kind}", shape=shape, args=args, where=_where(p.span))
    start = time.perf_counter()
    try:
        with seeded(seed):
            module = _check_layer(out, PRIORS[p.kind], shape, args, width, seed, device)
            with torch.no_grad():
                density = check_density(module.cpu(), shape, seed)
        out.log_z, out.sample_stat, out.density = (
            density.log_z,
            density.sample_stat,
            density.note,
        )
        out.error = out.error or density.error
    except Exception as e:  # noqa: BLE001 - a prior that raises fails its check
        out.error = out.error or f"raised {type(e).__name__}: {e}"
    out.seconds = time.perf_counter() - start
    return out


def _where(span: Span | None) -> str | None:
    return f"{span.file}:{span.line}:{span.column}" if span else None


def builtin(entry: type) -> bool:
    """Whether a registry entry (kind, net, encoder, prior) is part of flowspec itself."""
    return entry.__module__.startswith("flowspec.")


def plugin_defined(layer: Any) -> bool:
    """Whether a layer's kind, or a registry entry it names (``net=``), is a plugin's."""
    kind = KINDS[layer.kind]
    if not builtin(kind):
        return True
    for name, f in kind.Args.model_fields.items():
        registry = (
            (f.json_schema_extra or {}).get("registry")
            if isinstance(f.json_schema_extra, dict)
            else None
        )
        if (
            registry
            and layer.args.get(name) in REGISTRIES[registry]
            and not builtin(REGISTRIES[registry][layer.args[name]])
        ):
            return True
    return False


def verify(
    spec: FlowSpec,
    *,
    full: bool = False,
    seed: int = 0,
    model: bool = True,
    only: Callable[[Any], bool] | None = None,
    prior: bool = True,
    device: str | torch.device = "cpu",
) -> Report:
    """Check every distinct layer of ``spec`` (a checked FlowSpec), its prior, then the whole
    model, in float64 on ``device`` (the prior's density checks run on the CPU).

    ``only(layer)`` restricts the layer checks to the layers it accepts; ``prior=False`` and
    ``model=False`` leave out the prior's and the whole model's rows."""
    groups: dict[str, Check] = {}
    order: list[tuple[str, Any]] = []
    for layer in spec.layers:
        if only is not None and not only(layer):
            continue
        on = layer.args.get("on")
        width = spec.cond_width(on, layer) if on else None
        key = json.dumps(
            [
                layer.kind,
                layer.args,
                layer.in_shape[0],
                width,
                None if not full else layer.in_shape,
            ],
            sort_keys=True,
            default=str,
        )
        if key in groups:
            groups[key].count += 1
            continue
        kind = KINDS[layer.kind]
        shape = (
            tuple(layer.in_shape)
            if full
            else reduced_shape(kind, tuple(layer.in_shape), layer.args)
        )
        groups[key] = Check(path=layer.path, kind=layer.kind, shape=shape)
        order.append((key, (layer, width, shape)))
    checks = []
    for key, (layer, width, shape) in order:
        kind = KINDS[layer.kind]
        estimated = kind.estimates_logdet_for(layer.args)
        args = {**layer.args, **kind.exact_args} if estimated else layer.args
        c = check_layer(layer.kind, shape, args, width, seed=seed, path=layer.path, device=device)
        c.count, c.where = groups[key].count, _where(layer.span)
        checks.append(c)
        if estimated:
            e = check_estimator(layer.kind, shape, layer.args, width, seed=seed, path=layer.path)
            e.count, e.where = c.count, c.where
            checks.append(e)
    if prior:
        checks.append(check_prior(spec, full=full, seed=seed, device=device))
    if model:
        checks.append(check_model(spec, full=full, seed=seed, device=device))
    return Report(flow=spec.name, full=full, checks=checks, device=str(device))


#: The estimator check: ``ESTIMATOR_CALLS`` calls, each one Russian-roulette draw (the term
#: count is shared by a call's batch) on ``ESTIMATOR_REPEATS`` copies of each test point (each
#: copy its own Hutchinson vector); the mean of the per-call means must lie within
#: ``ESTIMATOR_Z`` standard errors (of those ``ESTIMATOR_CALLS`` per-call means, independent
#: draws) of the exact log-det. The layer is narrowed to ``ESTIMATOR_HIDDEN`` (its
#: ``hidden`` and alike): unbiasedness is a property of the series and its weights, not of
#: the width, and the exact-mode check above runs at the real width.
ESTIMATOR_CALLS = 64
ESTIMATOR_REPEATS = 128
ESTIMATOR_Z = 5.0
ESTIMATOR_HIDDEN = NARROW


def check_estimator(
    kind_key: str,
    shape: tuple[int, int, int],
    args: dict[str, Any],
    cond_channels: int | None,
    *,
    seed: int = 0,
    path: str = "",
) -> Check:
    """A layer whose log-det is an estimate: built as :func:`check_layer` builds it (float64,
    perturbed) with its networks narrowed to ``ESTIMATOR_HIDDEN``, its exact mode (the kind's
    ``exact_args``) gives the expected log-det and the estimator's mean over
    ``ESTIMATOR_CALLS x ESTIMATOR_REPEATS`` draws must match it within ``ESTIMATOR_Z``
    standard errors. The module must offer ``estimate_logdet(x)`` (one draw of the training
    estimator per call, a Hutchinson vector per sample)."""
    kind = KINDS[kind_key]
    narrow = json.loads(json.dumps(args))
    narrowed(narrow)
    note = "" if narrow == args else f", hidden {ESTIMATOR_HIDDEN}"
    out = Check(
        path=f"{path or kind_key} (estimator{note})", kind=kind_key, shape=shape, args=narrow
    )
    start = time.perf_counter()
    try:
        with seeded(seed):
            exact = _check_layer(
                Check(path="", kind=kind_key, shape=shape),
                kind,
                shape,
                {**narrow, **kind.exact_args},
                cond_channels,
                seed,
            )
        with seeded(seed):
            mean, se, want = _estimator_draws(kind, shape, narrow, cond_channels, exact, seed)
        j = int(((mean - want).abs() / se.clamp_min(1e-300)).argmax())
        out.expected, out.measured = float(want[j]), float(mean[j])
        out.logdet_err = _rel(mean, want)
        z = abs(out.measured - out.expected) / max(float(se[j]), 1e-300)
        if z > ESTIMATOR_Z and out.logdet_err > TOL:
            out.error = (
                f"the log-det estimator's mean {out.measured:.6g} over "
                f"{ESTIMATOR_CALLS * ESTIMATOR_REPEATS} draws is {z:.1f} standard "
                f"errors ({float(se[j]):.2g}) from the exact {out.expected:.6g} "
                f"(tolerance {ESTIMATOR_Z:g}): the estimator is biased"
            )
    except Exception as e:  # noqa: BLE001 - a layer that raises fails its check
        out.error = f"raised {type(e).__name__}: {e}"
    out.seconds = time.perf_counter() - start
    return out


def _estimator_draws(
    kind: Any,
    shape: tuple[int, int, int],
    args: dict[str, Any],
    cond_channels: int | None,
    exact: Any,
    seed: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, standard error, exact)`` per test point: the estimating module loads the
    exact one's (perturbed) state; each call runs all ``ESTIMATOR_REPEATS`` copies of the
    ``_BATCH`` points as one batch."""
    module = kind.module_class()(shape, dict(args), cond_channels).double()
    module.load_state_dict(exact.state_dict())
    module.eval()
    x = _inputs(module, (_BATCH, *shape), torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = exact(x)[-1]
        reps = x.repeat(ESTIMATOR_REPEATS, *([1] * (x.dim() - 1)))
        draws = torch.stack(
            [module.estimate_logdet(reps).view(-1, _BATCH).mean(0) for _ in range(ESTIMATOR_CALLS)]
        )  # (calls, B)
    return draws.mean(0), draws.std(0) / ESTIMATOR_CALLS**0.5, want


def verify_plugins(spec: FlowSpec, *, seed: int = 0) -> Report:
    """What ``train`` and ``eval`` check before step 1: every distinct layer whose kind or net
    a plugin defines, and the prior when a plugin defines it, at reduced size (built-in
    vocabulary is tested by the suite), no whole model. An empty report (no checks) when
    the flow uses only built-in vocabulary."""
    return verify(
        spec,
        seed=seed,
        model=False,
        only=plugin_defined,
        prior=not builtin(PRIORS[spec.prior.kind]),
    )
