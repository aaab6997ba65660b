"""train, eval and sample on bad input and broken runs, driven through the CLI as a new user
meets them.

One tiny Glow (1x8x8, 560 parameters) on scikit-learn's real 8x8 digits keeps every run to
a second or two; a second copy of its checkpoint is broken on purpose (a NaN parameter, an
actnorm scale that overflows the inverse) to see eval and sample refuse it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

TINY = """\
flow tiny {
  input 1x8x8
  prior gaussian
  level {
    squeeze
    step x 1 { actnorm; invconv; coupling affine hidden=8 }
  }
  train { task generation; data %s; batch 8; steps 2; bits 5 }
}
"""


def write_spec(folder: Path, data: str = "digits", name: str = "tiny.flow") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(TINY % data)
    return path


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity (which json.dumps writes by default)."""

    def refuse(token: str) -> None:
        raise ValueError(f"not JSON: {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A trained tiny run, plus two broken copies of its checkpoint."""
    import runtime

    root = tmp_path_factory.mktemp("tiny")
    spec = write_spec(root)
    out = root / "run"
    runtime.train(str(spec), out=str(out), progress=False)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    nan = {**ck, "model": dict(ck["model"])}
    w = ck["model"]["layers.3.net.0.weight"].clone()
    w[0, 0, 0, 0] = float("nan")
    nan["model"]["layers.3.net.0.weight"] = w
    torch.save(nan, root / "nan.pt")
    over = {**ck, "model": dict(ck["model"])}
    # actnorm's inverse multiplies by exp(87) ~ 6e37: latents past ~5 overflow to Inf
    over["model"]["layers.1.log_scale"] = torch.full_like(ck["model"]["layers.1.log_scale"], -87.0)
    torch.save(over, root / "overflow.pt")
    return {
        "root": root,
        "spec": spec,
        "out": out,
        "nan": root / "nan.pt",
        "overflow": root / "overflow.pt",
    }


# ----------------------------------------------------------------------- item 2: non-finite


def test_eval_and_sample_refuse_a_nan_checkpoint(cli, run, tmp_path) -> None:
    rc, out, err = cli("eval", run["spec"], "--checkpoint", run["nan"], "--out", tmp_path)
    assert rc == 1 and out == ""
    assert "non-finite parameters" in err and "layer `level1.step01.coupling`" in err
    assert "tiny.flow:6:" in err and "net.0.weight" in err and "NaN" in err
    assert "Traceback" not in err and not (tmp_path / "eval.json").exists()
    rc, out, err = cli("sample", run["spec"], "--checkpoint", run["nan"], "-o", tmp_path / "g.png")
    assert rc == 1 and "level1.step01.coupling" in err
    assert not (tmp_path / "g.png").exists()


def test_eval_writes_strict_json(cli, run, tmp_path) -> None:
    rc, out, err = cli(
        "eval", run["spec"], "--checkpoint", run["out"] / "checkpoint.pt", "--out", tmp_path
    )
    assert rc == 0, err
    printed = strict_json(out)
    written = strict_json((tmp_path / "eval.json").read_text())
    assert printed == written and np.isfinite(written["bpd"])


def test_sample_counts_and_names_nonfinite_samples(cli, run, tmp_path) -> None:
    grid = tmp_path / "g.png"
    rc, out, err = cli(
        "sample", run["spec"], "--checkpoint", run["overflow"], "-o", grid, "--temperature", "2"
    )
    assert rc == 0, err
    assert "samples at temperature 2 are non-finite (drawn mid-grey)" in err
    assert "first goes non-finite in layer `level1.step01.actnorm`" in err
    n_bad = int(err.split(" of 64 samples at temperature 2")[0].split()[-1])
    assert 0 < n_bad < 64 and grid.is_file()
    rc, out, err = cli(
        "sample", run["spec"], "--checkpoint", run["overflow"], "-o", grid, "--temperature", "40"
    )
    assert rc == 1 and "all 64 samples at temperature 40 are non-finite" in err


# ----------------------------------------------------------------------- item 4: compile


def test_unknown_compile_backend_is_an_error_without_a_run_folder(cli, run, tmp_path) -> None:
    import runtime

    out = tmp_path / "r"
    rc, _, err = cli(
        "train", run["spec"], "--out", out, "--no-progress", "--compile", "nosuchbackend"
    )
    assert rc in (1, 2) and "nosuchbackend" in err and "inductor" in err
    assert "internal error" not in err and not out.exists()
    with pytest.raises(runtime.RunError, match="no such backend.*No run folder was made"):
        runtime.train(
            str(run["spec"]),
            out=str(out),
            progress=False,
            build_options={"compile": "nosuchbackend"},
        )
    assert not out.exists()


# ----------------------------------------------------------------------- item 5: --data


def test_another_data_set_does_not_inherit_the_spec_options(cli, tmp_path) -> None:
    spec = write_spec(tmp_path, "mnist5k resize=true pad=1")
    rc, _, err = cli("train", spec, "--out", tmp_path / "r", "--no-progress", "--data", "digits")
    assert rc == 0, err
    recipe = json.loads((tmp_path / "r" / "recipe.json").read_text())
    assert recipe["data"] == "digits" and recipe["data_options"] == {}


def test_same_data_set_merges_options() -> None:
    import flowspec
    from runtime.recipe import resolve_recipe

    spec = flowspec.loads(TINY % "mnist5k resize=true pad=1")
    r = resolve_recipe(spec, data="mnist5k pad=0")
    assert r.data == "mnist5k" and r.data_options == {"resize": True, "pad": 0}


def test_unknown_data_option_has_a_did_you_mean(cli, run, tmp_path) -> None:
    rc, _, err = cli(
        "train", run["spec"], "--out", tmp_path / "r", "--no-progress", "--data", "mnist5k padd=2"
    )
    assert rc == 1 and "unknown data option `padd`" in err and "did you mean `pad`" in err
    assert "channels, limit, pad, resize" in err and not (tmp_path / "r").exists()


# ----------------------------------------------------------------------- item 10: -o format


def test_sample_format_follows_the_extension(cli, run, tmp_path) -> None:
    jpg = tmp_path / "grid.jpg"
    rc, out, err = cli(
        "sample",
        run["spec"],
        "--checkpoint",
        run["out"] / "checkpoint.pt",
        "-o",
        jpg,
        "--temperature",
        "0.3",
    )
    assert rc == 0, err
    assert jpg.read_bytes()[:3] == b"\xff\xd8\xff"
    with Image.open(jpg) as im:
        assert im.format == "JPEG"
    rc, out, err = cli(
        "sample",
        run["spec"],
        "--checkpoint",
        run["out"] / "checkpoint.pt",
        "-o",
        tmp_path / "grid.xyz",
    )
    assert rc == 2 and "cannot write a `.xyz` image" in err and ".png" in err
    assert not (tmp_path / "grid.xyz").exists()


# ----------------------------------------------------------------------- item 11: stopping


def test_ctrl_c_names_the_last_checkpoint_and_the_resume_command(
    cli, monkeypatch, tmp_path
) -> None:
    from runtime.objective import Objective

    spec = write_spec(tmp_path)
    out = tmp_path / "r"
    real = Objective.forward
    calls = {"train": 0}

    def forward(self, batch):
        if self.flow.training:
            calls["train"] += 1
            if calls["train"] == 4:  # Ctrl-C during step 4; step 2 was checkpointed
                raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(Objective, "forward", forward)
    rc, _, err = cli(
        "train",
        spec,
        "--out",
        out,
        "--no-progress",
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--lr",
        "2e-3",
    )
    assert rc != 0 and "interrupted" in err
    assert f"the last checkpoint is step 2 ({out / 'checkpoint.pt'})" in err
    command = err.split("continue with:\n")[1].strip().splitlines()[0]
    assert command.endswith("--resume") and "--steps 6" in command and "--lr 0.002" in command
    monkeypatch.setattr(Objective, "forward", real)
    words = shlex.split(command)
    assert words[:2] == ["flowspec", "train"]
    rc, _, err = cli(*words[1:], "--no-progress")
    assert rc == 0, err
    assert "changed recipe" not in err
    assert json.loads((out / "summary.json").read_text())["resumed_from"] == 2


def test_nan_stop_before_any_checkpoint_does_not_advise_resuming(cli, run, tmp_path) -> None:
    rc, _, err = cli(
        "train",
        run["spec"],
        "--out",
        tmp_path / "r",
        "--no-progress",
        "--lr",
        "1e30",
        "--steps",
        "5",
    )
    assert rc == 1 and "training stopped at step" in err
    assert "no checkpoint was written yet" in err and "--resume" not in err


# ----------------------------------------------------------------------- item 12: data roots


def _digit_folder(folder: Path, n: int = 20) -> None:
    from runtime.data import load_dataset

    folder.mkdir(parents=True)
    for i, img in enumerate(load_dataset("digits", "all", limit=n).images):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}.png")


