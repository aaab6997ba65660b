"""Runs on a researcher's own vocabulary: training and evaluation verify plugin layers before
step 1 and refuse an inexact one; an impossible held-out bits/dim stops a run; checkpoints
record their plugins and never import one; and the run's flags, warnings and messages say
what happened. Tiny flows on the built-in 8x8 digits, a step or two each."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch

from flowspec import plugins
from flowspec.kinds import REGISTRIES

# One file holds the declaration and its module (given as ``--plugin path/to/file.py``).
PLUGIN = '''
import torch
import flowspec


class {cls}Module(flowspec.FlowLayer):
    """y = x exp(s) + t per entry; log|det| = sum(s)."""

    def __init__(self, shape, args, cond_channels=None):
        super().__init__(shape, args, cond_channels)
        self.log_s = torch.nn.Parameter(torch.full(shape, 0.1))
        self.shift = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, x, cond=None):
        ld = self.log_s.sum().expand(x.shape[0])
        return x * torch.exp(self.log_s) + self.shift, {forward}

    def inverse(self, y, cond=None):
        ld = self.log_s.sum().expand(y.shape[0])
        return (y - self.shift) * torch.exp({inv_scale} * self.log_s), -ld


@flowspec.kind
class {cls}(flowspec.LayerKind):
    key = "{key}"
    doc = "a learned per-entry scale and shift"
    module = {cls}Module
'''

#: how each plugin is wrong (forward log-det, inverse's scale)
VARIANTS = {
    "exact": ("ld", "-1.0"),
    "wrong_sign": ("-ld", "-1.0"),
    "offset": ("ld + 1000.0", "-1.0"),
    "wrong_inverse": ("ld", "-0.9"),
}

SPEC = """flow pix {
  input 1 x 8 x 8
  level {
    squeeze
    step x 1 { actnorm; %(key)s; coupling affine hidden=8 }
    split
  }
  level { squeeze; step x 1 { %(key)s; coupling additive hidden=8 } }
  train { task generation; data digits; bits 5; batch 16; steps 2 }
}
"""

#: two channel couplings that transform the same half: the checker warns (W004)
W004_SPEC = """flow halves {
  input 1 x 8 x 8
  level { squeeze; coupling affine hidden=4; actnorm; coupling additive hidden=4 }
  train { task generation; data digits; bits 5; batch 16; steps 1 }
}
"""


@pytest.fixture
def fresh(clean_registries):
    """The registries restored afterwards (conftest's ``clean_registries``), and
    :func:`forget` to play a new process."""
    return forget


def forget(module: str, key: str) -> None:
    """What a new process knows of a file plugin: nothing."""
    REGISTRIES["kind"].pop(key, None)
    for name in [n for n in plugins.LOADED if module in n]:
        del plugins.LOADED[name]
    plugins.ORIGIN.pop(("kind", key), None)
    sys.modules.pop(module, None)


def plugin(folder: Path, variant: str) -> tuple[Path, Path]:
    """``(plugin file, spec)`` of a plugin kind ``variant`` (module and key named so)."""
    folder.mkdir(parents=True, exist_ok=True)
    forward, inv_scale = VARIANTS[variant]
    key = variant.replace("_", "")
    file = folder / f"{variant}_kind.py"
    file.write_text(
        PLUGIN.format(cls=key.capitalize(), key=key, forward=forward, inv_scale=inv_scale)
    )
    spec = folder / "pix.flow"
    spec.write_text(SPEC % {"key": key})
    return file, spec


def train_args(spec: Path, file: Path, out: Path, *extra: object) -> list[object]:
    return [
        "train",
        spec,
        "--plugin",
        file,
        "--out",
        out,
        "--no-progress",
        "--threads",
        "1",
        *extra,
    ]


# ------------------------------------------------------------------ item 1: verification


@pytest.mark.parametrize("variant", ["wrong_sign", "offset", "wrong_inverse"])
def test_train_refuses_an_inexact_plugin_layer_before_any_step(variant, tmp_path, fresh, cli):
    file, spec = plugin(tmp_path, variant)
    rc, _, err = cli(*train_args(spec, file, tmp_path / "run"))
    assert rc == 1, err
    key = variant.replace("_", "")
    assert f"{spec}:5:" in err and f"`level1.step01.{key}` ({key})" in err  # path and line
    assert f"{spec}:8:" in err  # every failing row
    assert "--no-verify" in err and "verify=False" in err
    assert f"flowspec verify {spec} --flow pix --plugin {file}" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_an_exact_plugin_trains_as_verified_and_its_checkpoint_needs_it(tmp_path, fresh, cli):
    file, spec = plugin(tmp_path, "exact")
    out = tmp_path / "run"
    rc, _, err = cli(*train_args(spec, file, out, "--steps", "1"))
    assert rc == 0, err
    assert "verified 2 plugin-defined layers of flow `pix`: exact" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified"] is True
    record = [{"plugin": str(file), "uses": ["kind exact"]}]
    assert summary["plugins"] == record
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["plugins"] == record

    forget("exact_kind", "exact")  # a new process, without --plugin
    wanted = (
        f"the checkpoint {out / 'checkpoint.pt'} uses kind `exact` of plugin module "
        f"`{file}`: pass --plugin {file}"
    )
    for command in (["sample", "-o", tmp_path / "g.png"], ["eval"]):
        rc, _, err = cli(*command, "--checkpoint", out / "checkpoint.pt")
        assert rc == 1 and wanted in err, err
        assert "exact_kind" not in sys.modules  # nothing imported on the checkpoint's word
    import runtime
    from runtime.api import load_checkpoint

    with pytest.raises(runtime.RunError, match="pass --plugin"):
        load_checkpoint(out / "checkpoint.pt", device="cpu")

    rc, printed, err = cli(
        "sample",
        "--checkpoint",
        out / "checkpoint.pt",
        "--plugin",
        file,
        "--n",
        "4",
        "-o",
        tmp_path / "g.png",
    )
    assert rc == 0, err
    assert Path(printed.strip()).is_file()

    # a checkpoint from before the record still loads, and without the plugin names the kind
    del ck["plugins"]
    torch.save(ck, tmp_path / "old.pt")
    forget("exact_kind", "exact")
    rc, _, err = cli("sample", "--checkpoint", tmp_path / "old.pt", "-o", tmp_path / "h.png")
    assert rc == 1 and "uses kind `exact`, which no loaded plugin defines" in err, err
    rc, _, err = cli(
        "eval", "--checkpoint", tmp_path / "old.pt", "--plugin", file, "--val-images", "16"
    )
    assert rc == 0, err


def test_no_verify_trains_anyway_and_says_so(tmp_path, fresh, cli):
    file, spec = plugin(tmp_path, "wrong_inverse")
    out = tmp_path / "run"
    rc, _, err = cli(*train_args(spec, file, out, "--steps", "1", "--no-verify"))
    assert rc == 0, err
    assert "--no-verify: the plugin vocabulary of flow `pix` is not verified" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verified"] is False
    assert any(w.get("code") == "no-verify" for w in summary["warnings"])
    rc, _, err = cli(
        "eval", "--checkpoint", out / "checkpoint.pt", "--plugin", file, "--val-images", "16"
    )
    assert rc == 1 and "--no-verify" in err  # eval verifies too
    rc, printed, err = cli(
        "eval",
        "--checkpoint",
        out / "checkpoint.pt",
        "--plugin",
        file,
        "--val-images",
        "16",
        "--no-verify",
    )
    assert rc == 0, err
    assert json.loads(printed)["verified"] is False


# ------------------------------------------------------------ item 2: impossible numbers


def test_a_negative_held_out_bpd_stops_the_run_and_keeps_its_checkpoint(tmp_path, fresh, cli):
    file, spec = plugin(tmp_path, "offset")  # log-det 1000 nats too large: bpd far below 0
    out = tmp_path / "run"
    rc, _, err = cli(
        *train_args(spec, file, out, "--no-verify", "--val-every", "2", "--checkpoint-every", "1")
    )
    assert rc == 1, err
    assert "the validation at step 2 gives a held-out bpd of" in err and "below 0" in err
    assert "not normalised" in err and f"flowspec verify {spec} --flow pix --plugin" in err
    assert "the last checkpoint is step 1" in err and "Traceback" not in err
    assert int(torch.load(out / "checkpoint.pt", weights_only=True)["step"]) == 1
    assert not (out / "best.pt").exists()  # an impossible number is never the best one
    rc, _, err = cli(
        "eval",
        "--checkpoint",
        out / "checkpoint.pt",
        "--plugin",
        file,
        "--val-images",
        "16",
        "--no-verify",
    )
    assert rc == 1 and "not normalised" in err and "no eval.json was written" in err
    assert not (out / "eval.json").exists()


# ------------------------------------------------------- item 8: flags, warnings, names


def test_the_ctrl_c_resume_command_keeps_threads_and_plugins(tmp_path, fresh, cli, monkeypatch):
    from runtime.objective import Objective

    file, spec = plugin(tmp_path, "exact")
    out = tmp_path / "run"
    real, calls = Objective.forward, {"n": 0}

    def forward(self, batch):
        calls["n"] += self.flow.training
        if self.flow.training and calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Objective, "forward", forward)
    rc, _, err = cli(*train_args(spec, file, out, "--checkpoint-every", "1", "--device", "cpu"))
    assert rc != 0 and "interrupted" in err
    command = err.split("continue with:\n")[1].strip().splitlines()[0]
    words = shlex.split(command)
    for flag in (
        ["--threads", "1"],
        ["--plugin", str(file)],
        ["--device", "cpu"],
        ["--no-progress"],
    ):
        assert " ".join(flag) in " ".join(words), command
    monkeypatch.setattr(Objective, "forward", real)
    forget("exact_kind", "exact")  # the command alone brings the plugin back
    rc, _, err = cli(*words[1:])
    assert rc == 0, err


@pytest.fixture(scope="module")
def w004_run(tmp_path_factory) -> tuple[Path, Path, str]:
    from flowspec.cli import main

    root = tmp_path_factory.mktemp("w004")
    spec = root / "halves.flow"
    spec.write_text(W004_SPEC)
    out = root / "run"
    rc = main([str(a) for a in ("train", spec, "--out", out, "--no-progress", "--threads", "1")])
    assert rc == 0
    return spec, out, (out / "summary.json").read_text()


def test_summary_warnings_hold_the_checkers_warnings(w004_run):
    spec, _, summary = w004_run
    warnings = json.loads(summary)["warnings"]
    (w,) = [w for w in warnings if w.get("code") == "W004"]
    assert w["where"].startswith(f"{spec}:") and "entries" in w["message"]
    assert json.loads(summary)["verified"] is True  # built-in vocabulary only


def test_a_flow_name_from_the_checkpoint_that_the_spec_lacks_says_so(w004_run, tmp_path, cli):
    _, out, _ = w004_run
    other = tmp_path / "other.flow"
    other.write_text(W004_SPEC.replace("flow halves", "flow quarters"))
    rc, _, err = cli("eval", other, "--checkpoint", out / "checkpoint.pt")
    assert rc == 1
    assert f"{other} has no flow `halves`" in err
    assert "that name comes from the checkpoint" in err and "--flow NAME" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "x.flow", "--threads", "0"],
        ["train", "x.flow", "--steps", "0"],
        ["train", "x.flow", "--batch", "0"],
        ["train", "x.flow", "--lr", "0"],
        ["train", "x.flow", "--lr", "nan"],
        ["train", "x.flow", "--clip", "-1"],
        ["train", "x.flow", "--bits", "9"],
        ["train", "x.flow", "--warmup", "-1"],
        ["train", "x.flow", "--seed", "-1"],
        ["train", "x.flow", "--val-every", "-1"],
        ["train", "x.flow", "--checkpoint-every", "-2"],
        ["train", "x.flow", "--val-images", "0"],
        ["train", "x.flow", "--pretrain-steps", "-1"],
        ["train", "x.flow", "--recon-warn", "-1"],
        ["eval", "--checkpoint", "c.pt", "--temperature", "-1"],
        ["eval", "--checkpoint", "c.pt", "--samples", "0"],
        ["eval", "--checkpoint", "c.pt", "--temperatures", "0.5", "-0.1"],
        ["eval", "--checkpoint", "c.pt", "--val-images", "0"],
        ["sample", "--checkpoint", "c.pt", "--temperature", "-1"],
        ["sample", "--checkpoint", "c.pt", "--n", "0"],
        ["sample", "--checkpoint", "c.pt", "--seed", "-3"],
        ["sample", "--checkpoint", "c.pt", "--threads", "0"],
    ],
)
def test_out_of_range_numbers_are_usage_errors(argv, cli):
    rc, _, err = cli(*argv)
    flag = next(a for a in reversed(argv) if a.startswith("--"))
    assert rc == 2 and f"argument {flag}" in err, err


def test_zero_keeps_its_meaning_for_val_and_sample_every():
    from flowspec.cli import build_parser

    a = build_parser().parse_args(
        ["train", "x.flow", "--val-every", "0", "--sample-every", "0", "--checkpoint-every", "0"]
    )
    assert (a.val_every, a.sample_every, a.checkpoint_every) == (0, 0, 0)
