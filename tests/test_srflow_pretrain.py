"""SRFlow's two training stages: the RRDB's SR head, its L1 pretraining and the freeze.

* ``srflow(head=true, scale=S)`` builds the RRDB's own SR output as SRFlow's ``RRDBNet``
  computes it (the flow's upsampling convolutions, then its own, HRconv, conv_last), counted
  exactly; the checker ties ``scale`` to the input and the recipe to the model.
* ``pretrain encoder steps= lr=`` lowers the L1 distance to held-out high-resolution faces,
  and a run killed during it resumes bit for bit; ``freeze encoder fraction=`` leaves the
  encoder unchanged for exactly those flow steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from official_counts import srflow_official

import flowspec
import runtime
from flowspec.api import analyze
from flowspec.kinds import ENCODERS, count_params
from runtime import images as im
from runtime import pretrain as pt
from runtime.data import load_dataset, prepare

ROOT = Path(__file__).resolve().parents[1]

KIND = ENCODERS["srflow"]


# ---- the head ---------------------------------------------------------------------------
def _encoder(shape, **args):
    a = KIND.Args(**{"blocks": 1, "features": 6, "taps": 1, **args}).model_dump()
    torch.manual_seed(0)
    return KIND.module_class()(shape, a).double(), a


@pytest.mark.parametrize(
    "ups,scale,shape", [(2, 8, (3, 3, 3)), (1, 4, (1, 5, 4)), (0, 2, (2, 4, 4)), (3, 4, (3, 2, 2))]
)
def test_head_shape_and_exact_count(ups: int, scale: int, shape: tuple) -> None:
    enc, a = _encoder(shape, ups=ups, head=True, scale=scale)
    c = torch.rand(2, *shape, dtype=torch.float64)
    assert enc.sr(c).shape == (2, shape[0], shape[1] * scale, shape[2] * scale)
    assert KIND.params(shape, a) == sum(p.numel() for p in enc.parameters())
    plain, b = _encoder(shape, ups=ups)
    f = 6
    own = max(0, scale.bit_length() - 1 - ups)  # upsampling convs of the head alone
    head = (own + 1) * (9 * f * f + f) + 9 * f * shape[0] + shape[0]
    assert KIND.params(shape, a) - KIND.params(shape, b) == head
    with pytest.raises(ValueError, match="no super-resolution head"):
        plain.sr(c)


def test_the_8x_head_is_what_srflows_code_adds_to_the_used_modules() -> None:
    """upconv3, HRconv and conv_last of SRFlow's RRDBNet: 75,587 of its 352,163 parameters
    that the flow never reads (the rest is FlowUpsamplerNet.f)."""
    args = {"blocks": 8, "features": 64, "taps": 4, "ups": 2}
    with_head = KIND.params((3, 20, 20), {**args, "head": True, "scale": 8})
    without = KIND.params((3, 20, 20), {**args, "head": False, "scale": None})
    assert with_head - without == srflow_official(1, 1)["sr_head"] == 75_587
    spec = flowspec.load(ROOT / "specs/srflow_celeba.flow", "srflow_1_1")
    official = srflow_official(1, 1)
    assert sum(count_params(spec).values()) == official["total"] - official["unused"]
    assert official["unused"] == 276_576


def test_head_is_srflows_rrdb_output_through_the_flows_own_convs() -> None:
    """conv_last(lrelu(HRconv(fea))), ``fea`` through nearest 2x, conv, LeakyReLU per
    doubling: the first ``ups`` of those convs are the ones the flow's levels read."""
    enc, _ = _encoder((3, 4, 4), ups=1, head=True, scale=4)
    c = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    lrelu = torch.nn.LeakyReLU(0.2)
    with torch.no_grad():
        f = enc(c)
        fea = f[:, :6]
        up2 = lrelu(enc.up[0](F.interpolate(fea, scale_factor=2, mode="nearest")))
        assert torch.equal(enc.features_at(f, (8, 8))[:, :6], up2)  # the flow's fea_up2
        up4 = lrelu(enc.head_up[0](F.interpolate(up2, scale_factor=2, mode="nearest")))
        want = enc.conv_last(lrelu(enc.hr_conv(up4)))
        assert torch.allclose(enc.sr(c), want, atol=1e-12)
    assert len(enc.head_up) == 1


