"""The front-end commands of the CLI: `check`, `schema`, usage errors, and the shipped specs.

Most calls run ``flowspec.cli.main`` in-process (fast); a few run a real subprocess to
cover the module entry point and what gets imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flowspec.api import analyze
from flowspec.ir import FlowSpec

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.flow"))  # flows; specs/lib/ holds libraries
LIBS = sorted((ROOT / "specs").rglob("*.flow"))
LIBS = [p for p in LIBS if p not in SPECS]


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT / "specs"))


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


def test_specs_are_found():
    assert {p.name for p in SPECS} >= {"demo.flow", "glow_mnist.flow", "attnflow_mnist.flow"}


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_every_flow_of_every_spec_resolves(path: Path):
    specs, diags = analyze(path, all_flows=True)
    errors = [d.render() for d in diags if d.severity == "error"]
    assert not errors, "\n".join(errors)
    assert specs, "a spec file defines at least one flow"
    for spec in specs:
        assert spec.layers and spec.latents
        total = sum(c * h * w for c, h, w in (z.shape for z in spec.latents))
        assert total == spec.input[0] * spec.input[1] * spec.input[2]
        assert all(layer.in_shape and layer.out_shape for layer in spec.layers)
        assert len({layer.path for layer in spec.layers}) == len(spec.layers), "unique paths"
        assert FlowSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("path", SPECS, ids=_id)
def test_check_prints_every_layer_path_and_the_latents(path: Path, cli):
    rc, out, err = cli("check", path)
    assert rc == 0, err
    assert "Traceback" not in out + err
    specs, _ = analyze(path, all_flows=True)
    for spec in specs:
        assert f"flow {spec.name}  (input " in out
        for layer in spec.layers:
            assert f"  {layer.path} " in out, layer.path
        latents = "latents " + ", ".join(
            f"{z.name} {'x'.join(map(str, z.shape))}" for z in spec.latents
        )
        assert latents in out
    assert out.count("\nlatents ") + out.startswith("latents ") == len(specs)


def test_check_one_flow_with_overrides(cli):
    path = ROOT / "specs" / "glow_mnist.flow"
    rc, out, err = cli("check", path, "--flow", "glow_mnist", "--set", "L=2", "--set", "K=1")
    assert rc == 0, err
    assert "level2.step01.coupling" in out
    assert "level3" not in out and "step02" not in out
    assert "latents z1 2x16x16, z2 8x8x8" in out


def test_check_json_output(cli):
    path = ROOT / "specs" / "demo.flow"
    rc, out, err = cli("check", path, "--format", "json", "--set", "K=1", "--set", "hidden=8")
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["ok"] is True
    assert payload["diagnostics"] == []
    (flow,) = payload["flows"]
    spec = FlowSpec.model_validate(flow)
    assert spec.name == "demo" and spec.params["K"] == 1 and spec.params["hidden"] == 8
    assert spec.layer("level1.step01.coupling").args["hidden"] == 8


def test_check_selects_one_of_several_flows(cli):
    path = ROOT / "specs" / "attnflow_mnist.flow"
    rc, out, err = cli("check", path, "--flow", "attnflow_imap_mnist_3_2_48")
    assert rc == 0, err
    assert out.count("flow ") == 1
    assert "level1.step02.attention" in out and "step03" not in out
    rc, out, err = cli("check", path, "--flow", "no_such_flow")
    assert rc == 1 and "error[E103]" in err


def test_check_passes_a_bool_and_a_word_override(tmp_path: Path, cli):
    p = tmp_path / "typed.flow"
    p.write_text(
        "flow f(lu = true, mode = shuffle, lr = 0.5) {\n  input 4x8x8\n"
        "  invconv lu=lu\n  permute mode=mode\n  train { optimizer adam lr=lr }\n}\n"
    )
    rc, out, err = cli(
        "check",
        p,
        "--format",
        "json",
        "--set",
        "lu=false",
        "--set",
        "mode=reverse",
        "--set",
        "lr=1",
    )
    assert rc == 0, err
    flow = json.loads(out)["flows"][0]
    assert flow["params"] == {"lu": False, "mode": "reverse", "lr": 1.0}
    assert [layer["args"] for layer in flow["layers"]] == [{"lu": False}, {"mode": "reverse"}]


def test_schema_is_a_json_schema(cli):
    rc, out, err = cli("schema")
    assert rc == 0, err
    schema = json.loads(out)
    assert schema["title"] == "FlowSpec" and schema["type"] == "object"
    assert {"name", "input", "layers", "latents", "prior", "conditions", "train"} <= set(
        schema["properties"]
    )
    assert {"LayerIR", "LatentIR", "ConditionIR", "PriorIR", "Span"} <= set(schema["$defs"])
    assert set(schema["required"]) >= {"name", "input", "layers"}
    from flowspec.ir import json_schema

    assert schema == json_schema() and "FlowSpec" in schema["$defs"]  # conditions nest flows


def test_json_of_a_spec_has_exactly_the_schema_properties():
    from flowspec.api import load

    spec = load(ROOT / "specs" / "demo.flow", overrides={"K": 1})
    from flowspec.ir import json_schema

    data = json.loads(spec.model_dump_json())
    schema = json_schema()
    assert set(data) <= set(schema["properties"])
    layer_props = schema["$defs"]["LayerIR"]["properties"]
    assert all(set(layer) <= set(layer_props) for layer in data["layers"])


# ---- usage errors exit 2 ------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["bogus"],  # unknown subcommand
        [],  # no subcommand
        ["check"],  # missing file argument
        ["check", "specs/demo.flow", "--format", "xml"],  # bad choice
        ["check", "specs/demo.flow", "--set", "K"],  # --set without =
        ["fmt"],
    ],
    ids=[
        "unknown-subcommand",
        "no-subcommand",
        "missing-file",
        "bad-format",
        "set-without-eq",
        "fmt-missing-file",
    ],
)
def test_usage_errors_exit_2(args, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc, out, err = cli(*args)
    assert rc == 2
    assert "Traceback" not in out + err
    assert err.strip()


def test_usage_error_exit_code_in_a_real_process():
    p = _run("-m", "flowspec.cli", "check", "specs/demo.flow", "--set", "K")
    assert p.returncode == 2 and "NAME=VALUE" in p.stderr and "Traceback" not in p.stderr
    p = _run("-m", "flowspec.cli", "frobnicate")
    assert p.returncode == 2 and "Traceback" not in p.stderr


@pytest.mark.parametrize("command", ["check", "fmt"])
def test_missing_file_is_reported_without_a_traceback(command, cli, tmp_path: Path):
    rc, out, err = cli(command, tmp_path / "nope.flow")
    assert rc in (1, 2)  # check: 1 (E131), fmt: 2 -- see the report
    assert "nope.flow" in err and "Traceback" not in out + err


@pytest.mark.parametrize(
    ("argv", "frozen", "code"),
    [
        (["check", "specs/demo.flow"], True, 0),
        (["check", "specs/nope.flow"], True, 1),
        (["verify", "specs/nope.flow"], False, 1),  # may import torch: exits as usual
    ],
)
def test_the_console_command_freezes_before_exit_after_front_end_commands_only(
    argv, frozen, code, monkeypatch, capsys
):
    import flowspec.cli

    calls = []
    monkeypatch.setattr(flowspec.cli.gc, "freeze", lambda: calls.append(True))
    monkeypatch.setattr(sys, "argv", ["flowspec", *argv])
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as info:
        flowspec.cli.run()
    assert info.value.code == code  # main's status, whether or not it froze
    assert bool(calls) is frozen
    capsys.readouterr()


# ---- what `check` imports ------------------------------------------------------------------
def test_check_runs_in_a_real_process():
    p = _run("-m", "flowspec.cli", "check", "specs/demo.flow")
    assert p.returncode == 0, p.stderr
    assert "level2.step04.attention" in p.stdout and "latents " in p.stdout


def test_check_does_not_import_torch():
    code = (
        "import sys, flowspec.cli; flowspec.cli.main(['check','specs/demo.flow']); "
        "print('torch' in sys.modules)"
    )
    p = _run("-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"


def test_front_end_modules_do_not_import_torch():
    code = (
        "import sys\nimport flowspec.api, flowspec.fmt, flowspec.kinds, flowspec.check\n"
        "flowspec.api.load('specs/glow_mnist.flow')\nprint('torch' in sys.modules)"
    )
    p = _run("-c", code)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "False"


# ---- library files ------------------------------------------------------------------------
@pytest.mark.parametrize("path", LIBS, ids=_id)
def test_library_files_parse_and_format(path: Path):
    from flowspec.fmt import format_text
    from flowspec.parse import parse

    module = parse(path.read_text(), str(path))
    assert module.items
    assert format_text(format_text(path.read_text())) == format_text(path.read_text())


@pytest.mark.parametrize("path", LIBS, ids=_id)
def test_check_accepts_a_library_file(path: Path, cli):
    rc, _out, err = cli("check", path)
    assert rc == 0, err
