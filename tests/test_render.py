"""Architecture diagrams: every shipped flow renders through the real `dot`, and says
what it claims (layer paths, levels, latents, conditions, ×K for repeated steps).

Golden DOT files live in tests/golden/; regenerate them after an intended change with
``FLOWSPEC_UPDATE_GOLDEN=1 pytest tests/test_render.py``.
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import flowspec
from flowspec.api import analyze, load
from flowspec.cli import main
from flowspec.diagram import UnsupportedFormat, render, to_dot
from flowspec.errors import FlowSpecError
from flowspec.flowgraph import graph

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.flow"))
GOLDEN = Path(__file__).resolve().parent / "golden"
SVG = "{http://www.w3.org/2000/svg}"

pytestmark = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz `dot` not found")


def _small(path: Path, spec: flowspec.FlowSpec, k: int = 2) -> flowspec.FlowSpec:
    """The same flow with K=k steps per level (the paper's models have up to 16)."""
    if "K" in spec.params:
        return load(path, spec.name, {"K": k})
    return spec


def _flows() -> list:
    out = []
    for path in SPECS:
        specs, _ = analyze(path, all_flows=True)
        out += [pytest.param(path, spec, id=f"{path.stem}:{spec.name}") for spec in specs]
    return out


FLOWS = _flows()


def _svg(path: Path) -> tuple[set[str], set[str]]:
    """(the texts, the element titles) of an SVG written by dot."""
    root = ET.parse(path).getroot()
    texts = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}text")}
    titles = {"".join(t.itertext()).strip() for t in root.iter(f"{SVG}title")}
    return texts, titles


def test_every_spec_file_has_flows() -> None:
    assert SPECS and len(FLOWS) >= len(SPECS)


@pytest.mark.parametrize(("path", "spec"), FLOWS)
def test_every_flow_renders_every_layer(path: Path, spec, tmp_path: Path) -> None:
    spec = _small(path, spec)
    out = tmp_path / "model.svg"
    assert render(spec, out, detail="layer") == str(out)
    texts, titles = _svg(out)
    for layer in spec.layers:
        assert layer.path in texts, layer.path
    for level in sorted({layer.level for layer in spec.layers if layer.level is not None}):
        assert f"level {level}" in texts
        assert f"cluster_level{level}" in titles
    for z in spec.latents:
        assert z.name in texts
    for c in spec.conditions:
        assert f"condition {c.name}" in texts
        assert f"encoder:{c.name}" in texts
    assert {"input", "prior"} <= texts
    # every data edge carries its C×H×W
    g = graph(spec)
    for _, _, d in g.edges(data=True):
        if d["role"] in ("data", "latent"):
            assert "×".join(map(str, d["shape"])) in texts


@pytest.mark.parametrize(("path", "spec"), FLOWS)
def test_every_flow_renders_compactly(path: Path, spec, tmp_path: Path) -> None:
    spec = _small(path, spec, k=3)
    for detail in ("step", "level"):
        out = tmp_path / f"{detail}.svg"
        render(spec, out, detail=detail, rankdir="LR" if detail == "level" else "TB")
        texts, _ = _svg(out)
        assert {z.name for z in spec.latents} <= texts
        levels = {layer.level for layer in spec.layers if layer.level is not None}
        assert {f"level {n}" for n in levels} <= texts
        if detail == "step" and spec.params.get("K") == 3:
            # every shipped flow repeats one step K times per level (SRFlow's after its two
            # transition steps)
            assert "step 01-03 ×3" in texts or "step 03-05 ×3" in texts
            assert not any(".step03." in t for t in texts)  # K steps drawn once


def test_identical_steps_collapse_with_count(tmp_path: Path) -> None:
    out = tmp_path / "demo.svg"
    render(ROOT / "specs/demo.flow", out, detail="step")
    texts, _ = _svg(out)
    assert "step 01-04 ×4" in texts
    assert "level1.step01-04.coupling" in texts
    assert "hidden=32" in texts  # non-default argument


def test_only_identical_consecutive_steps_collapse() -> None:
    spec = flowspec.loads(
        "flow f {\n  input 1x8x8\n  prior gaussian\n  level {\n    squeeze\n"
        "    step x 2 { actnorm; invconv }\n"
        "    step x 3 { actnorm; coupling affine hidden=8 }\n  }\n}\n"
    )
    src = to_dot(spec, detail="step").source
    assert 'label="step 01-02 ×2"' in src
    assert 'label="step 03-05 ×3"' in src
    layer = to_dot(spec, detail="layer").source
    assert "×2" not in layer and "level1.step05.coupling" in layer


