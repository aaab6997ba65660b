r"""What a run checks before it trusts a number it reports.

* **The vocabulary is exact.** Before step 1, ``train`` and ``eval`` verify every layer
  whose kind or net a plugin defines (and a plugin prior) at reduced size, in float64, as
  ``flowspec verify`` does (:func:`flowspec.verify.verify_plugins`). Built-in kinds are not
  re-verified: the test suite checks every one. A failing check refuses the run, naming
  the layer's path and its line in the ``.flow`` file; ``verify=False`` (``--no-verify``)
  runs anyway, warns, and the run records ``"verified": false``.
* **A checkpoint is data, not code.** It records the plugins its vocabulary comes from
  (:func:`flowspec.plugins.used_plugins`); loading it without them is refused, naming the
  ``--plugin`` to pass. Nothing is ever imported because a checkpoint names it.
* **An estimate says so.** A flow whose layers estimate their log-dets (an unbiased but
  random estimate, e.g. ``residual logdet=estimate``; :func:`flowspec.kinds.estimated_layers`)
  has its bits/dim marked ``"bpd_estimated": true`` in training's records and summary;
  ``eval`` says how its number was computed (:func:`bpd_method`) and refuses
  ``--iw-samples`` (:func:`refuse_iw`): the log of an average of estimated likelihoods is no
  bound.
* **A held-out bits/dim is possible.** Of discrete data, :math:`-\log_2 P(x) / D \ge 0`,
  and the dequantised estimate is above it in expectation; a value below 0 means the
  density does not integrate to one (a wrong log-det or an inverse that is not one).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from flowspec.ir import FlowSpec
from flowspec.kinds import estimated_layers
from flowspec.plugins import missing_plugins, used_plugins, vocabulary

from .errors import RunError

Warn = Callable[[str], None]


def verify_command(
    spec: FlowSpec, spec_file: str | None = None, overrides: dict[str, Any] | None = None
) -> str:
    """The ``flowspec verify`` line that checks this flow with its plugins."""
    words = ["flowspec", "verify", str(spec_file or spec.file or "SPEC.flow"), "--flow", spec.name]
    for k, v in (overrides or {}).items():
        words += ["--set", f"{k}={v}"]
    for p in used_plugins(spec):
        words += ["--plugin", p["plugin"]]
    return shlex.join(words)


def _where(spec: FlowSpec, check: Any) -> str:
    """``file:line:col`` of the layer (or prior) a verify check is about."""
    if check.kind.startswith("prior."):  # the prior's row (flowspec.verify.check_prior)
        span = spec.prior.span
    else:
        span = next((layer.span for layer in spec.layers if layer.path == check.path), None)
    span = span or spec.span
    return f"{span.file}:{span.line}:{span.column}" if span is not None else spec.name


def verify_vocabulary(
    spec: FlowSpec,
    *,
    verify: bool,
    command: str,
    warn: Warn,
    spec_file: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> bool:
    """Verify ``spec``'s plugin-defined layers (and plugin prior) before a run; whether the
    run may call itself verified. Raises :class:`RunError` on a check that fails."""
    plugins = used_plugins(spec)
    if not verify:
        if plugins:
            warn(
                f"--no-verify: the plugin vocabulary of flow `{spec.name}` is not verified; "
                'its bits/dim may not be a density\'s (the run records "verified": false)'
            )
        return False
    if not plugins:
        return True  # built-in vocabulary only: the test suite verifies every kind
    from flowspec import verify_plugins

    start = time.perf_counter()
    report = verify_plugins(spec)
    if report.ok:
        if report.checks:
            print(
                f"flowspec {command}: verified {len(report.checks)} plugin-defined "
                f"layer{'s' if len(report.checks) > 1 else ''} of flow `{spec.name}`: "
                f"exact ({time.perf_counter() - start:.1f} s)",
                file=sys.stderr,
            )
        return True
    bad = [c for c in report.checks if not c.ok]
    rows = "\n".join(
        f"  {_where(spec, c)}: `{c.path}` ({c.kind.replace('.', ' ')}): {c.error}" for c in bad
    )
    n = f"{len(bad)} layer{'s' if len(bad) > 1 else ''}"
    raise RunError(
        f"flow `{spec.name}` is not exact, so its bits/dim would not be a density's: {n} of "
        f"its plugin vocabulary failed verification (float64, reduced size); nothing was "
        f"run:\n{rows}\n  the full table: {verify_command(spec, spec_file, overrides)}\n"
        f"  to {command} anyway: --no-verify (verify=False in Python); the run then records "
        '"verified": false'
    )


def check_checkpoint_plugins(ck: dict[str, Any], path: Any, stored: FlowSpec | None) -> None:
    """Refuse a checkpoint whose vocabulary comes from plugins not loaded now, naming the
    ``--plugin`` to pass. A checkpoint from before the record names the unknown entry."""
    from flowspec.kinds import REGISTRIES

    record = ck.get("plugins")
    if isinstance(record, list):
        message = missing_plugins(record)
        if message:
            raise RunError(f"the checkpoint {path} {message}")
        return
    if stored is None:
        return
    unknown = [(r, k) for r, k in vocabulary(stored) if k not in REGISTRIES[r]]
    if unknown:
        registry, key = unknown[0]
        raise RunError(
            f"the checkpoint {path} uses {registry} `{key}`, which no loaded plugin "
            "defines (the checkpoint is older than its record of plugins): pass "
            "--plugin MODULE, the module that defines it"
        )


#: held-out numbers in bits per dimension of discrete data
BPD_KEYS = ("bpd", "bpd_uniform", "label_bpd")


def check_bpd(
    metrics: dict[str, Any], *, what: str, verify_cmd: Callable[[], str], after: Callable[[], str]
) -> None:
    """Refuse a held-out bits/dim below 0: impossible on discrete data. ``verify_cmd`` and
    ``after`` (what became of the run) are asked for only then."""
    for key in BPD_KEYS:
        value = metrics.get(key)
        if isinstance(value, float) and value < 0:
            raise RunError(
                f"{what} gives a held-out {key} of {value:.4g} bits/dim, below 0, which no "
                "density of discrete data can give: the model's density is not normalised (a "
                "log-det that is wrong, or an inverse that is not one). Check its layers with "
                f"`{verify_cmd()}`; {after()}"
            )


def summary_warnings(
    source: dict[str, Any], verified: bool, plugins: list[Any], vals: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``summary.json``'s warnings: the checker's on the spec, a skipped verification, then
    the validations' (by step)."""
    out = [dict(w) for w in source.get("warnings") or []]
    if not verified and plugins:
        out.append(
            {
                "code": "no-verify",
                "message": "--no-verify: the plugin vocabulary was "
                "not verified; the bits/dim may not be a density's",
            }
        )
    return out + [{"step": v["step"], "message": m} for v in vals for m in v.get("warnings", [])]


def bpd_method(spec: FlowSpec) -> tuple[bool, str]:
    """Whether ``spec``'s bits/dim is an estimate, and how it is computed (eval mode)."""
    est = estimated_layers(spec)
    if not est:
        return False, "exact: every layer's log-det is computed exactly"
    return True, (
        f"unbiased estimate: {len(est)} of {len(spec.layers)} layers (`{est[0]}` "
        "first) estimate their log-dets by their eval-mode estimator (more fixed "
        "terms than training's: less variance), the others are exact; a flow built "
        "in exact mode (residual logdet=exact, small inputs) gives the exact number"
    )


def refuse_iw(spec: FlowSpec, iw_samples: int | None) -> None:
    """``--iw-samples`` of a flow that estimates log-dets: refused, in one line."""
    est = estimated_layers(spec)
    if iw_samples is not None and est:
        raise RunError(
            f"--iw-samples: flow `{spec.name}` estimates the log-dets of {len(est)} "
            f"layers (`{est[0]}` first), and the log of an average of estimated "
            "likelihoods is not a bound; evaluate without --iw-samples"
        )
