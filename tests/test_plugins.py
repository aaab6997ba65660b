"""Users' vocabulary: a plugin written as README's "Writing a layer kind" says, loaded
through each of its five routes, checked, compiled, trained, rendered and verified; and
every way a plugin can be wrong is a clear error naming it, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowspec
from flowspec import plugins
from flowspec.kinds import KINDS, NETS, REGISTRIES, PluginError, count_params

ROOT = Path(__file__).resolve().parents[1]

# The plugin of README's "Writing a layer kind", as a user would write it: the declaration
# in one module, the torch module in another (so that `check` stays torch-free).
DECLARATION = """
import flowspec
from pydantic import Field

class PixArgs(flowspec.Args):
    init: float = Field(0.0, ge=-5.0, le=5.0, description="initial log-scale")

@flowspec.kind
class PixelAffine(flowspec.LayerKind):
    key = "pixaffine"
    Args = PixArgs
    doc = "a learned per-entry scale and shift"
    module = "{torch_module}:PixelAffineModule"
{params}"""

PARAMS = """
    @classmethod
    def params(cls, shape, args, cond_channels):
        return 2 * shape[0] * shape[1] * shape[2]
"""

MODULE = """
import torch
import flowspec

class PixelAffineModule(flowspec.FlowLayer):
    def __init__(self, shape, args, cond_channels=None):
        super().__init__(shape, args, cond_channels)
        self.log_s = torch.nn.Parameter(torch.full(shape, float(args["init"])))
        self.shift = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, x, cond=None):
        ld = {factor} * self.log_s.sum().expand(x.shape[0])
        return x * torch.exp(self.log_s) + self.shift, ld

    def inverse(self, y, cond=None):
        return (y - self.shift) * torch.exp(-self.log_s), -self.log_s.sum().expand(y.shape[0])
