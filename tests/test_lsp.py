"""`flowspec lsp` driven over stdio as an editor drives it (tests/lsp_client.py): diagnostics
on open and change (cleared when fixed), hover, completion, definition, references,
symbols, formatting, quick fixes, UTF-16 positions, plugins, fuzzed input; stdout carries
nothing but JSON-RPC, and the built-in vocabulary loads no torch in the server."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from lsp_client import ROOT, Client

from flowspec.fmt import format_text

pytest.importorskip("pygls")  # the server's; the client (tests/lsp_client.py) is plain

DEMO = ROOT / "specs" / "demo.flow"
URI = DEMO.as_uri()
TEXT = DEMO.read_text()
LINES = TEXT.split("\n")
ATTENTION = LINES.index("        attention imap")  # 0-based
CALL = LINES.index("        lib.glow_step(hidden=hidden)")


def _edit(line: int, new: str) -> str:
    lines = list(LINES)
    lines[line] = new
    return "\n".join(lines)


@pytest.fixture(scope="module")
def client():
    c = Client()
    c.initialize()
    assert c.open(URI, TEXT) == []
    yield c
    assert c.close() == 0
    assert c.bad_output == [], "the server wrote something other than JSON-RPC to stdout"


def test_capabilities_and_no_torch(client):
    # hover and completion ran on the built-in vocabulary: no torch in the server process
    client.at("textDocument/hover", URI, ATTENTION, 10)
    maps = Path(f"/proc/{client.proc.pid}/maps")
    if maps.exists():
        assert "libtorch" not in maps.read_text()


def test_diagnostics_appear_and_clear(client):
    diags = client.change(URI, _edit(ATTENTION, "        attention imapp"), 2)
    assert [d["code"] for d in diags] == ["E104"]
    rng = diags[0]["range"]
    assert rng["start"] == {"line": ATTENTION, "character": 18}
    assert "did you mean `imap`" in diags[0]["message"]
    notes = [r["message"] for r in diags[0].get("relatedInformation") or []]
    assert any("8 instances" in n for n in notes)
    actions = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": URI}, "range": rng, "context": {"diagnostics": diags}},
    )
    edit = actions[0]["edit"]["changes"][URI][0]
    assert edit["newText"] == "imap" and edit["range"] == rng
    assert client.change(URI, TEXT, 3) == []


def test_hover_shows_every_instance_shape(client):
    text = client.at("textDocument/hover", URI, ATTENTION, 10)["contents"]["value"]
    assert "attention imap" in text and "8 instances" in text
    assert "4x16x16 → 4x16x16" in text and "8x8x8 → 8x8x8" in text
    assert "parameters" in text
    flow = client.at(
        "textDocument/hover",
        URI,
        LINES.index(next(x for x in LINES if x.startswith("flow demo"))),
        6,
    )["contents"]["value"]
    assert "latents" in flow and "parameters" in flow
    call = client.at("textDocument/hover", URI, CALL, 12)["contents"]["value"]
    assert "block glow_step(hidden = 512)" in call


def test_completion(client):
    client.change(URI, _edit(ATTENTION, "        attention "), 4)
    items = client.at("textDocument/completion", URI, ATTENTION, 18)["items"]
    assert sorted(i["label"] for i in items) == ["imap", "isdp"]
    client.change(URI, _edit(ATTENTION, "        coupling affine "), 5)
    items = client.at("textDocument/completion", URI, ATTENTION, 24)["items"]
    hidden = next(i for i in items if i["label"] == "hidden")
    assert hidden["insertText"] == "hidden=" and "int" in hidden["detail"]
    client.change(URI, _edit(ATTENTION, "        coupling affine net="), 6)
    labels = {
        i["label"] for i in client.at("textDocument/completion", URI, ATTENTION, 28)["items"]
    }
    assert {"glow", "flowpp"} <= labels
    client.change(URI, _edit(ATTENTION, "        lib."), 7)
    labels = {
        i["label"] for i in client.at("textDocument/completion", URI, ATTENTION, 12)["items"]
    }
    assert "glow_step" in labels
    data = next(i for i, x in enumerate(LINES) if x.strip().startswith("data "))
    client.change(URI, _edit(data, "    data "), 8)
    labels = {i["label"] for i in client.at("textDocument/completion", URI, data, 9)["items"]}
    assert {"mnist5k", "digits"} <= labels
    assert client.change(URI, TEXT, 9) == []


def test_definition_references_symbols(client):
    loc = client.at("textDocument/definition", URI, CALL, 12)
    assert loc["uri"].endswith("specs/lib/steps.flow")
    steps = (ROOT / "specs/lib/steps.flow").read_text().split("\n")
    assert steps[loc["range"]["start"]["line"]].startswith("block glow_step")
    refs = client.at(
        "textDocument/references", URI, CALL, 12, context={"includeDeclaration": True}
    )
    files = {Path(r["uri"]).name for r in refs}
    assert {"demo.flow", "steps.flow"} <= files
    symbols = client.request("textDocument/documentSymbol", {"textDocument": {"uri": URI}})
    flow = next(s for s in symbols if s["name"] == "demo")
    assert [c["name"] for c in flow["children"]] == ["level"]


def test_formatting_is_fmt(client):
    messy = TEXT.replace("  input 1 x size x size", "  input   1 x size x size  ")
    client.change(URI, messy, 10)
    edits = client.request(
        "textDocument/formatting",
        {"textDocument": {"uri": URI}, "options": {"tabSize": 2, "insertSpaces": True}},
    )
    assert edits[0]["newText"] == format_text(messy, str(DEMO))
    assert client.change(URI, TEXT, 11) == []


def test_utf16_positions(client):
    # é is one UTF-16 unit, the emoji two: the error is at 19 code points, 20 units in
    line = '  let tag = "é😀"; attention imapp'
    uri = (ROOT / "specs" / "unicode_lsp.flow").as_uri()
    text = "flowspec 0.2\n# ünïcödé 😀 comment\nflow u {\n  input 4 x 8 x 8\n" + line + "\n}\n"
    diags = client.open(uri, text)
    bad = next(d for d in diags if d["code"] == "E104")
    start = len(line[: line.index("imapp")].encode("utf-16-le")) // 2
    assert bad["range"]["start"] == {"line": 4, "character": start}
    assert bad["range"]["end"]["character"] == start + 5
    client.change(uri, text.replace("imapp", "imap"), 2)
    hover = client.at("textDocument/hover", uri, 4, start + 1)["contents"]["value"]
    assert "attention imap" in hover and "4x8x8 → 4x8x8" in hover


def test_flip_quick_fix(client):
    uri = (ROOT / "specs" / "w004_lsp.flow").as_uri()
    text = "flowspec 0.2\nflow f {\n  input 4 x 8 x 8\n  coupling affine\n  coupling affine\n}\n"
    diags = client.open(uri, text)
    w4 = [d for d in diags if d["code"] == "W004"]
    actions = client.request(
        "textDocument/codeAction",
        {"textDocument": {"uri": uri}, "range": w4[0]["range"], "context": {"diagnostics": w4}},
    )
    edit = next(a for a in actions if "flip=true" in a["title"])["edit"]["changes"][uri][0]
    lines = text.split("\n")
    line, char = edit["range"]["start"]["line"], edit["range"]["start"]["character"]
    lines[line] = lines[line][:char] + edit["newText"] + lines[line][char:]
    assert not [d for d in client.change(uri, "\n".join(lines), 2) if d["code"] == "W004"]


def test_fuzzed_input_never_stops_it(client):
    import fuzz_mutate

    rng = random.Random(0)
    uri = (ROOT / "specs" / "fuzz_lsp.flow").as_uri()
    sources = [p.read_text() for p in sorted((ROOT / "specs").glob("*.flow"))]
    client.open(uri, "")
    for version in range(1, 41):
        text, _ = fuzz_mutate.mutate(rng, rng.choice(sources))
        client.change(uri, text, version)
        lines = text.split("\n")
        line = rng.randrange(len(lines))
        char = rng.randrange(len(lines[line]) + 1)
        client.at("textDocument/hover", uri, line, char)
        client.at("textDocument/completion", uri, line, char)
    assert client.at("textDocument/hover", URI, ATTENTION, 10) is not None


def test_plugins_from_initialization_options():
    c = Client()
    try:
        c.initialize({"plugins": [str(ROOT / "examples/plugins/qrconv.py")]})
        path = ROOT / "examples/plugins/qr_glow.flow"
        assert [d for d in c.open(path.as_uri(), path.read_text()) if d["severity"] == 1] == []
    finally:
        assert c.close() == 0


def test_without_pygls_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    from flowspec.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pygls" else real(name, *a)
    )
    assert main(["lsp"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "flowspec[lsp]" in err