def test_styles_distinguish_attention_and_conditioning() -> None:
    spec = load(ROOT / "specs/srflow_celeba.flow", "cattnflow_isdp_sr", {"K": 2})
    src = to_dot(spec, detail="layer").source
    lines = src.splitlines()

    def node(name: str) -> str:
        return next(line for line in lines if line.strip().startswith(f'"{name}" ['))

    assert "shape=hexagon" in node("level1.step03.attention")
    assert "peripheries=2" in node("level1.step03.coupling")
    assert "peripheries=2" in node("level2.step04.coupling")
    assert "shape=hexagon" not in node("level1.step01.actnorm")
    assert "peripheries" not in node("level1.step01.actnorm")
    cond = [line for line in lines if line.strip().startswith("encoder__lr ->")]
    # every conditional layer (and the top prior when it is conditional), dashed
    users = [x.path for x in spec.layers if x.args.get("on")]
    assert len(cond) == len(users) + (1 if spec.prior.on else 0) > 0
    assert all("style=dashed" in line for line in cond)
    assert "cluster_legend" in src


def test_dot_is_deterministic_and_rankdir_selectable() -> None:
    spec = load(ROOT / "specs/demo.flow")
    assert to_dot(spec).source == to_dot(graph(spec)).source
    assert "rankdir=LR" in to_dot(spec, rankdir="LR").source
    with pytest.raises(ValueError):
        to_dot(spec, detail="steps")
    with pytest.raises(ValueError):
        to_dot(spec, rankdir="BT")


GOLDENS = [
    ("demo_step.dot", "specs/demo.flow", None, None, "step"),
    (
        "cattnflow_isdp_sr_layer.dot",
        "specs/srflow_celeba.flow",
        "cattnflow_isdp_sr",
        {"K": 2},
        "layer",
    ),
    (
        "cattnflow_isdp_sr_level.dot",
        "specs/srflow_celeba.flow",
        "cattnflow_isdp_sr",
        {"K": 2},
        "level",
    ),
]


@pytest.mark.parametrize(
    ("name", "file", "flow", "overrides", "detail"), GOLDENS, ids=[g[0] for g in GOLDENS]
)
def test_golden_dot(name, file, flow, overrides, detail, tmp_path: Path) -> None:
    out = tmp_path / name
    render(ROOT / file, out, flow=flow, overrides=overrides, detail=detail)
    got = out.read_text(encoding="utf-8")
    golden = GOLDEN / name
    if os.environ.get("FLOWSPEC_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(got, encoding="utf-8")
    assert golden.exists(), f"missing {golden}: run with FLOWSPEC_UPDATE_GOLDEN=1"
    assert got == golden.read_text(encoding="utf-8")


BAD = """flow bad {
  input 1x6x6
  prior gaussian
  level x 2 {
    squeeze
    step x 2 { actnorm }
  }
}
"""


@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf", ".dot"])
def test_invalid_spec_raises_and_writes_nothing(suffix: str, tmp_path: Path) -> None:
    spec = tmp_path / "bad.flow"
    spec.write_text(BAD)
    out = tmp_path / "out" / f"bad{suffix}"
    with pytest.raises(FlowSpecError) as e:
        render(spec, out)
    assert "E201" in str(e.value)
    assert not out.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.flow"]


@pytest.mark.parametrize(
    ("suffix", "magic"),
    [
        (".png", b"\x89PNG\r\n\x1a\n"),
        (".pdf", b"%PDF-"),
        (".svg", b"<?xml"),
        (".dot", b"digraph "),
    ],
)
def test_formats_from_suffix(suffix: str, magic: bytes, tmp_path: Path) -> None:
    out = tmp_path / f"demo{suffix}"
    render(ROOT / "specs/demo.flow", out, detail="level")
    data = out.read_bytes()
    assert len(data) > 100 and data.startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temp file left over


def test_unknown_suffix_and_misplaced_arguments(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat):
        render(ROOT / "specs/demo.flow", tmp_path / "demo.jpg")
    with pytest.raises(ValueError):
        render(load(ROOT / "specs/demo.flow"), tmp_path / "demo.svg", overrides={"K": 2})
    assert not list(tmp_path.iterdir())


def test_render_overwrites_atomically(tmp_path: Path) -> None:
    out = tmp_path / "m.dot"
    out.write_text("old")
    render(ROOT / "specs/demo.flow", out, overrides={"K": 1})
    assert out.read_text().startswith("digraph demo")
    assert 'label="step 01"' in out.read_text()


def test_public_api_exports_render(tmp_path: Path) -> None:
    assert flowspec.render is render


def test_cli_render(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sr.svg"
    rc = main(
        [
            "render",
            str(ROOT / "specs/srflow_celeba.flow"),
            "--flow",
            "cattnflow_isdp_sr",
            "--set",
            "K=2",
            "-o",
            str(out),
            "--detail",
            "layer",
            "--rankdir",
            "LR",
        ]
    )
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    texts, _ = _svg(out)
    assert "level2.step04.attention" in texts  # after two transition steps

    bad = tmp_path / "bad.flow"
    bad.write_text(BAD)
    rc = main(["render", str(bad), "-o", str(tmp_path / "bad.svg")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "error[E201]" in err and "bad.flow:" in err and "Traceback" not in err
    assert not (tmp_path / "bad.svg").exists()