def test_data_root_on_a_spec_line_is_relative_to_the_spec_file(cli, tmp_path, monkeypatch) -> None:
    write_spec(tmp_path / "specs", 'images root="digits_png"')
    _digit_folder(tmp_path / "specs" / "digits_png")
    monkeypatch.chdir(tmp_path)  # the folder is not beside the working folder
    rc, _, err = cli("train", "specs/tiny.flow", "--out", "r1", "--no-progress")
    assert rc == 0, err
    recipe = json.loads((tmp_path / "r1" / "recipe.json").read_text())
    assert recipe["data_options"]["root"] == str(tmp_path / "specs" / "digits_png")

    missing = write_spec(tmp_path / "specs", 'images root="elsewhere"', "missing.flow")
    rc, _, err = cli("train", missing, "--out", "r2", "--no-progress")
    assert rc == 1 and str(tmp_path / "specs" / "elsewhere") in err
    assert "relative data path is taken from the spec file's folder" in err


def test_data_root_on_the_command_line_is_relative_to_the_working_folder(
    cli, tmp_path, monkeypatch
) -> None:
    spec = write_spec(tmp_path / "specs")
    _digit_folder(tmp_path / "work" / "pngs")
    monkeypatch.chdir(tmp_path / "work")
    rc, _, err = cli("train", spec, "--out", "r", "--no-progress", "--data", "images root=pngs")
    assert rc == 0, err
    rc, _, err = cli("train", spec, "--out", "r2", "--no-progress", "--data", "celeba")
    assert rc == 1 and str(tmp_path / "work" / "celeba") in err and "no package ships" in err


