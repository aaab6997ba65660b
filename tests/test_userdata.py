"""runtime.userdata and flowspec.train: your own data as a Dataset or a tensor, and the
README's hand-written loop over FlowModel.log_prob with flowspec.bits_per_dim."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from tinyruns import TINY_GEN, write_spec
from torch.utils.data import TensorDataset

import flowspec
import runtime
from runtime import userdata
from runtime.errors import RunError
from runtime.recipe import resolve_recipe
from runtime.tasks import make_task

ROOT = Path(__file__).resolve().parent.parent

CLASS_FLOW = """flowspec 0.1
flow cc {
  input 1 x 8 x 8
  condition y: class 3
  prior gaussian learned on=y
  level {
    squeeze
    step x 1 { actnorm; invconv; coupling affine on=y hidden=4 }
  }
  train {
    task generation
    data digits
    bits 5
  }
}
"""


def digits(n: int = 200) -> torch.Tensor:
    x = torch.tensor(load_digits().images[:n] * 255 / 16).round().to(torch.uint8)
    return x[:, None]  # (n, 1, 8, 8)


def test_train_on_a_tensor_dataset_holds_out_every_tenth(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, TINY_GEN)
    ds = TensorDataset(digits().float() / 255)  # floats on the k/255 grid, as ToTensor makes
    run = flowspec.train(spec, data=ds, steps=3, val_every=3, out=tmp_path / "run", progress=False)
    assert run.step == 3 and math.isfinite(run.val_bpd)
    summary = json.loads((run.out / "summary.json").read_text())
    assert summary["recipe"]["data"] == "python:TensorDataset(N=200)"
    same = runtime.evaluate(None, run.out / "checkpoint.pt", data=digits()[9::10])
    assert same["val_images"] == 20 and same["bpd"] == pytest.approx(run.val_bpd, abs=1e-6)
    with pytest.raises(RunError, match="trained on Python data"):
        runtime.evaluate(None, run.out / "checkpoint.pt")


def task_of(text: str):
    spec = flowspec.loads(text)
    return make_task(spec, resolve_recipe(spec))


def test_items_with_labels_and_val_data() -> None:
    task = task_of(CLASS_FLOW)
    x, y = digits(40), torch.arange(40) % 3
    data = userdata.task_data(task, TensorDataset(x, y), val_data=[(x[0], 2), (x[1], 0)])
    assert len(data.train) == 40 and data.val.maps.tolist() == [2, 0]
    assert data.num_classes == 3
    plain = userdata.task_data(task_of(TINY_GEN), x)  # a tensor: a data set of its rows
    assert (len(plain.train), len(plain.val)) == (36, 4)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (
            [torch.zeros(1, 8, 8, dtype=torch.uint8)] * 3
            + [torch.zeros(3, 8, 8, dtype=torch.uint8)],
            r"data item 3: image of shape 3x8x8, expected 1x8x8",
        ),
        (
            [torch.zeros(1, 8, 8, dtype=torch.int64)],
            r"data item 0: image of dtype int64, expected "
            r"uint8 or float in \[0, 1\]",
        ),
        (
            [torch.full((1, 8, 8), 0.3)],
            r"data item 0: float image not in \[0, 1\] on the 8-bit "
            r"grid k/255",
        ),
        (
            [(torch.zeros(1, 8, 8), 1, 2)],
            r"data item 0: expected an image tensor, \(image,\), "
            r"\(image, label\) or \(image, \{name: label_map\}\), got a 3-tuple",
        ),
    ],
)
def test_bad_items_are_named_by_index(items, message) -> None:
    with pytest.raises(RunError, match=message):
        userdata.task_data(task_of(TINY_GEN), items)


def test_class_flows_need_labels_in_range() -> None:
    task = task_of(CLASS_FLOW)
    with pytest.raises(RunError, match=r"data item 0: the flow is class-conditional"):
        userdata.task_data(task, TensorDataset(digits(20)))
    with pytest.raises(RunError, match=r"data item 1: label 3, expected a class id in 0..2"):
        userdata.task_data(task, [(digits(1)[0], 0), (digits(1)[0], 3)])


def test_the_readme_training_loop_runs_and_learns(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the README's paths are the repository's
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Your own training loop.*?```python\n(.*?)```", text, re.S)
    scope: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), scope)  # noqa: S102 - our README
    losses = scope["losses"]
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < sum(losses[:5])
