"""scripts/gpu_check.py's preflight on a machine without a GPU: a fake ``nvidia-smi`` that
lists a GPU torch cannot see, or that fails, is a wrong environment (exit 2, at once); no
``nvidia-smi`` at all means nothing to check (exit 0, saying so). Only results.json and the
log land in $OUT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU-only check")


def run_check(tmp_path: Path, smi: str | None) -> tuple[int, str, dict]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if smi is not None:
        fake = bin_dir / "nvidia-smi"
        fake.write_text(f"#!/bin/sh\n{smi}\n")
        fake.chmod(0o755)
    path = os.pathsep.join(
        [str(bin_dir)]
        + [
            p
            for p in os.environ["PATH"].split(os.pathsep)
            if not (Path(p) / "nvidia-smi").exists()
        ]
    )
    out = tmp_path / "out"
    env = {**os.environ, "PATH": path, "OUT": str(out), "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert sorted(f.name for f in out.iterdir()) == ["gpu_check.log", "results.json"]
    return p.returncode, p.stdout + p.stderr, json.loads((out / "results.json").read_text())


@pytest.mark.parametrize(
    "smi,says",
    [
        ("echo 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'", "lists a GPU"),
        ("echo 'NVIDIA-SMI has failed' >&2; exit 9", "fails"),
    ],
)
def test_a_gpu_torch_cannot_see_is_a_wrong_environment(
    tmp_path: Path, smi: str, says: str
) -> None:
    rc, text, results = run_check(tmp_path, smi)
    assert rc == 2, text
    assert f"nvidia-smi {says} but torch sees no CUDA device" in text
    assert results["exit"] == 2 and results["steps"] == {}


def test_no_gpu_at_all_is_nothing_to_check(tmp_path: Path) -> None:
    rc, text, results = run_check(tmp_path, None)
    assert rc == 0, text
    assert "no GPU here" in text and results["preflight"]["nvidia_smi"] == "none"


def test_a_python_without_torch_is_a_wrong_environment(tmp_path: Path) -> None:
    """Not "nothing to check": a check that cannot import torch has not looked for a GPU."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('no torch in this environment')\n")
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": os.pathsep.join([str(shadow), str(ROOT)])}
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_check.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 2, p.stdout + p.stderr
    assert "torch does not work here" in p.stdout


def test_every_step_of_the_check_exists():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gpu_check
        import gpu_steps
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    names = [name for name, _ in gpu_check.STEPS]
    assert len(set(names)) == len(names)
    assert sum(limit for _, limit in gpu_check.STEPS) <= 360  # about the default budget
    for name in names:
        assert name in gpu_steps.STEP_NAMES, name