# ----------------------------------------------------------------------- item 14: progress bar


def test_progress_bar_labels_last_step_and_running_mean(cli, run, tmp_path) -> None:
    rc, _, err = cli("train", run["spec"], "--out", tmp_path / "r")
    assert rc == 0, err
    assert "bpd: last step " in err and ", mean of last 2 " in err and "img/s" in err
    assert "loss=" not in err


# ----------------------------------------------------------------------- item 6: --strict


def test_strict_false_says_what_it_does_by_layer_path(cli, run, tmp_path) -> None:
    ck = run["out"] / "checkpoint.pt"
    wider = tmp_path / "wider.flow"
    wider.write_text((TINY % "digits").replace("hidden=8", "hidden=16"))
    rc, _, err = cli("eval", wider, "--checkpoint", ck, "--out", tmp_path)
    assert rc == 1 and "`level1.step01.coupling` hidden=8->16" in err and "--strict false" in err
    rc, out, err = cli("eval", wider, "--checkpoint", ck, "--out", tmp_path, "--strict", "false")
    # the warning promises to load only where the parameters keep their shapes; they do not
    assert "loading it by layer path where the parameters keep their shapes" in err
    assert rc == 1 and "5 changed shape" in err
    assert "level1.step01.coupling: net.0.weight 8x2x3x3 -> 16x2x3x3" in err
    assert "layers." not in err and not (tmp_path / "eval.json").exists()


