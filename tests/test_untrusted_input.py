"""Untrusted input: loading checkpoints safely, refusing a checkpoint of another model,
specs that stay data, and clear errors for bad inputs at run time, through the Python API
and the CLI.

* Checkpoints are plain data read with ``weights_only=True``: a pickle that would run code
  is refused without running it; empty, truncated and corrupted files say so.
* A checkpoint records the IR digest of its model; ``evaluate`` / ``sample`` / ``train
  --resume`` refuse another model and name what differs, unless ``strict=False``
  (``--strict false``), which loads the parameters that still fit.
* A spec never executes code. Already tested elsewhere, not repeated here: imports resolve
  relative to the importing file (``test_language_files.py::
  test_import_is_relative_to_the_importing_file``) and a missing import is an error at its
  span (``test_errors_names.py``, row ``missing_import``).
* Bad inputs: images of the wrong size or channel count, a condition of the wrong shape,
  NaN/Inf in a batch and an empty data folder each give an error that names what was
  expected and where it is declared (exit status 1 and no traceback from the CLI).

Models are tiny (one or two steps, hidden=4) so the whole file runs in well under a minute.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import flowspec
import runtime
from flowspec.api import analyze
from runtime import RunError
from runtime import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]

SPEC = """flowspec 0.1
flow tiny(K = 1, hidden = 4, res = false) {
  input 1 x 32 x 32
  prior gaussian learned
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine hidden=hidden; attention imap residual=res }
    split prior=learned
  }
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine hidden=hidden }
  }
  train {
    task generation
    data mnist5k pad=2
    bits 5
    batch 4
    optimizer adam lr=1e-3
    steps 2
  }
}

