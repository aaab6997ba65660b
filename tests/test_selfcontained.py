"""A checkpoint is a self-contained run: ``eval`` and ``sample`` need no spec file (the
checkpoint's IR and recipe), ``load_checkpoint`` gives the model and its run in Python, and
a checkpoint without IR is refused with a message that says what to pass instead."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from tinyruns import TINY_GEN, write_spec

import flowspec
import runtime
from runtime import RunError
from runtime.api import RunInfo, load_checkpoint


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selfcontained")
    spec = write_spec(root / "specs", TINY_GEN)
    out = root / "run"
    runtime.train(
        spec,
        out=out,
        overrides={"hidden": 6},
        val_images=64,
        val_every=8,
        sample_every=8,
        progress=False,
    )
    shutil.rmtree(root / "specs")  # nothing but the run folder is left
    return out


@pytest.fixture(scope="module")
def no_ir(run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ck = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    del ck["ir"]
    path = tmp_path_factory.mktemp("noir") / "checkpoint.pt"
    torch.save(ck, path)
    return path


def logged_val_bpd(run: Path) -> float:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "val"][-1]["bpd"]


def test_eval_and_sample_from_the_checkpoint_alone(cli, run: Path, tmp_path: Path) -> None:
    rc, out, err = cli("eval", "--checkpoint", run / "checkpoint.pt", "--out", tmp_path)
    assert rc == 0, err
    m = json.loads(out)
    assert m["flow"] == "tiny_gen" and m["step"] == 8 and m["data"] == "digits"
    assert math.isclose(m["bpd"], logged_val_bpd(run), rel_tol=1e-6)
    grid = tmp_path / "grid.png"
    rc, out, err = cli("sample", "--checkpoint", run / "checkpoint.pt", "--n", 4, "-o", grid)
    assert rc == 0, err
    assert out.strip() == str(grid)
    with Image.open(grid) as im:
        assert im.width > 16 and im.height > 16


def test_load_checkpoint_gives_the_model_and_its_run(run: Path) -> None:
    model, info = load_checkpoint(run / "checkpoint.pt", device="cpu")
    assert isinstance(info, RunInfo) and not model.training
    assert info.spec.name == "tiny_gen" and info.spec.params["hidden"] == 6
    assert info.step == 8 and info.recipe.data == "digits" and info.recipe.bits == 5
    assert info.overrides == {"hidden": 6} and info.spec_file.endswith("tiny.flow")
    assert math.isclose(info.best_val_bpd, logged_val_bpd(run), rel_tol=1e-9)
    with torch.no_grad():
        x = model.sample(3, 0.7)
    assert x.shape == (3, 1, 8, 8) and bool(torch.isfinite(x).all())
    if not hasattr(flowspec, "load_checkpoint"):
        pytest.skip("flowspec/__init__.py does not export load_checkpoint yet")
    assert flowspec.load_checkpoint is load_checkpoint


def test_a_checkpoint_without_ir_is_refused(cli, no_ir: Path, tmp_path: Path) -> None:
    for cmd in (
        ("eval", "--checkpoint", no_ir),
        ("sample", "--checkpoint", no_ir, "-o", tmp_path / "g.png"),
    ):
        rc, out, err = cli(*cmd)
        assert rc == 1 and out == "", cmd
        assert "holds no readable model description (IR)" in err
        assert "pass the spec it was trained with" in err
    with pytest.raises(RunError, match="no readable model description"):
        load_checkpoint(no_ir)
