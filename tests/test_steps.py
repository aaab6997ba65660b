"""Training steps without host synchronisation (runtime/steps.py), and their records.

A sync detector (a TorchFunctionMode) counts, inside every :meth:`Steps.step` of a real
run, each Python-level read of a tensor's values (``item``, ``bool``, ``float``, ``int``,
``tolist``, ``cpu``, ``numpy``, ``nonzero``, ...): on CUDA each waits for the device. On
the CPU every tensor is a host tensor, so the count is strict: the only reads allowed are
those of the optimiser's step counts, which torch keeps on the host by design (Adam's
``state["step"]`` is a CPU tensor unless ``capturable`` or ``fused``). On CUDA the same run
goes under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import json
import math
import traceback
from pathlib import Path

import pytest
import torch
from test_dequantization import spec_file as dequantization_spec
from tinyruns import TINY_SR, write_spec
from torch.overrides import TorchFunctionMode

import runtime
from runtime import checkpoint as ckpt
from runtime.errors import RunError
from runtime.objective import Objective
from runtime.pretrain import Pretraining
from runtime.steps import FLUSH_EVERY, Steps, flush_due
from runtime.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
T = torch.Tensor
READS = {
    T.item,
    T.__bool__,
    T.__float__,
    T.__int__,
    T.__index__,
    T.tolist,
    T.cpu,
    T.numpy,
    T.nonzero,
    torch.nonzero,
    T.unique,
    torch.unique,
    torch.masked_select,
    T.masked_select,
}
#: host-side by design: the optimisers' step counts (see the module docstring)
HOST_SIDE = ("torch/optim/",)

QUICK = {
    "steps": 4,
    "batch": 4,
    "val_every": 100,
    "sample_every": 100,
    "checkpoint_every": 100,
    "val_images": 8,
    "progress": False,
}
SR_PRETRAIN = """flowspec 0.2
flow f(scale = 4) {
  input 1 x 16 x 16
  condition lr: image 1 x 4 x 4 encoder=ENCODER
  squeeze
  actnorm
  invconv
  coupling srflow on=lr hidden=4
  train {
    task super_resolution scale=4
    data faces resize=true
    bits 8
    optimizer adam lr=1e-3
    pretrain encoder steps=3 lr=3e-3
    freeze encoder fraction=0.5
  }
}
""".replace("ENCODER", "srflow(blocks=1, features=4, taps=1, ups=1, head=true, scale=scale)")
FLOWS = {
    "demo": lambda tmp: (ROOT / "specs" / "demo.flow", {"L": 2, "K": 1, "hidden": 8}, {}),
    "logit": lambda tmp: (
        ROOT / "specs" / "realnvp.flow",
        {"L": 2, "hidden": 8, "size": 8},
        {"data": "digits"},
    ),
    "class": lambda tmp: (ROOT / "specs" / "glow_class.flow", {"L": 2, "K": 1, "hidden": 8}, {}),
    "sr": lambda tmp: (write_spec(tmp, TINY_SR), {}, {}),
    # the encoder's pretraining steps, then flow steps with the encoder frozen for two
    "sr-pretrain": lambda tmp: (write_spec(tmp, SR_PRETRAIN), {}, {}),
    "variational": lambda tmp: (dequantization_spec(tmp), {}, {}),  # q(u|x) in the step
}


class Reads(TorchFunctionMode):
    """Collects where a tensor's values are read on the host."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in READS:
            frames = traceback.extract_stack()[:-1]
            if not any(h in f.filename.replace("\\", "/") for f in frames for h in HOST_SIDE):
                f = frames[-1]
                self.found.append(f"{func.__name__} at {f.filename}:{f.lineno}: {f.line}")
        return func(*args, **(kwargs or {}))


def _watch(monkeypatch) -> dict:
    """Run every step under the detector; keep the loss and lr each step computed."""
    seen: dict = {"reads": [], "steps": 0, "loss": [], "lr": [], "pretrain": 0}
    real_step, real_loss, real_pretrain = Steps.step, Objective.forward, Pretraining.step

    def step(self, s):
        mode = Reads()
        with mode:
            real_step(self, s)
        seen["reads"] += [f"step {s + 1}: {r}" for r in mode.found]
        seen["steps"] += 1
        seen["lr"].append(self.opt.param_groups[0]["lr"])

    def loss(self, batch):
        out = real_loss(self, batch)
        if torch.is_grad_enabled():  # a training step's (validation runs without grad)
            seen["loss"].append(out[0].detach())
        return out

    def pretrain(self, cond, hr, d):
        mode = Reads()
        with mode:
            out = real_pretrain(self, cond, hr, d)
        seen["reads"] += [f"pretraining step {self.done}: {r}" for r in mode.found]
        seen["pretrain"] += 1
        return out

    monkeypatch.setattr(Steps, "step", step)
    monkeypatch.setattr(Objective, "forward", loss)
    monkeypatch.setattr(Pretraining, "step", pretrain)
    return seen


