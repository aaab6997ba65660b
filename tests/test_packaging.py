"""What `pip install flowspec` gives: every third-party module the package imports is a
declared dependency (core or the extra that feature names), the version is written once,
and drawing a curve leaves a notebook's matplotlib backend alone."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11 on

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flowspec", "runtime")
#: import name -> distribution name, where they differ
DISTRIBUTION = {
    "PIL": "pillow",
    "skimage": "scikit-image",
    "sklearn": "scikit-learn",
    "yaml": "pyyaml",
    "pydantic_core": "pydantic-core",
}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    for stop in "<>=!~[; ":
        requirement = requirement.split(stop)[0]
    return requirement.strip().lower().replace("_", "-")


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level module names imported anywhere in the package (lazy imports included) that
    are neither the project's nor the standard library's, with the files importing them."""
    found: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for n in names:
                    top = n.split(".")[0]
                    if top in PACKAGES or top in sys.stdlib_module_names:
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared():
    project = _project()
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra if not r.startswith("flowspec")}
    missing = {
        m: sorted(files)
        for m, files in _third_party_imports().items()
        if DISTRIBUTION.get(m, m).lower().replace("_", "-") not in declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_train_needs_nothing_beyond_the_core_dependencies():
    """`flowspec train` draws a progress bar, sample grids and a curve on every run."""
    core = {_name(r) for r in _project()["dependencies"]}
    assert {"torch", "tqdm", "pillow", "matplotlib", "pydantic-core"} <= core


def test_the_version_is_written_once():
    import flowspec

    assert "version" in _project()["dynamic"] and "version" not in _project()
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert cfg["dynamic"]["version"] == {"attr": "flowspec.__version__"}
    assert flowspec.__version__


def test_torch_has_no_upper_bound():
    torch_req = next(r for r in _project()["dependencies"] if _name(r) == "torch")
    assert "<" not in torch_req


def test_plot_curve_leaves_the_matplotlib_backend_alone(tmp_path):
    import matplotlib

    from runtime.images import plot_curve

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        records = [{"kind": "train", "step": i, "bpd": 5 - i / 100} for i in range(1, 60)]
        path = plot_curve(
            records + [{"kind": "val", "step": 50, "bpd": 4.6}], tmp_path / "curve.png"
        )
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