flow tiny_sr(hidden = 4) {
  input 1 x 24 x 24
  condition lr: image 1 x 6 x 6 encoder=convnet(blocks=1, features=4)
  prior gaussian learned on=lr
  level {
    squeeze
    step x 1 { actnorm; invconv; coupling affine on=lr hidden=hidden }
  }
}
"""
INPUT_LINE = 3  # `input 1 x 32 x 32` of flow tiny
COND_LINE = 26  # `condition lr: ...` of flow tiny_sr
QUICK = {
    "val_every": 2,
    "sample_every": 100,
    "checkpoint_every": 2,
    "val_images": 8,
    "progress": False,
}


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "tiny.flow"
    path.write_text(SPEC)
    assert path.read_text().splitlines()[INPUT_LINE - 1].strip().startswith("input 1 x 32")
    assert path.read_text().splitlines()[COND_LINE - 1].strip().startswith("condition lr")
    return path


@pytest.fixture(scope="module")
def run(spec_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-step run of flow `tiny` (hidden=4, res=false)."""
    out = tmp_path_factory.mktemp("run") / "run"
    runtime.train(spec_file, flow="tiny", out=out, **QUICK)
    return out


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _cli_process(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowspec.cli", *map(str, args)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# --------------------------------------------------------------------------- safe loading


def test_checkpoints_are_read_with_weights_only_and_record_the_digest(
    run: Path, spec_file: Path, monkeypatch
) -> None:
    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    ck = ckpt.load(run / "checkpoint.pt")
    assert seen == [True]
    assert ck["digest"] == flowspec.load(spec_file, flow="tiny").digest()
    assert json.loads((run / "summary.json").read_text())["digest"] == ck["digest"]
    # the IR stored beside it describes the same model
    assert ckpt.stored_spec(ck).digest() == ck["digest"]


class _RunsCode:
    """Unpickling this would create a file: the proof that no code ran is its absence."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "model": {"w": _RunsCode(marker)}}, path)
    with pytest.raises(RunError) as e:
        ckpt.load(path)
    assert not marker.exists()
    msg = str(e.value)
    assert "weights_only=True" in msg and "could run code" in msg
    assert "(it asks for `io.open`)" in msg
    assert "weights_only` set to `False`" not in msg  # never advise the unsafe way


@pytest.mark.parametrize(
    "damage, match",
    [
        ("empty", "is empty"),
        ("truncated", "truncated or corrupted"),
        ("garbage", "not a PyTorch checkpoint"),
        ("tensor", "not a flowspec checkpoint"),
        ("no_model", "not a flowspec checkpoint"),
        ("model_not_dict", "its `model` is not a state dict"),
    ],
)
def test_damaged_checkpoints_give_clear_errors(
    run: Path, tmp_path: Path, damage: str, match: str
) -> None:
    good = (run / "checkpoint.pt").read_bytes()
    path = tmp_path / "bad.pt"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif damage == "tensor":
        torch.save(torch.ones(3), path)
    elif damage == "no_model":
        torch.save({"format": ckpt.FORMAT, "step": 3}, path)
    else:
        torch.save({"format": ckpt.FORMAT, "model": [1, 2]}, path)
    with pytest.raises(RunError, match=match):
        ckpt.load(path)
    with pytest.raises(RunError, match=match):  # and through every entry point
        runtime.evaluate(None, path)


def test_corrupted_checkpoint_through_the_cli(run: Path, tmp_path: Path, spec_file: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    good = (run / "checkpoint.pt").read_bytes()
    path.write_bytes(good[: len(good) - 100])
    p = _cli_process("eval", spec_file, "--flow", "tiny", "--checkpoint", path)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("flowspec eval: error:") and "truncated or corrupted" in p.stderr


# --------------------------------------------------------------------------- model identity


def test_another_model_is_refused_naming_what_differs(run: Path, spec_file: Path) -> None:
    ck = run / "checkpoint.pt"
    with pytest.raises(RunError) as e:
        runtime.evaluate(spec_file, ck, flow="tiny", overrides={"hidden": 6})
    msg = str(e.value)
    assert "belongs to another model" in msg
    assert "`level1.step01.coupling` hidden=4->6" in msg
    assert "`level2.step01.coupling` hidden=4->6" in msg
    assert "--strict false" in msg
    with pytest.raises(RunError, match=r"`level1.step02.actnorm` \(actnorm\) is new"):
        runtime.sample(
            spec_file, ck, flow="tiny", overrides={"K": 2}, n=1, output=run.parent / "x.png"
        )
    # parameters of another shape cannot be loaded even when asked to
    with pytest.raises(RunError, match="changed shape"):
        runtime.evaluate(spec_file, ck, flow="tiny", overrides={"hidden": 6}, strict=False)


def test_strict_false_loads_what_still_fits(run: Path, spec_file: Path, capsys) -> None:
    # residual=true has the same parameters but computes another map: refused by default
    with pytest.raises(RunError, match=r"`level1.step01.attention` residual=False->True"):
        runtime.evaluate(spec_file, run / "checkpoint.pt", overrides={"res": True})
    m = runtime.evaluate(
        spec_file,
        run / "checkpoint.pt",
        overrides={"res": True},
        strict=False,
        out=run.parent / "loose",
    )
    assert m["step"] == 2 and m["bpd"] > 0
    assert "residual=False->True" in capsys.readouterr().err


def test_a_checkpoint_from_before_a_new_argument_still_loads(
    run: Path, spec_file: Path, tmp_path: Path
) -> None:
    """Checkpoints written before `residual` existed: the argument is absent from their IR
    (so the digest differs), but its default is the old behaviour: the same model."""
    ck = ckpt.load(run / "checkpoint.pt")
    ir = json.loads(ck["ir"])
    for layer in ir["layers"]:
        layer["args"].pop("residual", None)
    ck["ir"] = json.dumps(ir)
    ck["digest"] = ckpt.FlowSpec.model_validate(ir).digest()
    old = tmp_path / "old.pt"
    torch.save(ck, old)
    assert ck["digest"] != flowspec.load(spec_file, flow="tiny").digest()
    m = runtime.evaluate(spec_file, old, out=tmp_path)  # strict, and no complaint
    assert m["step"] == 2
    with pytest.raises(RunError, match="residual=False->True"):  # a real change still counts
        runtime.evaluate(spec_file, old, overrides={"res": True})


def test_resume_refuses_another_model_through_the_cli(
    run: Path, spec_file: Path, tmp_path: Path, cli
) -> None:
    out = tmp_path / "run"
    runtime.train(spec_file, flow="tiny", out=out, **QUICK)
    args = (
        "train",
        spec_file,
        "--flow",
        "tiny",
        "--out",
        out,
        "--resume",
        "--steps",
        4,
        "--no-progress",
    )
    rc, _, err = cli(*args, "--set", "res=true")
    assert rc == 1 and "belongs to another model" in err and "residual=False->True" in err
    rc, _, err = cli(*args, "--set", "res=true", "--strict", "false")
    assert rc == 0, err
    assert "--strict false" in err
    ck = ckpt.load(out / "checkpoint.pt")
    assert (
        ck["step"] == 4
        and ck["digest"] == flowspec.load(spec_file, flow="tiny", overrides={"res": True}).digest()
    )
    rc, _, err = cli(*args, "--strict", "maybe")
    assert rc == 2 and "expected true or false" in err


# --------------------------------------------------------------------------- no code in specs

#: What reads a spec: every module ``flowspec check`` loads (test below) but plugins.py and
#: importing.py, and the formatter, the diagram graph and verify. (plugins.py imports by
#: name, but only names that Python code, the command line, FLOWSPEC_PLUGINS or installed
#: entry points give it: see test_a_spec_never_causes_an_import.)
FRONT_END = [
    "api",
    "arguments",
    "ast",
    "check",
    "codes",
    "datasets",
    "errors",
    "evaluate",
    "flowgraph",
    "fmt",
    "fmt_layout",
    "interpret",
    "ir",
    "kinds",
    "loader",
    "parse",
    "parse_tree",
    "placement",
    "recipe",
    "recipe_check",
    "recipe_schema",
    "reference",
    "resolve",
    "syntax_errors",
    "values",
    "verify",
    "verify_prior",
    "verify_reduce",
]
#: Calls that would run or load code, or run a program.
FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_ATTRS = {
    ("importlib", "import_module"),
    ("os", "system"),
    ("os", "popen"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("runpy", "run_path"),
    ("subprocess", "run"),
    ("subprocess", "Popen"),
    ("builtins", "eval"),
}


def test_the_front_end_list_holds_every_module_check_loads() -> None:
    """A module added to the check path (a split, a new pass) joins FRONT_END."""
    code = (
        "import sys; from flowspec.api import analyze; "
        "analyze('specs/fullglow_cityscapes.flow', all_flows=True); "
        "print(' '.join(m for m in sys.modules if m.startswith('flowspec.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = {m.split(".")[1] for m in out if m.count(".") == 1}
    # plugins.py, importing.py and registry.py import by name what code, not a spec, names
    # (registry.py: the files flowspec.layers.BUILT_IN defers to, whose keys a spec only picks
    # among); layers is the package of declarations
    assert loaded - {"plugins", "importing", "registry", "layers"} <= set(FRONT_END), sorted(
        loaded - set(FRONT_END)
    )


@pytest.mark.parametrize("module", FRONT_END)
def test_the_front_end_has_no_code_execution_path(module: str) -> None:
    """What reads a spec (parse, resolve, evaluate, check, ...) never calls eval/exec or
    imports by name: `let` expressions are evaluated by our own tree walker."""
    path = ROOT / "flowspec" / f"{module}.py"
    tree = ast.parse(path.read_text(), str(path))
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in FORBIDDEN_NAMES:
            bad.append(f"{f.id}() at line {node.lineno}")
        elif (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and (f.value.id, f.attr) in FORBIDDEN_ATTRS
        ):
            bad.append(f"{f.value.id}.{f.attr}() at line {node.lineno}")
    assert not bad, f"flowspec/{module}.py: {bad}"


def test_a_spec_never_causes_an_import(tmp_path: Path, monkeypatch) -> None:
    """A layer named like a module, an argument naming one: compiler errors, no import."""
    (tmp_path / "evil_plugin.py").write_text(
        f"import pathlib\npathlib.Path({str(tmp_path / 'ran')!r}).touch()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    text = "flow f {\n  input 2 x 4 x 4\n  evil_plugin\n  coupling affine net=evil_plugin\n}\n"
    _, diags = analyze("e.flow", text=text)
    assert [d.code for d in diags if d.severity == "error"] == ["E104", "E122"]
    assert "--plugin" in diags[0].render()
    assert not (tmp_path / "ran").exists() and "evil_plugin" not in sys.modules


def test_a_spec_that_looks_like_code_stays_data(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    payload = tmp_path / "payload.py"
    payload.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n")
    main = tmp_path / "main.flow"
    main.write_text(
        "flowspec 0.1\n"
        f"let s = {json.dumps(code)}\n"
        "flow f(tag = s) {\n"
        "  input 2 x 4 x 4\n"
        "  actnorm\n"
        f"  train {{ data {json.dumps(code)} }}\n"
        "}\n"
    )
    spec = flowspec.load(main)
    assert spec.params["tag"] == code and spec.train["data"].value == code
    # importing a Python file only ever parses it as .flow text (a syntax error)
    importer = tmp_path / "imp.flow"
    importer.write_text('import "payload.py" as p\nflow f {\n  input 2 x 4 x 4\n}\n')
    with pytest.raises(flowspec.FlowSpecError) as e:
        flowspec.load(importer)
    assert "payload.py" in str(e.value)
    # and a run with the code as its data path is just a missing path
    with pytest.raises(RunError, match="neither a built-in data set nor an existing path"):
        runtime.train(spec, out=tmp_path / "run", steps=1, progress=False)
    assert not marker.exists()


# --------------------------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def model(spec_file: Path):
    return flowspec.compile(spec_file, flow="tiny", device="cpu")


@pytest.mark.parametrize(
    "shape", [(2, 3, 32, 32), (2, 1, 28, 28), (2, 1, 64, 64), (1, 32, 32), (2, 4, 16, 16)]
)
def test_images_of_the_wrong_size_name_the_input_line(
    model, spec_file: Path, shape: tuple[int, ...]
) -> None:
    x = torch.rand(shape) - 0.5
    for call in (model, model.log_prob):
        with pytest.raises(ValueError) as e:
            call(x)
        msg = str(e.value)
        assert "C×H×W = 1x32x32" in msg and f"{spec_file}:{INPUT_LINE}" in msg
        assert str(tuple(shape)) in msg


def test_condition_of_the_wrong_shape_names_its_declaration(spec_file: Path) -> None:
    m = flowspec.compile(spec_file, flow="tiny_sr", device="cpu")
    x = torch.rand(2, 1, 24, 24) - 0.5
    where = f"{spec_file}:{COND_LINE}"
    with pytest.raises(ValueError) as e:
        m(x, {"lr": torch.rand(2, 1, 8, 8)})
    assert "(2, 1, 6, 6)" in str(e.value) and where in str(e.value)
    with pytest.raises(ValueError, match="missing condition `lr`") as e:
        m(x, {"hr": torch.rand(2, 1, 6, 6)})
    assert where in str(e.value)
    with pytest.raises(ValueError, match="is conditional"):
        m(x)
    with pytest.raises(ValueError, match=r"\(2, 1, 6, 6\)"):  # batch sizes must agree
        m(x, {"lr": torch.rand(3, 1, 6, 6)})


def _poison(monkeypatch, at_call: int, value: float) -> None:
    """Make the `at_call`-th training batch (1 = the actnorm init batch) hold `value`, and
    that batch whenever it is made again (a step's batch is a function of the step)."""
    from runtime.tasks import Generation

    real = Generation.inputs
    calls: dict = {"n": 0, "noise": None}

    def inputs(self, images, maps, noise, device):
        x, cond = real(self, images, maps, noise, device)
        if images.shape[0] != 4:  # a validation batch (8 images), not a training batch
            return x, cond
        calls["n"] += 1
        if calls["n"] == at_call:
            calls["noise"] = noise
        if calls["noise"] is not None and torch.equal(noise, calls["noise"]):
            x = x.clone()
            x[1, 0, 3, 4] = value
        return x, cond

    monkeypatch.setattr(Generation, "inputs", inputs)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_batch_is_refused_before_the_loss(
    spec_file: Path, tmp_path: Path, monkeypatch, value: float
) -> None:
    out = tmp_path / "run"
    _poison(monkeypatch, 3, value)  # init batch, step 1, then step 2's batch
    with pytest.raises(RunError) as e:
        runtime.train(spec_file, flow="tiny", out=out, steps=4, **{**QUICK, "val_every": 10})
    msg = str(e.value)
    assert msg.startswith("the training batch of step 2 holds NaN or Inf in its images")
    assert "1 of 4 samples" in msg and "of the train split of `mnist5k`" in msg
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1]  # no loss computed for step 2


def test_empty_data_folder(spec_file: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunError) as e:
        runtime.train(
            spec_file, flow="tiny", data=str(empty), out=tmp_path / "run", progress=False
        )
    assert f"{empty} is an empty folder" in str(e.value)
    assert "expected PNG/JPEG images" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_bad_inputs_through_the_cli(spec_file: Path, tmp_path: Path, cli, monkeypatch) -> None:
    base = ("train", spec_file, "--flow", "tiny", "--no-progress", "--steps", 3)
    empty = tmp_path / "empty"
    empty.mkdir()
    errors = []

    def fails(*args: object) -> str:
        rc, _, err = cli(*base, *args)
        assert rc == 1, err
        errors.append(err)
        return err.strip().splitlines()[-1]

    assert "is an empty folder" in fails("--data", empty, "--out", tmp_path / "a")
    assert "1x28x28 after pad=0 but the spec's input is 1x32x32" in fails(
        "--data", "mnist5k pad=0", "--out", tmp_path / "b"
    )
    rc, _, err = cli(*base, "--recon-warn", "-1", "--out", tmp_path / "c")  # a usage error
    assert rc == 2 and "argument --recon-warn: must be a number at least 0, got -1" in err
    _poison(monkeypatch, 2, float("nan"))
    assert "the training batch of step 1 holds NaN or Inf" in fails("--out", tmp_path / "d")
    for err in errors:
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("flowspec train: error:")