"""

SPEC = """flow pix(K = 1) {
  input 1 x 8 x 8
  level {
    squeeze
    step x K { actnorm; pixaffine init=0.1; coupling affine hidden=8 }
    split
  }
  level { squeeze; step x K { pixaffine; coupling additive hidden=8 } }
  train { task generation; data digits; bits 5; batch 16; steps 2; val_every 2 }
}
"""


def write_plugin(
    folder: Path, name: str = "my_flows", factor: float = 1.0, declare_params: bool = False
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        DECLARATION.format(torch_module=f"{name}_torch", params=PARAMS if declare_params else "")
    )
    (folder / f"{name}_torch.py").write_text(MODULE.format(factor=factor))
    (folder / "pix.flow").write_text(SPEC)
    return folder


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch, clean_registries):
    folder = write_plugin(tmp_path / "plugin")
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_unknown_layer_without_the_plugin_says_how_to_load_it(plugin_dir, cli):
    rc, _, err = cli("check", plugin_dir / "pix.flow")
    assert rc == 1
    assert "unknown layer `pixaffine`" in err and "--plugin MODULE" in err
    assert "Traceback" not in err


def test_route_cli_flag_checks_compiles_trains_renders_and_verifies(plugin_dir, cli, tmp_path):
    spec = plugin_dir / "pix.flow"
    rc, out, err = cli("check", spec, "--plugin", "my_flows")
    assert rc == 0, err
    assert "level1.step1.pixaffine" in out or "pixaffine" in out
    rc, out, err = cli("compile", spec, "--plugin", "my_flows")
    assert rc == 0, err
    assert "pixaffine" in out
    rc, out, err = cli("render", spec, "--plugin", "my_flows", "-o", tmp_path / "pix.svg")
    assert rc == 0, err
    assert "pixaffine" in (tmp_path / "pix.svg").read_text()
    rc, out, err = cli(
        "train",
        spec,
        "--plugin",
        "my_flows",
        "--out",
        tmp_path / "run",
        "--steps",
        "1",
        "--no-progress",
        "--threads",
        "1",
    )
    assert rc == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 1 if "step" in summary else True
    assert (tmp_path / "run" / "metrics.jsonl").read_text().strip()
    rc, out, err = cli("verify", spec, "--plugin", "my_flows")
    assert rc == 0, out + err
    assert "pixaffine" in out and "all exact" in out


def test_route_environment_variable(plugin_dir, monkeypatch):
    monkeypatch.setenv(plugins.ENV, "my_flows")
    plugins.reset_auto()
    spec = flowspec.load(plugin_dir / "pix.flow")
    assert "pixaffine" in [layer.kind for layer in spec.layers]
    assert plugins.LOADED["my_flows"] == f"from {plugins.ENV}"


def test_route_load_argument_and_loads(plugin_dir):
    spec = flowspec.load(plugin_dir / "pix.flow", plugins=["my_flows"])
    model = flowspec.compile(spec)
    assert sum(p.numel() for p in model.parameters()) == sum(count_params(spec).values())
    again = flowspec.loads(SPEC, plugins=["my_flows"])
    assert again.digest() == spec.digest()


def test_route_plain_import(plugin_dir):
    import my_flows  # noqa: F401  (registers on import)

    spec = flowspec.load(plugin_dir / "pix.flow")
    assert KINDS["pixaffine"].__module__ == "my_flows"
    assert spec.layers[2].kind == "pixaffine"


def test_route_entry_point(plugin_dir, tmp_path, monkeypatch):
    dist = tmp_path / "site" / "my_flows_dist-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-flows-dist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[flowspec.plugins]\npix = my_flows\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    plugins.reset_auto()
    spec = flowspec.load(plugin_dir / "pix.flow")
    assert "pixaffine" in {layer.kind for layer in spec.layers}
    assert plugins.LOADED["pix = my_flows"] == "entry point"


def test_a_plugin_that_does_not_declare_its_count_is_counted_from_its_module(plugin_dir):
    spec = flowspec.load(plugin_dir / "pix.flow", plugins=["my_flows"])
    counts = count_params(spec)
    pix = [path for path in counts if path.endswith("pixaffine")]
    assert pix and all(counts[p] == 2 * 4 * 4 * 4 for p in pix[:1])


def test_verify_names_a_layer_whose_logdet_is_off_by_a_factor(
    tmp_path, monkeypatch, clean_registries, cli
):
    folder = write_plugin(tmp_path / "bad", name="bad_flows", factor=2.0)
    monkeypatch.syspath_prepend(str(folder))
    rc, out, err = cli("verify", folder / "pix.flow", "--plugin", "bad_flows")
    assert rc == 1
    assert "FAIL" in out
    assert (
        "layer `level1.step1.pixaffine` (pixaffine) is not exact" in err
        or "(pixaffine) is not exact" in err
    )
    assert "expected log-det" in err and "measured" in err and "Traceback" not in err
    rc, out, _ = cli("verify", folder / "pix.flow", "--plugin", "bad_flows", "--format", "json")
    report = json.loads(out)
    assert rc == 1 and not report["ok"]
    bad = [c for c in report["checks"] if not c["ok"]]
    assert bad[0]["kind"] == "pixaffine"
    assert bad[0]["measured"] == pytest.approx(2 * bad[0]["expected"], rel=1e-6)


def _kind(body: str, decorator: str = "kind", base: str = "LayerKind") -> str:
    return f"import flowspec\n@flowspec.{decorator}\nclass A(flowspec.{base}):\n{body}"


BROKEN = {
    "clash": (
        _kind("    key = 'actnorm'\n    module = 'x:Y'\n"),
        "clashes with the existing kind `actnorm`",
    ),
    "required_arg": (
        "import flowspec\nclass AA(flowspec.Args):\n    width: int\n"
        + _kind("    key = 'needy'\n    Args = AA\n    module = 'x:Y'\n"),
        "has no default",
    ),
    "bad_key": (_kind("    key = 'Bad Key'\n    module = 'x:Y'\n"), "use lower-case words"),
    "reserved": (_kind("    key = 'level'\n    module = 'x:Y'\n"), "is a word of the language"),
    "no_module": (_kind("    key = 'nomod'\n"), "module must be"),
    "cond_without_on": (
        _kind("    key = 'condy'\n    conditional = 'optional'\n    module = 'x:Y'\n"),
        "Args have no `on` field",
    ),
    "net_clash": (
        _kind("    key = 'glow'\n    module = 'x:Y'\n", "net", "NetKind"),
        "clashes with the existing net",
    ),
    "import_error": ("import no_such_dependency_anywhere\n", "cannot be imported"),
    "syntax_error": ("def broken(:\n", "cannot be imported"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_plugin_is_a_clear_error_naming_it(
    case, tmp_path, monkeypatch, clean_registries, cli
):
    source, message = BROKEN[case]
    (tmp_path / f"plug_{case}.py").write_text(
        "import flowspec\n@flowspec.net\nclass Fine(flowspec.NetKind):\n"
        f"    key = 'fine_{case}'\n    module = 'x:Y'\n" + source
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    before = {name: set(table) for name, table in REGISTRIES.items()}
    with pytest.raises(PluginError) as info:
        plugins.load_plugins([f"plug_{case}"])
    assert f"plug_{case}" in str(info.value) and message in str(info.value)
    # the registries are as they were: not even the module's first, valid declaration stays
    assert {name: set(table) for name, table in REGISTRIES.items()} == before
    assert f"fine_{case}" not in NETS
    rc, _, err = cli("kinds", "--plugin", f"plug_{case}")
    assert rc == 1 and f"plug_{case}" in err and "Traceback" not in err


def test_a_missing_plugin_module(clean_registries, cli):
    rc, _, err = cli("check", ROOT / "specs" / "demo.flow", "--plugin", "no_such_plugin_xyz")
    assert rc == 1
    assert "plugin `no_such_plugin_xyz`" in err and "PYTHONPATH" in err


def test_kinds_lists_builtins_and_plugins(plugin_dir, cli):
    rc, out, _ = cli("kinds")
    assert rc == 0
    for word in (
        "actnorm",
        "coupling affine",
        "attention isdp",
        "net=glow",
        "encoder=rrdb(...)",
        "prior gaussian",
    ):
        assert word in out
    assert "pixaffine" not in out
    rc, out, _ = cli("kinds", "--plugin", "my_flows", "--format", "json")
    data = json.loads(out)
    pix = next(e for e in data["kinds"] if e["key"] == "pixaffine")
    assert pix["module"] == "my_flows" and not pix["builtin"]
    assert pix["args"] == [
        {
            "name": "init",
            "type": "float",
            "default": 0.0,
            "range": "[-5, 5]",
            "bounds": {"ge": -5.0, "le": 5.0},
            "doc": "initial log-scale",
        }
    ]
    rc, out, _ = cli("kinds", "--plugin", "my_flows", "--format", "markdown")
    assert "### `pixaffine` (plugin `my_flows`)" in out


def test_a_flowlayer_subclass_is_an_ordinary_torch_module(plugin_dir):
    import copy
    import pickle

    import my_flows_torch
    import torch

    layer = my_flows_torch.PixelAffineModule((2, 3, 3), {"init": 0.5})
    assert isinstance(layer, torch.nn.Module) and isinstance(layer, flowspec.FlowLayer)
    assert {name for name, _ in layer.named_parameters()} == {"log_s", "shift"}
    x = torch.randn(4, 2, 3, 3)
    for other in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert torch.equal(other(x)[0], layer(x)[0])


def test_checking_with_a_torch_free_plugin_imports_no_torch(tmp_path):
    """(A plugin that does not declare its parameter count is counted by building it, which
    imports torch: declaring ``params`` keeps `check` torch-free.)"""
    folder = write_plugin(tmp_path / "p", declare_params=True)
    code = (
        "import sys, flowspec.cli\n"
        "rc = flowspec.cli.main(['check', 'pix.flow', '--plugin', 'my_flows'])\n"
        "print(rc, 'torch' in sys.modules)"
    )
    env = {"PYTHONPATH": f"{folder}:{ROOT}", "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert p.stdout.split()[-2:] == ["0", "False"], p.stdout + p.stderr


NET_PLUGIN = """
import flowspec
from pydantic import Field