def test_without_head_the_encoder_is_unchanged() -> None:
    """head=false (the default) builds the same module with the same initial values."""
    a, _ = _encoder((3, 4, 4), ups=2)
    b, _ = _encoder((3, 4, 4), ups=2, head=True, scale=4)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) < set(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- the checker --------------------------------------------------------------------------
FLOW = """flowspec 0.2
flow f(scale = 4) {
  input 1 x 16 x 16
  condition lr: image 1 x 4 x 4 encoder=ENCODER
  squeeze
  actnorm
  invconv
  coupling srflow on=lr hidden=4
  train {
    task TASK
    data faces resize=true
LINES
  }
}
"""
HEAD = "srflow(blocks=1, features=4, taps=1, ups=1, head=true, scale=scale)"


def _diags(
    encoder: str = HEAD,
    lines: str = "    pretrain encoder steps=2",
    task: str = "super_resolution scale=4",
    overrides: dict | None = None,
):
    text = FLOW.replace("ENCODER", encoder).replace("LINES", lines).replace("TASK", task)
    _, diags = analyze("sr.flow", text=text, overrides=overrides)
    return [
        (d.severity, d.code, d.span.line, d.span.column, d.message + " " + (d.help or ""))
        for d in diags
        if d.code != "W004"
    ]


def test_a_valid_recipe_checks_clean() -> None:
    assert _diags() == []
    assert (
        _diags(lines="    pretrain encoder steps=2 lr=1e-3\n    freeze encoder fraction=0.5") == []
    )


@pytest.mark.parametrize(
    "encoder,overrides,fragment",
    [
        (
            HEAD,
            {"scale": 2},
            ("super-resolves the 1x4x4 condition to 1x8x8, but the flow's input is 1x16x16"),
        ),
        ("srflow(blocks=1, features=4, head=true)", None, "add scale=4"),
        (HEAD.replace("scale=scale", "scale=3"), None, "not a power of 2"),
    ],
)
def test_the_heads_scale_must_fit_the_input(encoder: str, overrides, fragment: str) -> None:
    found = _diags(encoder, overrides=overrides)
    assert [d[:4] for d in found] == [("error", "E208", 4, 3)]
    assert fragment in found[0][4]


def test_a_head_without_pretraining_is_a_warning() -> None:
    found = _diags(lines="")
    assert [d[:4] for d in found] == [("warning", "W005", 4, 3)]
    assert "never trained" in found[0][4] and "pretrain encoder steps=N" in found[0][4]


def test_pretraining_needs_a_head_and_the_sr_task() -> None:
    found = _diags("srflow(blocks=1, features=4, taps=1)")
    assert [d[:4] for d in found] == [("error", "E313", 12, 5)]
    assert "srflow(..., head=true)" in found[0][4]
    found = _diags("rrdb(blocks=1, features=4)")
    assert [d[:2] for d in found] == [("error", "E313")]
    found = _diags(task="translation")
    assert [d[:4] for d in found] == [("error", "E313", 12, 5)]
    assert "needs task super_resolution" in found[0][4]


def test_recipe_line_errors() -> None:
    found = _diags(lines="    pretrain encoder lr=1e-3")  # a required option is missing
    assert [d[:4] for d in found] == [("error", "E109", 12, 5)]
    assert "needs option `steps`" in found[0][4]
    found = _diags(lines="    pretrain encoder steps=2\n    freeze encoder fraction=1.5")
    assert [d[:4] for d in found] == [("error", "E122", 13, 5)]
    assert "between 0.0 and 1.0" in found[0][4]
    found = _diags(lines="    pretrain decoder steps=2")
    assert [d[:2] for d in found] == [("error", "E122")]
    found = _diags(lines="    pretrain encoder steps=2 lr=0")  # the runtime would refuse it
    assert [d[:4] for d in found] == [("error", "E122", 12, 5)]
    assert "must be positive" in found[0][4]


def test_freeze_needs_an_encoder() -> None:
    text = """flowspec 0.2
flow g {
  input 1 x 8 x 8
  squeeze
  coupling affine hidden=4
  train {
    freeze encoder fraction=0.5
  }
}
"""
    _, diags = analyze("g.flow", text=text)
    found = [(d.code, d.span.line, d.span.column) for d in diags if d.severity == "error"]
    assert found == [("E314", 7, 5)]


# ---- training ---------------------------------------------------------------------------
RUN = (
    FLOW.replace("ENCODER", HEAD.replace("features=4", "features=8"))
    .replace("TASK", "super_resolution scale=4")
    .replace(
        "LINES",
        "    bits 8\n    batch 8\n    optimizer adam lr=1e-3\n    seed 1\n"
        "    pretrain encoder steps=30 lr=3e-3",
    )
)
TINY = {"val_images": 4, "sr_images": 1, "val_every": 100, "sample_every": 100}


def _train(tmp_path: Path, name: str, **recipe):
    spec = tmp_path / "sr.flow"
    spec.write_text(RUN)
    return runtime.train(
        spec, out=tmp_path / name, device="cpu", progress=False, **{**TINY, **recipe}
    )


def _encoder_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.encoders["lr"].state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def test_pretraining_lowers_the_l1_on_held_out_faces(tmp_path: Path) -> None:
    result = _train(tmp_path, "run", steps=1, freeze_fraction=1.0)
    faces = load_dataset("faces", "val").images[:8]  # held out from the pretraining
    hr = prepare(faces, (1, 16, 16), resize=True)  # as the task shapes them
    lr, target = im.to_condition(im.downscale(hr, 4)), im.to_condition(hr)
    fresh = flowspec.compile(result.model.spec, device="cpu", seed=1)

    def l1(model) -> float:
        with torch.no_grad():
            return float((model.encoders["lr"].sr(lr) - target).abs().mean())

    before, after = l1(fresh), l1(result.model)
    assert after < 0.7 * before, (before, after)
    steps = [r["pretrain_step"] for r in _records(tmp_path / "run", "pretrain")]
    assert steps == list(range(1, 31))
    assert result.summary["pretrain"]["steps"] == 30


def test_freeze_holds_the_encoder_for_exactly_its_steps(tmp_path: Path) -> None:
    base = {"pretrain_steps": 5}
    one = _train(tmp_path, "one", steps=1, freeze_fraction=1.0, **base)
    two = _train(tmp_path, "two", steps=2, freeze_fraction=1.0, **base)
    four = _train(tmp_path, "four", steps=4, freeze_fraction=0.5, **base)
    free = _train(tmp_path, "free", steps=2, **base)  # (step 1's zero-initialised couplings
    # pass no gradient to the features; step 2's do)
    pretrained = _encoder_state(one.model)  # the flow's one step left it as pretrained
    assert _same(_encoder_state(two.model), pretrained)  # two frozen steps: unchanged
    flow = {k: v for k, v in two.model.state_dict().items() if not k.startswith("encoders.")}
    assert any(not torch.equal(v, one.model.state_dict()[k]) for k, v in flow.items())
    assert not _same(_encoder_state(four.model), pretrained)  # steps 3 and 4 updated it
    assert not _same(_encoder_state(free.model), pretrained)  # no freeze: updated
    flags = [r["encoders_frozen"] for r in _records(tmp_path / "four", "train")]
    assert flags == [True, True, False, False]
    assert all(p.requires_grad for p in four.model.parameters())


def test_a_run_killed_while_pretraining_resumes_bit_for_bit(tmp_path: Path, monkeypatch) -> None:
    recipe = {"steps": 2, "pretrain_steps": 6, "checkpoint_every": 3, "freeze_fraction": 0.5}
    reference = _train(tmp_path, "reference", **recipe)
    real, calls = pt.Pretraining.step, []

    def dies_at_five(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pt.Pretraining, "step", dies_at_five)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "killed", **recipe)
    monkeypatch.undo()
    ck = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 0 and ck["pretrain"]["step"] == 3 and "optimizer" in ck["pretrain"]
    resumed = _train(tmp_path, "killed", resume=True, **recipe)
    a, b = reference.model.state_dict(), resumed.model.state_dict()
    assert _same(a, b)
    steps = [r["pretrain_step"] for r in _records(tmp_path / "killed", "pretrain")]
    assert steps == [1, 2, 3, 4, 5, 6]
    ck = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 2 and ck["pretrain"] == {"step": 6}  # done: no optimiser kept


