"""runtime.evaluate as papers report: the importance-weighted bound (``--iw-samples``), the
whole validation split (``--val-images all``), and super-resolution's Table 4 protocol with
the bicubic baseline beside it, in eval and in training's final validation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tinyruns import TINY_GEN, TINY_RES, TINY_SR, write_spec

import runtime
from runtime.api import _restore
from runtime.errors import RunError
from runtime.tasks import SR_TEMPERATURES_EVAL, make_task


@pytest.fixture(scope="module")
def variational_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("iw")
    out = folder / "run"
    runtime.train(
        write_spec(folder, TINY_GEN),
        out=out,
        steps=6,
        val_every=6,
        dequantize="variational",
        val_images=40,
        progress=False,
    )
    return out


def test_iw_bound_is_below_the_single_sample_bound_on_the_same_noise(variational_run) -> None:
    model, spec, r, _ = _restore(None, variational_run / "checkpoint.pt", None, None, "cpu")
    task = make_task(spec, r)
    data = task.load(train=False)
    iw, single = task.val_bpd_iw(model, data.val, torch.device("cpu"), 4)
    assert iw <= single  # log-mean-exp >= mean of logs, image by image
    one, one_single = task.val_bpd_iw(model, data.val, torch.device("cpu"), 1)
    assert one == pytest.approx(one_single, abs=1e-12)
    assert one == pytest.approx(task.val_bpd(model, data.val, torch.device("cpu")), abs=1e-5)


def test_eval_reports_bpd_iw_with_k_and_the_whole_split(cli, variational_run) -> None:
    ck = variational_run / "checkpoint.pt"
    rc, text, err = cli("eval", "--checkpoint", ck, "--iw-samples", 3, "--val-images", "all")
    assert rc == 0, err
    m = json.loads(text)
    assert m["iw_samples"] == 3 and m["bpd_iw"] <= m["bpd"] + 0.05
    assert m["val_images"] == 176  # digits: every tenth of each class, not the run's 40
    rc, _, err = cli("eval", "--checkpoint", ck, "--val-images", "some")
    assert rc == 2 and "a count of at least 1 or `all`" in err


def test_sr_table4_with_bicubic_baseline_in_training_and_eval(tmp_path: Path) -> None:
    out = tmp_path / "sr"
    runtime.train(
        write_spec(tmp_path, TINY_SR), out=out, steps=2, val_every=2, sr_images=2, progress=False
    )
    final = [
        json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if '"val"' in x
    ][-1]
    assert final["temperatures"] == list(SR_TEMPERATURES_EVAL)
    per = final["per_temperature"]
    for key in ("psnr", "ssim", "lr_psnr"):
        assert math.isclose(final[key], sum(r[key] for r in per.values()) / 9, rel_tol=1e-12)
        assert math.isfinite(final[f"{key}_bicubic"])
    m = runtime.evaluate(
        None, out / "checkpoint.pt", temperatures=[0.5], y_channel=True, crop_border=2
    )
    assert m["psnr"] == m["per_temperature"]["0.5"]["psnr"]
    assert m["sr_protocol"]["crop_border"] == 2 and m["sr_protocol"]["channels"] == "y (BT.601)"
    plain = runtime.evaluate(None, out / "checkpoint.pt", temperatures=[0.5])
    assert plain["psnr_bicubic"] != m["psnr_bicubic"]  # the baseline is scored the same way
    with pytest.raises(RunError, match="iw_samples must be"):
        runtime.evaluate(None, out / "checkpoint.pt", iw_samples=0)


def test_an_estimated_bpd_says_so_and_has_no_iw_bound(tmp_path: Path, capsys) -> None:
    """A residual flow (log-dets by the Russian-roulette estimator): training marks its
    bits/dim as an unbiased estimate in metrics.jsonl and summary.json, eval says how its
    number was computed (eval.json and stderr) and refuses --iw-samples in one line."""
    out = tmp_path / "run"
    run = runtime.train(
        write_spec(tmp_path, TINY_RES), out=out, steps=2, val_every=2, val_images=8, progress=False
    )
    assert run.summary["bpd_estimated"] is True
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in records if r["kind"] in ("train", "val")]
    assert scored and all(r["bpd_estimated"] is True for r in scored)
    capsys.readouterr()
    m = runtime.evaluate(None, out / "checkpoint.pt", device="cpu")
    assert m["bpd_estimated"] is True and m["bpd_method"].startswith("unbiased estimate")
    assert json.loads((out / "eval.json").read_text())["bpd_method"] == m["bpd_method"]
    assert "is an unbiased estimate" in capsys.readouterr().err
    with pytest.raises(RunError, match="not a bound") as refused:
        runtime.evaluate(None, out / "checkpoint.pt", device="cpu", iw_samples=4)
    assert "\n" not in str(refused.value)


def test_an_exact_bpd_says_so(variational_run, tmp_path: Path) -> None:
    summary = json.loads((variational_run / "summary.json").read_text())
    assert summary["bpd_estimated"] is False
    m = runtime.evaluate(None, variational_run / "checkpoint.pt", device="cpu", out=tmp_path)
    assert m["bpd_estimated"] is False and m["bpd_method"].startswith("exact")
