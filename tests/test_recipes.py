"""The training recipes of the papers: averaged weights (runtime.ema), learning-rate
schedules (runtime.schedule) and flips (runtime.augment), from the train block and the
flags (flowspec.recipe).

* ``ema``, ``schedule`` and ``augment`` lines and flags set the recipe; bad values are
  one-line errors with their codes at check time (E122, E105, E109, E315) and RunErrors at
  run time; lists of numbers parse, print (fmt) and stay out of layer arguments (E001).
* The EMA after n steps equals the bias-corrected formula over the recorded parameters.
* Each schedule's rate equals a direct computation (and the logged ``lr``).
* Flips are a function of (seed, step), touch no global RNG, and flip conditions with
  their images.
* A run with all three, killed after a checkpoint and resumed, ends bit for bit where an
  uninterrupted run ends (model, average, optimiser), and eval / load_checkpoint use the
  average unless told not to.
"""

from __future__ import annotations

import math

import pytest
import torch
from tinyruns import TINY_GEN

import flowspec
import runtime
from flowspec.errors import FlowSpecError
from flowspec.fmt import format_text
from runtime import RunError
from runtime import checkpoint as ckpt
from runtime.augment import flips, hflip
from runtime.ema import EMA
from runtime.metrics import MetricsLog
from runtime.recipe import resolve_recipe, resume_command
from runtime.schedule import factor
from runtime.steps import Steps

RECIPE = """
    ema 0.9
    schedule step milestones=[0.5, 3] gamma=0.5
    augment hflip
"""
SPEC = TINY_GEN.replace("    steps 8\n", "    steps 4\n" + RECIPE)


def _check(body: str) -> list[tuple[str, str]]:
    src = TINY_GEN.replace("    steps 8\n", "    steps 8\n" + body)
    try:
        flowspec.loads(src)
    except FlowSpecError as e:
        return [(d.code, d.message) for d in e.diagnostics]
    return []


def test_train_block_and_flags_set_the_recipe() -> None:
    spec = flowspec.loads(SPEC)
    r = resolve_recipe(spec)
    assert (r.ema, r.schedule, r.schedule_options, r.augment) == (
        0.9,
        "step",
        {"milestones": [0.5, 3], "gamma": 0.5},
        "hflip",
    )
    r = resolve_recipe(spec, ema=0.999, schedule="cosine")
    assert (r.ema, r.schedule, r.schedule_options) == (0.999, "cosine", {})
    r = resolve_recipe(spec, schedule="step milestones=[0.25,0.75] gamma=0.1")
    assert r.schedule_options == {"milestones": [0.25, 0.75], "gamma": 0.1}
    line = resume_command(spec, r, {"spec_file": "x.flow"}, "out")
    assert "--schedule 'step milestones=[0.25,0.75] gamma=0.1'" in line
    formatted = format_text(SPEC)
    assert "milestones=[0.5, 3]" in formatted and format_text(formatted) == formatted


@pytest.mark.parametrize(
    "body,code,words",
    [
        ("ema 1.0", "E122", "between 0 and 1, exclusive"),
        ("ema 0", "E122", "between 0 and 1, exclusive"),
        ("schedule step milestones=[0.75, 0.5]", "E315", "must increase"),
        ("schedule step milestones=[2, 8]", "E315", "past the last step (steps 8)"),
        ("schedule step milestones=[1.5]", "E315", "neither a fraction"),
        ("schedule step milestones=[0.5, true]", "E121", "list of numbers"),
        ("schedule step gamma=0.5", "E109", "needs option `milestones`"),
        ("schedule cosine gamma=0.5", "E105", "does not apply to schedule `cosine`"),
        ("schedule sgdr", "E122", "invalid value"),
        ("augment vflip", "E122", "invalid value"),
    ],
)
def test_check_time_errors(body, code, words) -> None:
    found = _check(body)
    assert any(c == code and words in m for c, m in found), found


def test_a_list_is_only_a_train_option() -> None:
    src = TINY_GEN.replace("coupling affine hidden=hidden", "coupling affine hidden=[8]")
    with pytest.raises(FlowSpecError) as e:
        flowspec.loads(src)
    assert e.value.diagnostics[0].code == "E001"


@pytest.mark.parametrize(
    "flags,words",
    [
        ({"ema": 1.5}, "the EMA decay must be between 0 and 1, exclusive, got 1.5"),
        ({"schedule": "step milestones=[0.75,0.5]"}, "milestones must increase"),
        ({"schedule": "step milestones=[2,4]"}, "milestone 4 is past the last step (steps 4)"),
        ({"schedule": "linear gamma=0.5"}, "does not apply to schedule `linear`"),
        ({"augment": "crop"}, "unknown augmentation `crop`"),
    ],
)
def test_run_time_errors(flags, words) -> None:
    with pytest.raises(RunError) as e:
        resolve_recipe(flowspec.loads(SPEC), **flags)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "schedule", ["constant", "cosine", "linear", "step milestones=[0.5,75] gamma=0.1"]
)
def test_schedules_against_a_direct_computation(schedule) -> None:
    r = resolve_recipe(flowspec.loads(SPEC), steps=100, warmup=10, schedule=schedule, lr=1.0)
    f = factor(r)
    for s in range(100):
        warm = min(1.0, (s + 1) / 10)
        p = max(0.0, (s - 10) / 90)
        want = {"constant": 1.0, "cosine": (1 + math.cos(math.pi * p)) / 2, "linear": 1 - p}.get(
            r.schedule
        )
        if want is None:  # milestones 50 and 75 steps: the rate changes after them
            want = 0.1 ** ((s >= 50) + (s >= 75))
        assert f(s) == pytest.approx(warm * want, abs=1e-12), s