def _train_records(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


@pytest.mark.parametrize("name", list(FLOWS))
def test_training_steps_never_read_the_device(name, tmp_path, monkeypatch) -> None:
    spec, overrides, extra = FLOWS[name](tmp_path)
    seen = _watch(monkeypatch)
    out = tmp_path / "run"
    runtime.train(spec, overrides=overrides, out=out, device="cpu", **QUICK, **extra)
    assert seen["steps"] == QUICK["steps"]
    assert seen["pretrain"] == (3 if name == "sr-pretrain" else 0)
    assert seen["reads"] == []
    records = _train_records(out)
    assert [r["step"] for r in records] == list(range(1, QUICK["steps"] + 1))
    for r, loss, lr in zip(records, seen["loss"], seen["lr"]):
        # the buffered numbers are the step's own: its loss (read after the fact), its lr
        assert r["loss"] == r["bpd"] == float(loss.mean()) and r["lr"] == lr
        assert math.isfinite(r["grad_norm"]) and r["grad_norm"] > 0
        assert r["images_per_s"] > 0 and r["time"] > 0
    assert [r["time"] for r in records] == sorted(r["time"] for r in records)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_steps_never_synchronise_on_cuda(tmp_path, monkeypatch) -> None:
    real_step = Steps.step

    def step(self, s):
        torch.cuda.set_sync_debug_mode("error")
        try:
            real_step(self, s)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    monkeypatch.setattr(Steps, "step", step)
    for name, flow in FLOWS.items():
        spec, overrides, extra = flow(tmp_path / name)
        out = tmp_path / name / "run"
        runtime.train(spec, overrides=overrides, out=out, device="cuda", **QUICK, **extra)
        assert len(_train_records(out)) == QUICK["steps"]


def test_flushes_come_at_logging_steps() -> None:
    class R:
        steps, val_every, sample_every, checkpoint_every = 1000, 300, 600, 300

    due = [s for s in range(1, 1001) if flush_due(s, R)]
    assert due == sorted({*range(FLUSH_EVERY, 1001, FLUSH_EVERY), 300, 600, 900, 1000})


def test_a_non_finite_step_is_named_at_the_flush_and_nothing_after_it_is_kept(
    tmp_path, monkeypatch
) -> None:
    """A loss that goes NaN at step 3 of a window that flushes at step 4: the run stops at
    the flush naming step 3 and the layer, with the parameters step 3 saw (the updates of
    steps 3 and 4 were skipped on the device), and writes no checkpoint of step 4."""
    import flowspec.build

    real_compile = flowspec.build.compile
    seen: dict = {}

    def poisoned(*a, **k):
        model = real_compile(*a, **k)
        i = next(i for i, p in enumerate(model.paths) if p.endswith("coupling"))
        seen["path"], seen["model"] = model.paths[i], model
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            if calls["n"] > 3:  # the actnorm init, steps 1 and 2, then NaN from step 3 on
                y, ld = output
                return y * float("nan"), ld
            return None

        model.layers[i].register_forward_hook(hook)
        return model

    real_nonfinite = Trainer._nonfinite

    def nonfinite(self, step, model, x, cond, what):
        seen["params"] = [p.detach().clone() for p in model.parameters()]
        real_nonfinite(self, step, model, x, cond, what)

    monkeypatch.setattr(flowspec.build, "compile", poisoned)
    monkeypatch.setattr(Trainer, "_nonfinite", nonfinite)
    out = tmp_path / "nan"
    with pytest.raises(RunError) as e:
        runtime.train(
            ROOT / "specs" / "demo.flow",
            overrides={"L": 2, "K": 1, "hidden": 8},
            out=out,
            **{**QUICK, "steps": 8, "checkpoint_every": 2},
        )
    msg = str(e.value)
    assert msg.startswith("training stopped at step 3: the loss is nan")
    assert f"layer `{seen['path']}`" in msg and ".flow:" in msg
    assert [r["step"] for r in _train_records(out)] == [1, 2]
    assert ckpt.load(out / "checkpoint.pt")["step"] == 2
    saved = ckpt.load(out / "checkpoint.pt")["model"]
    names = [n for n, _ in seen["model"].named_parameters()]
    for n, p in zip(names, seen["params"]):  # exactly the parameters after step 2
        assert torch.equal(p, saved[n]), n


def test_the_detector_sees_reads() -> None:
    mode = Reads()
    x = torch.ones(3)
    with mode:
        float(x.sum()), bool(x.any()), x.tolist(), x.nonzero()
    assert [r.split(" at ")[0] for r in mode.found] == [
        "__float__",
        "__bool__",
        "tolist",
        "nonzero",
    ]


def test_a_non_finite_pretraining_step_is_named_at_the_flush(tmp_path, monkeypatch) -> None:
    real_batch = Pretraining.batch

    def batch(self, images, step, stream, shard):
        cond, hr = real_batch(self, images, step, stream, shard)
        return cond, hr * float("nan") if step == 1 else hr  # the second step's target

    monkeypatch.setattr(Pretraining, "batch", batch)
    out = tmp_path / "run"
    with pytest.raises(RunError, match=r"^pretraining stopped at step 2: the L1 loss is nan"):
        runtime.train(write_spec(tmp_path, SR_PRETRAIN), out=out, device="cpu", **QUICK)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [r.get("pretrain_step") for r in map(json.loads, lines)] == [1]
    assert not (out / "checkpoint.pt").exists()
