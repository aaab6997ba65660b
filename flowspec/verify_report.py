"""The result of ``flowspec verify``: one :class:`Check` per distinct layer (and the prior,
and the whole model), gathered in a :class:`Report` that prints as a table whose rows end
in ``ok`` or ``FAIL``, as JSON, or as a one-line headline naming the first failure."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    """One distinct layer (the prior: ``kind == "prior.KEY"``; the whole model:
    ``kind == "model"``) and what was measured."""

    path: str
    kind: str
    shape: tuple[int, int, int]
    count: int = 1  # layers of the flow that share this check
    args: dict[str, Any] = field(default_factory=dict)
    expected: float | None = None  # log-det from the autograd Jacobian (worst sample)
    measured: float | None = None  # the layer's own log-det (same sample)
    logdet_err: float | None = None  # worst relative error over the batch
    inverse_err: float | None = None
    inverse_logdet_err: float | None = None
    log_z: float | None = None  # a prior's log of the integral of exp(log_density)
    sample_stat: float | None = None  # a prior's sampling statistic (KS distance or Stein z)
    density: str | None = None  # a prior's density checks: methods and tolerances
    where: str | None = None  # FILE:LINE:COL of the layer in the spec
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Report:
    flow: str
    full: bool
    checks: list[Check]
    device: str = "cpu"

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.ok), None)

    def failure_message(self) -> str:
        """One line: where, the quantity that failed, and the two numbers that differ."""
        c = self.first_failure()
        if c is None:
            return ""
        if c.kind == "model":
            what = "the whole model"
        elif c.kind.startswith("prior."):
            what = f"prior `{c.kind[len('prior.') :]}`"
        else:
            what = f"layer `{c.path}` ({c.kind})"
        at = f"{c.where}: " if c.where else ""
        return f"flowspec verify: {at}{what} is not exact: {c.error}"

    def table(self) -> str:
        rows = [
            (
                "path",
                "kind",
                "shape",
                "n",
                "log-det (autograd)",
                "rel. err",
                "inverse err",
                "inv. log-det err",
                "",
            )
        ]
        for c in self.checks:
            rows.append(
                (
                    c.path,
                    c.kind.replace(".", " "),
                    "x".join(map(str, c.shape)),
                    str(c.count),
                    _num(c.expected),
                    _sci(c.logdet_err),
                    _sci(c.inverse_err),
                    _sci(c.inverse_logdet_err),
                    "ok" if c.ok else "FAIL",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        n = sum(c.kind != "model" and not c.kind.startswith("prior.") for c in self.checks)
        size = "real size" if self.full else "reduced size"
        priors = [c for c in self.checks if c.kind.startswith("prior.")]
        lines = [
            f"flow {self.flow}: {n} distinct layers{' and the prior' if priors else ''}, "
            f"float64, {size}{'' if self.device == 'cpu' else f', on {self.device}'}"
        ]
        for i, r in enumerate(rows):
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
            if i == 0:
                lines.append("  " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
        for c in priors:
            if c.density:
                lines.append(f"{c.kind.replace('.', ' ')}: {c.density}")
        bad = sum(not c.ok for c in self.checks)
        lines.append("all exact" if not bad else f"{bad} check{'s' if bad > 1 else ''} failed")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "full": self.full,
            "device": self.device,
            "ok": self.ok,
            "checks": [{**asdict(c), "ok": c.ok} for c in self.checks],
        }


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.6g}"


def _sci(v: float | None) -> str:
    return "-" if v is None else f"{v:.1e}"