def test_ema_after_n_steps_is_the_bias_corrected_average() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    d, start = 0.9, 5
    ema = EMA(model, d, start)
    seen = []
    for step in range(start, start + 7):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
        ema.update(step)
        seen.append(model.weight.detach().double().clone())
    n = len(seen)
    want = sum((1 - d) * d ** (n - i) * w for i, w in enumerate(seen, 1)) / (1 - d**n)
    assert torch.allclose(ema.state_dict(model)["weight"].double(), want, atol=1e-6)
    assert set(ema.state_dict(model)) == set(model.state_dict())


def test_flips_are_a_function_of_seed_and_step_and_flip_conditions() -> None:
    state = torch.get_rng_state()
    a, b = flips(3, 7, 64), flips(3, 7, 64)
    assert torch.equal(a, b) and not torch.equal(a, flips(3, 8, 64))
    assert 10 < int(a.sum()) < 54
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never drawn
    images = torch.arange(2 * 1 * 2 * 3).reshape(2, 1, 2, 3)
    maps, labels = images[:, 0].clone(), torch.tensor([4, 5])
    which = torch.tensor([True, False])
    fi, fm = hflip(images, maps, which)
    assert torch.equal(fi[0], images[0].flip(-1)) and torch.equal(fi[1], images[1])
    assert torch.equal(fm[0], maps[0].flip(-1)) and torch.equal(fm[1], maps[1])
    assert torch.equal(hflip(images, labels, which)[1], labels)  # class labels stay


def test_resume_with_ema_schedule_and_flips_is_bit_for_bit(tmp_path, monkeypatch) -> None:
    spec = tmp_path / "tiny.flow"
    spec.write_text(SPEC)
    kw = {
        "checkpoint_every": 2,
        "val_every": 2,
        "sample_every": 100,
        "val_images": 8,
        "progress": False,
        "device": "cpu",
        "batch": 4,
    }
    straight = runtime.train(spec, out=tmp_path / "straight", **kw)
    real = Steps.step

    def dies_at_3(self, step):
        if step == 2:  # after the checkpoint of step 2
            raise KeyboardInterrupt
        real(self, step)

    monkeypatch.setattr(Steps, "step", dies_at_3)
    with pytest.raises(KeyboardInterrupt):
        runtime.train(spec, out=tmp_path / "cut", **kw)
    monkeypatch.undo()
    runtime.train(spec, out=tmp_path / "cut", resume=True, **kw)
    a, b = (ckpt.load(tmp_path / n / "checkpoint.pt") for n in ("straight", "cut"))
    assert a["step"] == b["step"] == 4 and a["ema_from"] == b["ema_from"] == 0
    for part in ("model", "ema"):
        assert set(a[part]) == set(b[part])
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert any(not torch.equal(a["ema"][k], a["model"][k]) for k in a["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lrs = [
        r["lr"]
        for r in MetricsLog(tmp_path / "cut" / "metrics.jsonl").read()
        if r.get("kind") == "train"
    ]
    # the log's lr is the rate after each step: milestones 0.5 (step 2) and 3 halve it
    assert lrs == pytest.approx([3e-3, 1.5e-3, 7.5e-4, 7.5e-4])
    # the validation and best_val_bpd are the average's; eval and load_checkpoint load it
    path = tmp_path / "straight" / "checkpoint.pt"
    averaged = runtime.evaluate(None, path, val_images=8, device="cpu")
    raw = runtime.evaluate(None, path, val_images=8, device="cpu", ema=False)
    assert (averaged["weights"], raw["weights"]) == ("ema", "raw")
    assert averaged["bpd"] == pytest.approx(straight.val_bpd, abs=1e-5)
    assert averaged["bpd"] != raw["bpd"]
    model, _ = flowspec.load_checkpoint(path, device="cpu")
    for k, v in model.state_dict().items():
        assert torch.equal(v, a["ema"][k]), k
    # and train() hands back the model that its validation measured: the average
    assert straight.weights == "ema"
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, a["ema"][k]), k


def test_validating_the_average_leaves_weight_derived_buffers_alone() -> None:
    """A residual block refreshes its spectral-norm vectors when its weights change: the
    swap to the average and back must not leave rank 0 (which alone validates) with other
    vectors than a twin that did not validate, so the next step is bit for bit the same."""
    import copy

    from flowspec.nn.residual import ResidualBlock
    from runtime.ema import EMA, averaged

    torch.manual_seed(0)
    model = ResidualBlock((2, 4, 4), {"hidden": 8})
    ema = EMA(model, 0.5, 0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    ema.update(1)
    twin = copy.deepcopy(model)
    with averaged(ema, model), torch.no_grad():
        model.eval()(torch.randn(2, 2, 4, 4))
    x = torch.randn(2, 2, 4, 4)
    assert torch.equal(model.train()(x)[0], twin.train()(x)[0])
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