class DeepArgs(flowspec.Args):
    depth: int = Field(1, ge=1, le=4, description="hidden 1x1 layers")

def deep_net(cin, cout, hidden, depth=1):
    import torch
    layers = [torch.nn.Conv2d(cin, hidden, 3, padding=1), torch.nn.ReLU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(hidden, hidden, 1), torch.nn.ReLU()]
    last = torch.nn.Conv2d(hidden, cout, 3, padding=1)
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    return torch.nn.Sequential(*layers, last)

@flowspec.net
class DeepNet(flowspec.NetKind):
    key = "deepnet"
    Args = DeepArgs
    doc = "a conv3x3 stem, depth 1x1 layers and a zero conv3x3"
    module = deep_net
"""


def test_a_plugin_net_with_arguments_written_as_a_call(
    tmp_path, monkeypatch, clean_registries, cli
) -> None:
    (tmp_path / "deep_nets.py").write_text(NET_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    head = "flow f {\n  input 4 x 4 x 4\n  coupling affine hidden=8 net="
    spec = flowspec.loads(head + "deepnet(depth=3)\n}\n", plugins=["deep_nets"])
    layer = spec.layers[0]
    assert (layer.args["net"], layer.args["net_args"]) == ("deepnet", {"depth": 3})
    bare = flowspec.loads(head + "deepnet\n}\n")
    assert bare.layers[0].args["net_args"] == {"depth": 1}  # the net's defaults, filled in
    model = flowspec.compile(spec)
    convs = [m for m in model.layers[0].net if type(m).__name__ == "Conv2d"]
    assert len(convs) == 5  # stem, three 1x1, head
    assert sum(count_params(spec).values()) == sum(p.numel() for p in model.parameters())
    for text, code, fragment in [
        ("deepnet(dept=2)", "E105", "did you mean `depth`?"),
        ("deepnet(depth=9)", "E122", "out of range"),
        ("glow(depth=2)", "E105", "takes no arguments"),
        ("deepnett(depth=2)", "E122", "did you mean `deepnet`?"),
    ]:
        _, diags = flowspec.analyze("f.flow", text=head + text + "\n}\n")
        errs = [d for d in diags if d.severity == "error"]
        assert errs and errs[0].code == code, (text, errs)
        assert fragment in errs[0].render(), (text, errs[0].render())
    path = tmp_path / "f.flow"
    path.write_text(head + "deepnet(depth=3)\n}\n")
    rc, out, _ = cli("check", path, "--plugin", "deep_nets")
    assert rc == 0 and "net=deepnet(depth=3)" in out
    rc, out, _ = cli("fmt", path)
    assert "net=deepnet(depth=3)" in out


def test_a_module_written_the_old_way_still_works_and_warns(tmp_path, monkeypatch) -> None:
    """A plugin's module file from before flowspec/nn (``torch = nn = F = None`` at the top,
    flowspec binding torch into it) still builds and runs, with a warning naming the fix."""
    import importlib
    import warnings

    import torch

    (tmp_path / "old_style_nn.py").write_text(
        textwrap.dedent("""
        from flowspec.layers.base import FlowLayer

        torch = nn = F = None

        class Shift(FlowLayer):
            def __init__(self, shape, args, cond_channels=None):
                super().__init__(shape, args, cond_channels)
                self.b = nn.Parameter(torch.zeros(shape))

            def forward(self, x, cond=None):
                return F.relu(x) * 0 + x + self.b, torch.zeros(x.shape[0])
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module("old_style_nn")
    try:
        assert any(
            issubclass(w.category, DeprecationWarning) and "import torch" in str(w.message)
            for w in caught
        )
        layer = module.Shift((1, 2, 2), {})
        assert isinstance(layer, torch.nn.Module) and isinstance(layer, flowspec.FlowLayer)
        y, _ = layer(torch.ones(3, 1, 2, 2))
        assert torch.equal(y, torch.ones(3, 1, 2, 2))
    finally:
        sys.modules.pop("old_style_nn", None)
