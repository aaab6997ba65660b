"""`flowspec verify`'s prior row (flowspec/verify_prior.py): the built-in priors pass, a
correct Student-t plugin prior passes, and one that is unnormalised, has a wrong log-det or
samples from another distribution fails with exit 1 naming the prior."""

from __future__ import annotations

import json
import math

import pytest
import torch

import flowspec
from flowspec.verify import check_prior, verify, verify_plugins
from flowspec.verify_prior import KS_TOL, NORM_TOL, check_density

# A Student-t prior (nu degrees of freedom per entry) with a learned shift and scale, in one
# file: the declaration and the module. The placeholders make it wrong on purpose.
STUDENT_T = """
import math

import torch
from pydantic import Field

import flowspec


class StudentTArgs(flowspec.Args):
    nu: int = Field(3, ge=1, le=30, description="degrees of freedom")


class StudentTPrior(flowspec.FlowLayer):
    def __init__(self, shape, args, cond_channels=None):
        super().__init__(shape, args, None)
        self.nu = int(args["nu"])
        self.mean = torch.nn.Parameter(torch.zeros(shape))
        self.log_scale = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, z, cond=None):
        eps = (z - self.mean) * torch.exp(-self.log_scale)
        return eps, {factor} * -self.log_scale.sum().expand(z.shape[0])

    def inverse(self, eps, cond=None):
        return eps * torch.exp(self.log_scale) + self.mean, \\
            self.log_scale.sum().expand(eps.shape[0])

    def log_density(self, eps):
        nu = self.nu
        const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
        flat = eps.reshape(eps.shape[0], -1)
        return ({const} - (nu + 1) / 2 * torch.log1p(flat * flat / nu)).sum(dim=1)

    def sample_noise(self, shape, *, device=None, dtype=None, generator=None):
        # t = N / sqrt(chi2_nu / nu), chi2_nu a sum of nu squared normals
        n = torch.randn(shape, device=device, dtype=dtype, generator=generator)
        chi2 = sum(torch.randn(shape, device=device, dtype=dtype, generator=generator) ** 2
                   for _ in range(self.nu))
        return {sample}


@flowspec.prior
class StudentT(flowspec.PriorKind):
    key = "studentt"
    Args = StudentTArgs
    doc = "independent Student-t entries with a learned shift and scale"
    module = StudentTPrior
"""

CORRECT = {"factor": "1.0", "const": "const", "sample": "n / torch.sqrt(chi2 / self.nu)"}

SPEC = """flow tprior {
  input 1 x 4 x 4
  prior studentt nu=3
  squeeze
  coupling affine hidden=4
}
"""


