"""``train --tensorboard``: event files in the run folder with the training and validation
scalars, the sample grids and the diagram, read back with TensorBoard's own event reader;
a resumed run continues the same curves."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from tinyruns import TINY_GEN, write_spec

pytest.importorskip("tensorboard", reason="tensorboard is the optional extra flowspec[track]")
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402


def events(folder: Path) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(
        str(folder),
        size_guidance={
            event_accumulator.SCALARS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.TENSORS: 0,
        },
    )
    acc.Reload()
    return acc


def test_tensorboard_run_has_scalars_images_and_diagram(cli, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, TINY_GEN)
    out = tmp_path / "run"
    common = (
        "--out",
        out,
        "--val-every",
        3,
        "--sample-every",
        6,
        "--checkpoint-every",
        3,
        "--val-images",
        32,
        "--no-progress",
        "--tensorboard",
    )
    rc, _, err = cli("train", spec, "--steps", 6, *common)
    assert rc == 0, err
    acc = events(out / "tensorboard")
    tags = acc.Tags()
    for name in ("loss", "bpd", "lr", "grad_norm", "images_per_s"):
        assert [e.step for e in acc.Scalars(f"train/{name}")] == [1, 2, 3, 4, 5, 6], name
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in logged if r["kind"] == "val"]
    assert [(e.step, e.value) for e in acc.Scalars("val/bpd")] == [
        (r["step"], pytest.approx(r["bpd"], rel=1e-6)) for r in val
    ]
    assert "val/recon_rel" in tags["scalars"]
    for t in ("0.5", "0.7", "1"):
        (img,) = acc.Images(f"samples/t{t}")
        assert img.step == 6 and img.encoded_image_string[:4] == b"\x89PNG"
    (diagram,) = acc.Images("model/diagram")
    assert diagram.width > 0 and diagram.height > 0
    assert "model/dot/text_summary" in tags["tensors"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"]["tensorboard"] == str(out / "tensorboard")

    # resuming continues the curves: the steps after the checkpoint are not doubled
    rc, _, err = cli("train", spec, "--steps", 9, "--resume", *common)
    assert rc == 0, err
    steps = [e.step for e in events(out / "tensorboard").Scalars("train/loss")]
    assert steps == list(range(1, 10))


def test_tensorboard_missing_is_a_clear_error(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    rc, _, err = cli(
        "train",
        write_spec(tmp_path, TINY_GEN),
        "--out",
        tmp_path / "run",
        "--steps",
        2,
        "--no-progress",
        "--tensorboard",
    )
    assert rc == 1 and "flowspec[track]" in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
