"""Folders of a researcher's own images: class folders (torchvision's ImageFolder
convention), train/ and val/ subfolders, colour decided over the whole folder, the hints'
options, class names in the run, and the labels drawn on sample grids.

The folders are written in tmp_path from scikit-learn's real 8x8 digits and
scikit-image's faces."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tinyruns import TINY_SR

import flowspec
import runtime
from runtime import RunError
from runtime import images as im
from runtime.api import load_checkpoint
from runtime.data import DataError, load_dataset
from runtime.recipe import check_data, parse_data_arg, resolve_recipe
from runtime.tasks import make_task

CLASSES = ("eight", "one", "zero")  # sorted: eight=0, one=1, zero=2
PER_CLASS = 20

CLASS_FLOW = """flowspec 0.1
flow tiny_class(n = 3) {
  input 1 x 8 x 8
  condition y: class n
  prior gaussian learned on=y
  squeeze
  actnorm
  coupling affine on=y hidden=8
  train {
    task generation
    batch 8
    bits 5
    steps 2
  }
}
flow tiny_plain {
  input 1 x 8 x 8
  squeeze
  actnorm
  coupling affine hidden=8
  train {
    task generation
    batch 8
    steps 1
  }
}
"""


def write_classes(
    root: Path, per_class: int = PER_CLASS, names: tuple[str, ...] = CLASSES
) -> None:
    """``root/NAME/i.png`` with real digits of that class (eight, one, zero)."""
    digits = load_dataset("digits", "all")
    for name in names:
        d = {"zero": 0, "one": 1, "eight": 8, "two": 2}[name]
        (root / name).mkdir(parents=True)
        picks = torch.nonzero(digits.labels == d).flatten()[:per_class]
        for i, k in enumerate(picks.tolist()):
            Image.fromarray(digits.images[k, 0].numpy()).save(root / name / f"{i:03d}.png")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("digits_by_class")
    write_classes(root)
    return root


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "class.flow"
    path.write_text(CLASS_FLOW)
    return path


# ---- loading ------------------------------------------------------------------------------
def test_class_folders_are_labelled_in_sorted_name_order(folder: Path) -> None:
    s = load_dataset(str(folder), "all")
    assert s.class_names == CLASSES and s.num_classes == 3
    assert s.labels.tolist() == [0] * PER_CLASS + [1] * PER_CLASS + [2] * PER_CLASS
    val = load_dataset(str(folder), "val")  # every-tenth rule within each class
    assert torch.bincount(val.labels).tolist() == [2, 2, 2]
    assert len(load_dataset(str(folder), "train")) == 3 * PER_CLASS - 6


def test_loose_images_or_one_subfolder_are_not_classes(tmp_path: Path) -> None:
    write_classes(tmp_path / "one_sub", names=("zero",))
    assert load_dataset(str(tmp_path / "one_sub"), "all").labels is None
    write_classes(tmp_path / "loose", names=("zero", "one"))
    Image.new("L", (8, 8)).save(tmp_path / "loose" / "stray.png")
    assert load_dataset(str(tmp_path / "loose"), "all").labels is None


def test_train_and_val_must_hold_the_same_classes(tmp_path: Path) -> None:
    write_classes(tmp_path / "train", 6)
    write_classes(tmp_path / "val", 2, names=("one", "two", "zero"))
    with pytest.raises(
        DataError,
        match=r"same class folders \(missing in val/: eight; only "
        r"in val/: two\)",
    ):
        load_dataset(str(tmp_path), "train")
    (tmp_path / "val" / "two").rename(tmp_path / "val" / "eight")
    s = load_dataset(str(tmp_path), "val")
    assert s.class_names == CLASSES and s.labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_colour_is_decided_over_the_whole_folder(tmp_path: Path) -> None:
    photo = load_dataset("photos", "val").images[0]
    for split, colour in (("train", True), ("train", False), ("val", False)):
        d = tmp_path / split
        d.mkdir(exist_ok=True)
        arr = photo.permute(1, 2, 0).numpy() if colour else photo[0].numpy()
        Image.fromarray(arr).save(d / f"{len(list(d.iterdir()))}.png")
    val = load_dataset(str(tmp_path), "val")  # all grey, but the folder is not
    assert val.images.shape == (1, 3, 32, 32)
    assert torch.equal(val.images[0], photo[:1].expand(3, -1, -1))
    assert load_dataset(str(tmp_path), "train").images.shape[1] == 3


def test_hints_name_options_that_are_accepted(tmp_path: Path) -> None:
    faces = load_dataset("faces", "all").images
    Image.fromarray(faces[0, 0].numpy()).save(tmp_path / "a.png")
    Image.fromarray(faces[1, 0, :20].numpy()).save(tmp_path / "b.png")
    with pytest.raises(DataError) as e:
        load_dataset(str(tmp_path), "all")
    option = re.search(r"pass size=N \(e.g. (size=\d+)\)", str(e.value)).group(1)
    name, opts = parse_data_arg(f"{tmp_path} {option}")
    check_data(name, opts)
    assert load_dataset(name, "all", **opts).images.shape == (2, 1, 64, 64)
    # the channel hint of a training run, given back as --data
    spec = flowspec.loads(CLASS_FLOW.replace("1 x 8 x 8", "3 x 8 x 8"), flow="tiny_plain")
    with pytest.raises(RunError) as e:
        make_task(spec, resolve_recipe(spec, data="digits")).load(train=False)
    option = re.search(r"pass (channels=\d)", str(e.value)).group(1)
    data = make_task(spec, resolve_recipe(spec, data=f"digits {option}")).load(train=False)
    assert data.val.images.shape[1:] == (3, 8, 8)


# ---- runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(folder: Path, spec_file: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("class_run") / "run"
    runtime.train(
        spec_file,
        flow="tiny_class",
        data=str(folder),
        out=out,
        val_every=2,
        sample_every=2,
        checkpoint_every=2,
        device="cpu",
        progress=False,
    )
    return out


def test_class_conditional_flow_trains_on_class_folders(run: Path) -> None:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["class_names"] == list(CLASSES) and summary["final_val_bpd"] > 0
    _, info = load_checkpoint(run / "checkpoint.pt", device="cpu")
    assert info.class_names == list(CLASSES)
    # one row per class, named on the left: the grid is wider than the bare one
    grid = np.asarray(Image.open(run / "samples_step000002_t0.7.png"))
    h, w = im.grid_size(24, 8, 8, 8)
    assert grid.shape[0] == h and grid.shape[1] > w
    assert grid[:, : grid.shape[1] - w].min() < 128  # text in the name column


def test_sample_class_takes_names(run: Path, cli, tmp_path: Path) -> None:
    ck = run / "checkpoint.pt"
    rc, _, err = cli(
        "sample",
        "--checkpoint",
        ck,
        "--class",
        "zero",
        "--n",
        "4",
        "-o",
        tmp_path / "zero.png",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    by_id = runtime.sample(None, ck, n=4, classes="2", output=tmp_path / "two.png", device="cpu")
    assert np.array_equal(
        np.asarray(Image.open(tmp_path / "zero.png")), np.asarray(Image.open(by_id))
    )
    rc, _, err = cli(
        "sample",
        "--checkpoint",
        ck,
        "--class",
        "one,eight",
        "--n",
        "6",
        "-o",
        tmp_path / "rows.png",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    assert Image.open(tmp_path / "rows.png").size[0] > im.grid_size(6, 3, 8, 8)[1]
    rc, _, err = cli(
        "sample",
        "--checkpoint",
        ck,
        "--class",
        "seven",
        "-o",
        tmp_path / "bad.png",
        "--device",
        "cpu",
    )
    assert rc == 1 and "no class named 'seven'; the classes are eight, one, zero" in err
    assert "Traceback" not in err


def test_class_count_must_match_the_folders(folder: Path, spec_file: Path, tmp_path: Path) -> None:
    with pytest.raises(
        RunError,
        match=r"3 class folders \(eight, one, zero\) but condition "
        r"`y`: class 4 declares 4; declare `class 3`",
    ):
        runtime.train(
            spec_file,
            flow="tiny_class",
            overrides={"n": 4},
            data=str(folder),
            out=tmp_path / "r",
            device="cpu",
            progress=False,
        )


def test_unconditional_flow_uses_every_image(folder: Path, spec_file: Path) -> None:
    spec = flowspec.load(spec_file, flow="tiny_plain")
    data = make_task(spec, resolve_recipe(spec, data=str(folder))).load()
    assert len(data.train) + len(data.val) == 3 * PER_CLASS and data.train.maps is None


def test_super_resolution_grids_name_their_columns(tmp_path: Path) -> None:
    spec = flowspec.loads(TINY_SR, overrides={"K": 1, "hidden": 4})
    task = make_task(spec, resolve_recipe(spec))
    model = flowspec.compile(spec, device="cpu", seed=0)
    grid = task.grids(
        model, task.load(train=False), torch.device("cpu"), (0.7,), rows=2, per_row=3
    )[0.7]
    h, w = im.grid_size(10, 5, 24, 24)
    assert tuple(grid.shape[1:]) == (h + im.LABEL_BAND, w)
    band = grid[0, : im.LABEL_BAND]
    centres = [im.GRID_PAD + (24 + im.GRID_PAD) * c + 12 for c in (0, 2, 4)]  # LR, samples, HR
    for x in centres:
        assert int(band[:, x - 6 : x + 6].min()) < 128