def test_head_parameters_are_exactly_those_the_flow_never_reaches() -> None:
    """What DDP must not be handed (it waits for a gradient of every parameter it wraps)."""
    spec = flowspec.loads(RUN, filename="sr.flow")
    model = flowspec.compile(spec, device="cpu", seed=0)
    x = torch.rand(2, 1, 16, 16) - 0.5
    lr = torch.rand(2, 1, 4, 4) - 0.5
    model.train()
    with torch.no_grad():
        model(x, {"lr": lr})  # actnorm's init
    for p in model.parameters():  # away from the zero-initialised couplings
        p.data.add_(0.05 * torch.randn_like(p))
    model.log_prob(x, {"lr": lr}).sum().backward()
    unreached = {id(p) for p in model.encoders["lr"].parameters() if p.grad is None}
    head = pt.head_parameters(model)
    assert head and unreached == {id(p) for p in head}


def test_resuming_with_more_steps_keeps_the_first_runs_freeze(tmp_path: Path) -> None:
    """``freeze encoder fraction=0.5`` over a 4-step run freezes steps 1-2; resumed to 12
    steps it must not freeze the encoder again for steps 5-6 (half of 12 is 6): the
    boundary is the first run's, kept in the checkpoint."""
    base = {"pretrain_steps": 2, "freeze_fraction": 0.5}
    _train(tmp_path, "run", steps=4, **base)
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["freeze_until"] == 2
    _train(tmp_path, "run", steps=12, resume=True, **base)
    flags = [r["encoders_frozen"] for r in _records(tmp_path / "run", "train")]
    assert flags == [True, True] + [False] * 10


def test_a_finished_pretraining_can_be_extended(tmp_path: Path, capsys, monkeypatch) -> None:
    """A checkpoint written after the pretraining finished keeps no optimiser state; asking
    for more pretraining steps on resume continues from there with a fresh Adam."""
    from runtime.trainer import Trainer

    def killed(*args, **kwargs):  # the run dies as the flow's first step begins
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_loop", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, "run", steps=1, pretrain_steps=2)
    monkeypatch.undo()
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 0 and ck["pretrain"] == {"step": 2}
    _train(tmp_path, "run", steps=1, pretrain_steps=4, resume=True)
    assert "with a fresh Adam state" in capsys.readouterr().err
    steps = [r["pretrain_step"] for r in _records(tmp_path / "run", "pretrain")]
    assert steps == [1, 2, 3, 4]
    ck = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 1 and ck["pretrain"] == {"step": 4}
