"""The example plugin of the README (examples/plugins/qrconv.py) does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flowspec
from flowspec.kinds import KINDS, count_params
from flowspec.numerics import jacobian_logdet, perturb_

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "examples" / "plugins"
SPEC = FOLDER / "qr_glow.flow"


@pytest.fixture
def qrconv(monkeypatch):
    monkeypatch.syspath_prepend(str(FOLDER))
    flowspec.load_plugins(["qrconv"])
    yield KINDS["qrconv"]
    KINDS.pop("qrconv", None)
    flowspec.plugins.LOADED.pop("qrconv", None)
    sys.modules.pop("qrconv", None)
    sys.modules.pop("qrconv_nn", None)


def test_qrconv_is_exact_and_counts_its_parameters(qrconv) -> None:
    module = qrconv.module_class()((5, 3, 4), {"reflections": 3}).double()
    gen = torch.Generator().manual_seed(0)
    perturb_(module, 0.5, gen)
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64, generator=gen)
    y, logdet = module(x)
    expected, _ = jacobian_logdet(lambda v: module(v)[0], x)
    assert torch.allclose(logdet, expected, atol=1e-9)
    back, inv_logdet = module.inverse(y)
    assert torch.allclose(back, x, atol=1e-10) and torch.allclose(inv_logdet, -logdet)
    q = module._q()
    assert torch.allclose(q @ q.T, torch.eye(5, dtype=torch.float64), atol=1e-12)
    built = sum(p.numel() for p in module.parameters())
    assert qrconv.params((5, 3, 4), {"reflections": 3}, None) == built


def test_the_example_spec_checks_verifies_and_trains(qrconv, cli, tmp_path) -> None:
    spec = flowspec.load(SPEC, overrides={"K": 1, "hidden": 8})
    assert sum(count_params(spec).values()) == sum(
        p.numel() for p in flowspec.compile(spec).parameters()
    )
    rc, out, err = cli("verify", SPEC, "--plugin", "qrconv", "--set", "K=2")
    assert rc == 0 and "qrconv" in out and "all exact" in out, err
    rc, _, err = cli(
        "train",
        SPEC,
        "--plugin",
        "qrconv",
        "--set",
        "K=1",
        "--set",
        "hidden=8",
        "--steps",
        "2",
        "--out",
        tmp_path / "run",
        "--no-progress",
        "--threads",
        "1",
    )
    assert rc == 0, err
    assert (tmp_path / "run" / "checkpoint.pt").exists()


def test_the_readme_shows_the_whole_example_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("qrconv.py", "qrconv_nn.py"):
        source = (FOLDER / name).read_text(encoding="utf-8").rstrip()
        assert "```python\n" + source + "\n```" in readme, name


def test_checking_with_the_example_plugin_imports_no_torch() -> None:
    code = (
        "import sys, flowspec; flowspec.load(sys.argv[1], plugins=['qrconv']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(SPEC)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(FOLDER)])},
    )
    assert out.stdout.strip() == "False", out.stderr