def test_strict_false_matches_parameters_by_layer_path(cli, run, tmp_path) -> None:
    import re

    fewer = tmp_path / "fewer.flow"  # without invconv: the coupling moves from layers.3 to 2
    fewer.write_text((TINY % "digits").replace("actnorm; invconv;", "actnorm;"))
    rc, _, err = cli(
        "eval",
        fewer,
        "--checkpoint",
        run["out"] / "checkpoint.pt",
        "--out",
        tmp_path,
        "--strict",
        "false",
    )
    assert rc == 0, err
    loaded = re.search(r"loaded (\d+) of the model's (\d+) parameters", err)
    assert loaded and loaded.group(1) == loaded.group(2)  # every layer found its own
    assert "no longer in the model" in err and "level1.step01.invconv: " in err
    assert "changed shape" not in err and "layers." not in err


# ----------------------------------------------------------------------- item 8: memory


def _saved_by_graph(model, n: int) -> int:
    """Bytes the autograd graph of log_prob holds, found by walking it after the fact
    (``_saved_*`` of every node), each storage once, parameters left out: another way to
    the number that ``flowspec compile`` measures with saved-tensor hooks."""
    x = torch.rand((n, *model.spec.input), generator=torch.Generator().manual_seed(1)) - 0.5
    model.eval()
    logp = model.log_prob(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved, stack, seen = {}, [logp.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_"):
                try:
                    value = getattr(node, name)
                except RuntimeError:
                    continue
                for t in value if isinstance(value, (tuple, list)) else [value]:
                    if isinstance(t, torch.Tensor):
                        s = t.untyped_storage()
                        if s.data_ptr() not in params:
                            saved[s.data_ptr()] = s.nbytes()
        stack += [f for f, _ in node.next_functions]
    return sum(saved.values())


def test_compile_reports_the_activation_memory_autograd_really_saves(cli) -> None:
    import re

    import flowspec

    spec = Path(__file__).parent.parent / "specs" / "demo.flow"
    rc, out, err = cli("compile", spec)
    assert rc == 0, err
    size = r"([\d.]+) ([KM])iB"
    found = re.search(rf"activations: {size} per sample \(\+ {size} per batch\)", out)
    assert found, out
    v = found.groups()
    per, fixed = (float(v[i]) * (2**20 if v[i + 1] == "M" else 2**10) for i in (0, 2))
    model = flowspec.compile(flowspec.load(spec), device="cpu", seed=0)
    for n in (1, 4):
        assert per * n + fixed == pytest.approx(_saved_by_graph(model, n), rel=0.01)
    # the old estimate summed the layers' outputs, 4,096 float32 values; autograd saves ~30x
    assert per > 20 * 4096 * 4


def test_a_missing_checkpoint_says_where_it_was_looked_for(
    cli, run, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rc, _, err = cli("eval", run["spec"], "--checkpoint", "runs/x/checkpoint.pt")
    assert rc == 1 and f"looked for {tmp_path / 'runs' / 'x' / 'checkpoint.pt'}" in err


def test_a_failing_sample_grid_never_stops_a_run(tmp_path, monkeypatch, capsys) -> None:
    """Drawing the grids runs the inverse, which a badly trained model can make raise; the
    run warns, goes on, and still writes its checkpoint and summary."""
    import runtime
    from runtime.tasks import Generation

    def broken(*args, **kwargs):
        raise ValueError("cannot convert float NaN to integer")

    monkeypatch.setattr(Generation, "grids", broken)
    spec = write_spec(tmp_path)
    out = tmp_path / "run"
    res = runtime.train(str(spec), out=str(out), progress=False, steps=4, sample_every=2)
    err = capsys.readouterr().err
    assert "no sample grids at step 2 (ValueError: cannot convert float NaN" in err
    assert "no sample grids at step 4" in err
    assert res.step == 4 and (out / "checkpoint.pt").exists() and (out / "summary.json").exists()
    assert not list(out.glob("samples_*.png"))
