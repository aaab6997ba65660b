"""Precision: TF32 never reaches the invertible maps' own products, and the half-precision
settings that cannot be right are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_build_options import SPEC, batch, build

import flowspec
import flowspec.nn.base as base
import runtime
from runtime.errors import RunError

ROOT = Path(__file__).resolve().parents[1]


def test_invertible_products_run_without_tf32(monkeypatch) -> None:
    # CPU stands in for CUDA here: the guard takes TF32 off for the 1x1 convolutions' and
    # iSDP's products (forward, inverse and iSDP's hand-written backward), then restores
    # the caller's setting.
    model = build("small_mixture")
    monkeypatch.setattr(base, "TF32_DEVICES", ("cpu", "cuda"))
    matmul = torch.backends.cuda.matmul
    seen: list[str] = []
    real_bmm = torch.bmm

    def bmm(*args, **kwargs):
        seen.append(matmul.fp32_precision)
        return real_bmm(*args, **kwargs)

    monkeypatch.setattr(torch, "bmm", bmm)
    saved = matmul.fp32_precision
    matmul.fp32_precision = "tf32"
    try:
        x = batch()
        zs, _ = model(x)
        model.inverse(zs)
        (-model.log_prob(x).mean()).backward()
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = saved
    assert len(seen) >= 8 and set(seen) == {"ieee"}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_are_refused(dtype: torch.dtype) -> None:
    with pytest.raises(ValueError, match="no half-precision kernels") as e:
        flowspec.compile(flowspec.loads(SPEC, flow="small"), device="cpu", dtype=dtype)
    assert "\n" not in str(e.value)


def test_training_refuses_float16_autocast(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="use --autocast bf16") as e:
        runtime.train(
            ROOT / "specs" / "demo.flow",
            overrides={"K": 1, "hidden": 8},
            steps=1,
            batch=4,
            out=tmp_path / "run",
            progress=False,
            device="cpu",
            build_options={"autocast": torch.float16},
        )
    assert "\n" not in str(e.value) and not (tmp_path / "run").exists()