def plugin(tmp_path, monkeypatch, name: str, **wrong: str):
    (tmp_path / f"{name}.py").write_text(STUDENT_T.format(**{**CORRECT, **wrong}))
    (tmp_path / "t.flow").write_text(SPEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "t.flow"


def small(prior: str, condition: str = "") -> flowspec.FlowSpec:
    return flowspec.loads(
        f"flow f {{\n  input 1 x 4 x 4\n  {condition}\n  prior {prior}\n"
        "  squeeze\n  coupling affine hidden=4\n}\n"
    )


@pytest.mark.parametrize(
    "prior,condition",
    [
        ("gaussian", ""),
        ("gaussian learned", ""),
        ("logistic learned", ""),
        ("gaussian learned on=y", "condition y: class 3 encoder=embedding(features=4)"),
        ("convlstm hidden=4 layers=1", ""),
    ],
)
def test_builtin_priors_pass(prior: str, condition: str) -> None:
    spec = small(prior, condition)
    c = check_prior(spec)
    assert c.ok, c.error
    assert c.kind == f"prior.{prior.split()[0]}" and c.path == "prior"
    assert c.logdet_err <= 1e-6 and c.inverse_err <= 1e-7 and c.inverse_logdet_err <= 1e-6
    assert abs(c.log_z) <= NORM_TOL and c.sample_stat <= KS_TOL
    if prior != "gaussian":  # the standard normal is the identity; the others move
        assert c.expected != 0.0


def test_the_prior_row_is_in_the_table_with_its_density_checks() -> None:
    report = verify(small("logistic learned"))
    assert report.ok, report.failure_message()
    row = next(line for line in report.table().splitlines() if line.strip().startswith("prior"))
    assert "prior logistic" in row and row.endswith("ok")
    note = next(line for line in report.table().splitlines() if line.startswith("prior logistic:"))
    assert "577 nodes" in note and "16384 draws" in note and "tolerance" in note


def test_a_correct_student_t_plugin_passes(tmp_path, monkeypatch, clean_registries, cli):
    path = plugin(tmp_path, monkeypatch, "t_good")
    rc, out, err = cli("verify", path, "--plugin", "t_good")
    assert rc == 0, out + err
    assert "prior studentt" in out and "all exact" in out
    spec = flowspec.load(path, plugins=["t_good"])
    report = verify_plugins(spec)  # what train and eval run before step 1
    assert [c.path for c in report.checks] == ["prior"] and report.ok


@pytest.mark.parametrize(
    "name,wrong,fragment",
    [
        ("t_unnormalised", {"const": "0.0"}, "log_density is not normalised"),
        ("t_logdet", {"factor": "2.0"}, "measured log-det"),
        ("t_sampling", {"sample": "n"}, "sample_noise does not draw from log_density"),
    ],
)
def test_a_wrong_student_t_fails_naming_the_prior(
    name, wrong, fragment, tmp_path, monkeypatch, clean_registries, cli
):
    path = plugin(tmp_path, monkeypatch, name, **wrong)
    rc, out, err = cli("verify", path, "--plugin", name)
    assert rc == 1, out + err
    row = next(line for line in out.splitlines() if line.strip().startswith("prior"))
    assert row.endswith("FAIL")
    assert "flowspec verify: " in err and "prior `studentt` is not exact" in err, err
    assert fragment in err and "t.flow:3:3" in err and "Traceback" not in err
    spec = flowspec.load(path, plugins=[name])
    report = verify_plugins(spec)
    assert not report.ok and report.checks[0].path == "prior"
    rc, out, _ = cli("verify", path, "--plugin", name, "--format", "json")
    bad = [c for c in json.loads(out)["checks"] if not c["ok"]]
    assert rc == 1 and bad[0]["kind"] == "prior.studentt"


class Correlated(torch.nn.Module):
    """A 2-D Gaussian with correlation 0.6: a log_density that does not factorise."""

    def __init__(self, log_const: float = 0.0, independent: bool = False) -> None:
        super().__init__()
        self.log_const, self.independent = log_const, independent

    def log_density(self, eps):
        x = eps.reshape(eps.shape[0], 2)
        quad = (x[:, 0] ** 2 - 1.2 * x[:, 0] * x[:, 1] + x[:, 1] ** 2) / 0.64
        return -0.5 * quad - math.log(2 * math.pi * 0.8) + self.log_const

    def sample_noise(self, shape, *, device=None, dtype=None, generator=None):
        n = torch.randn((shape[0], 2), dtype=dtype, generator=generator)
        if not self.independent:
            n = torch.stack([n[:, 0], 0.6 * n[:, 0] + 0.8 * n[:, 1]], dim=1)
        return n.reshape(shape)


def test_a_density_that_does_not_factorise_is_checked_by_importance_sampling() -> None:
    good = check_density(Correlated(), (2, 1, 1), 0)
    assert good.error is None and abs(good.log_z) < 0.01, good.error
    assert "importance sampling" in good.note and "Stein" in good.note
    assert "not normalised" in check_density(Correlated(math.log(2)), (2, 1, 1), 0).error
    bad = check_density(Correlated(independent=True), (2, 1, 1), 0).error
    assert "sample_noise does not draw from log_density" in bad
