"""The command line on bad input: each defect as a new user met it, and every command
driven through bad arguments, bad files, a closed pipe and a missing device without ever
showing a traceback or an "internal error"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flowspec.api import analyze

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "specs" / "demo.flow"


def errors(text: str) -> list:
    _, diags = analyze("t.flow", text=text)
    return [d for d in diags if d.severity == "error"]


def test_one_error_per_cause_with_where_it_came_from(cli) -> None:
    rc, _, err = cli("check", ROOT / "specs" / "glow_mnist.flow", "--set", "hidden=0")
    assert rc == 1
    assert err.count("error[") == 1 and "1 error in" in err
    assert "in block `glow_step`, instantiated at" in err
    assert "the same error in 96 instances" in err
    assert "set from outside (--set / overrides): hidden=0" in err


def test_a_closed_pipe_is_not_an_error() -> None:
    for args in (["check", str(DEMO)], ["schema"], ["kinds"], ["fmt", str(DEMO)]):
        p = subprocess.Popen(
            [sys.executable, "-m", "flowspec.cli", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        p.stdout.readline()  # like `| head -1`
        p.stdout.close()
        err = p.stderr.read().decode()
        p.wait(timeout=120)
        assert "internal error" not in err and "Traceback" not in err, (args, err)
        assert p.returncode in (0, 141), (args, p.returncode, err)


@pytest.mark.parametrize(
    "device,message",
    [
        ("cuda", "CUDA is not available"),
        ("cuda:3", "CUDA is not available"),
        ("tpu", "unknown device"),
        ("mps", "flowspec runs on cpu or cuda"),
        ("gpu0", "unknown device"),
    ],
)
def test_a_device_this_machine_lacks_is_a_usage_error(cli, device: str, message: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc, _, err = cli("compile", DEMO, "--device", device)
    assert rc == 2 and message in err and "Traceback" not in err


def test_an_unknown_compile_backend_is_a_usage_error_before_any_run_folder(cli, tmp_path) -> None:
    rc, _, err = cli(
        "train",
        DEMO,
        "--compile",
        "nosuchbackend",
        "--out",
        tmp_path / "run",
        "--steps",
        "1",
        "--no-progress",
    )
    assert rc == 2 and "unknown torch.compile backend" in err and "inductor" in err
    assert not (tmp_path / "run").exists()


def test_help_lines_suggest_what_works() -> None:
    split = errors("flow f {\n  input 1 x 4 x 4\n  split\n}\n")
    assert split[0].code == "E202" and "checkerboard" not in split[0].help
    assert "squeeze first" in split[0].help
    squeeze = errors("flow f {\n  input 1 x 28 x 28\n  squeeze factor=3\n}\n")
    assert squeeze[0].code == "E201" and "28->32" not in squeeze[0].help
    assert "multiple of 3" in squeeze[0].help


def test_two_priors_and_an_unknown_version_are_errors() -> None:
    two = errors("flow f {\n  input 4 x 4 x 4\n  prior gaussian\n  prior gaussian learned\n}\n")
    assert [d.code for d in two] == ["E152"] and "first is at 3:3" in two[0].notes[0]
    # a child flow may replace its parent's prior
    specs, diags = analyze(
        "t.flow",
        "c",
        text="flow p {\n  input 4 x 4 x 4\n  prior gaussian\n"
        "}\nflow c extends p {\n  prior gaussian learned\n}\n",
    )
    assert not diags and specs[0].prior.learned
    version = errors("flowspec 9.9\nflow f {\n  input 4 x 4 x 4\n}\n")
    assert version[0].code == "E011" and "9.9" in version[0].message
    assert not errors("flowspec 0.2\nflow f {\n  input 4 x 4 x 4\n}\n")


def test_version_flag(cli) -> None:
    rc, out, _ = cli("--version")
    assert rc == 0 and out.startswith("flowspec ")


def test_flow_parameters_declare_their_values(cli) -> None:
    text = (
        "flow f(L = 2 in 1..3, mode = reverse in [reverse, shuffle]) {\n"
        "  input 4 x 8 x 8\n  for l in 1..L { permute mode=mode }\n}\n"
    )
    assert not errors(text)
    low = analyze("t.flow", text=text, overrides={"L": 0})[1]
    assert low[0].code == "E124" and "outside its declared range 1..3" in low[0].message
    typo = analyze("t.flow", text=text, overrides={"mode": "shufle"})[1]
    assert typo[0].code == "E124" and typo[0].help == "did you mean `shuffle`?"
    g = analyze("t.flow", "g", text=text + "flow g extends f(L = 7) {\n}\n")[1]
    assert g[0].code == "E124" and "set by the flow that extends it" in g[0].notes[0]
    rc, _, err = cli("check", ROOT / "specs" / "glow_mnist.flow", "--set", "L=0")
    assert rc == 1 and "outside its declared range" in err


def test_shipped_position_parameter_is_checked(cli) -> None:
    rc, _, err = cli(
        "check", ROOT / "specs" / "ablations.flow", "--flow", "position_imap", "--set", "pos=7"
    )
    assert rc == 1 and "`pos` is 7, outside its declared range 1..4" in err


SPEC_COMMANDS = [
    ["check"],
    ["fmt"],
    ["compile"],
    ["render", "-o", "{tmp}/x.svg"],
    ["verify"],
    ["train", "--steps", "1", "--out", "{tmp}/run", "--no-progress"],
    ["eval", "--checkpoint", "{tmp}/none.pt"],
    ["sample", "--checkpoint", "{tmp}/none.pt", "-o", "{tmp}/x.png"],
]


def _bad_files(tmp: Path) -> dict[str, Path]:
    binary = tmp / "binary.flow"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    broken = tmp / "broken.flow"
    broken.write_text("flow f {\n  input 1 x 8 x 8\n  squeeze\n  coupling affine hidden=oops\n")
    return {"missing": tmp / "nope.flow", "folder": tmp, "binary": binary, "broken": broken}


@pytest.mark.parametrize("command", SPEC_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("case", ["missing", "folder", "binary", "broken"])
def test_no_command_shows_a_traceback_for_a_bad_file(cli, tmp_path, command, case) -> None:
    spec = _bad_files(tmp_path)[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in command[1:]]
    rc, out, err = cli(command[0], spec, *args)
    assert rc in (1, 2), (command, case, rc, out, err)
    assert "Traceback" not in err and "internal error" not in err, (command, case, err)
    assert err.strip(), (command, case)


@pytest.mark.parametrize(
    "args",
    [
        ["check", str(DEMO), "--set", "K"],
        ["check", str(DEMO), "--set", "nosuch=1"],
        ["check", str(DEMO), "--flow", "nosuch"],
        ["compile", str(DEMO), "--seed", "x"],
        ["render", str(DEMO), "-o", "x.gif"],
        ["verify", str(DEMO), "--format", "yaml"],
        ["kinds", "--plugin", "no_such_module_here"],
        ["train", str(DEMO), "--steps", "-3", "--no-progress"],
        ["sample", "--checkpoint", "nope.pt", "--n", "x"],
        ["nosuchcommand"],
    ],
)
def test_no_command_shows_a_traceback_for_a_bad_argument(cli, args) -> None:
    rc, _, err = cli(*args)
    assert rc in (1, 2), (args, rc, err)
    assert "Traceback" not in err and "internal error" not in err, (args, err)


def test_an_argument_validator_says_why() -> None:
    odd = errors("flow f {\n  input 4 x 8 x 8\n  split prior=convlstm kernel=4\n}\n")
    assert odd[0].code == "E122" and "kernel must be odd" in odd[0].message
