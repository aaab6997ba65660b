"""The .flow language of docs/language.md, asserted on the resolved IR: a file as a whole
(the version header, comments, separators) and its imports.
"""

from __future__ import annotations

from pathlib import Path

from flowtext import assert_json_round_trip, ir, kinds, paths, t
from irdata import strip_spans

from flowspec.api import load
from flowspec.parse import parse


# ---- header, comments, separators ----------------------------------------------------------
def test_version_header_is_optional():
    body = t("flow f {", "  input 4x8x8", "  actnorm", "}")
    with_header = ir("flowspec 0.1\n" + body)
    without = ir(body)
    assert parse("flowspec 0.1\n" + body).version == "0.1"
    assert parse(body).version is None
    assert [layer.kind for layer in with_header.layers] == ["actnorm"]
    assert strip_spans(with_header.model_dump()) == strip_spans(without.model_dump())


def test_comments_everywhere():
    text = t(
        "# leading comment",
        "flowspec 0.1  # after the header",
        "# before a flow",
        "flow f(K = 2,  # a parameter",
        "       hidden = 8) {  # after the brace",
        "  # own line",
        "  input 4x8x8  # after input",
        "  step x K {  # after a group head",
        "    coupling affine hidden=hidden  # after a layer",
        "    # before the closing brace",
        "  }",
        '  train { data images root="data/#1" }  # a # inside a string is not a comment',
        "}",
        "# at the end, without a newline",
    ).rstrip("\n")
    spec = ir(text)
    assert paths(spec) == ["step01.coupling", "step02.coupling"]
    assert spec.layers[0].args["hidden"] == 8
    assert spec.train["data"].options == {"root": "data/#1"}
    comments = [c.text for c in parse(text).comments]
    assert len(comments) == 12
    assert comments[0] == "# leading comment"
    assert comments[-1] == "# at the end, without a newline"


def test_semicolons_separate_statements():
    lines = ir(
        t(
            "flow f {",
            "  input 4x8x8",
            "  actnorm",
            "  invconv lu=false",
            "  level {",
            "    squeeze",
            "  }",
            "  train {",
            "    batch 4",
            "    steps 2",
            "  }",
            "}",
        )
    )
    semis = ir(
        "flow f { input 4x8x8; actnorm; invconv lu=false; level { squeeze }; "
        "train { batch 4; steps 2 } }"
    )
    assert paths(semis) == paths(lines) == ["actnorm", "invconv", "level1.squeeze"]
    assert [layer.args for layer in semis.layers] == [layer.args for layer in lines.layers]
    assert semis.train["batch"].value == 4 and semis.train["steps"].value == 2
    # several separators in a row and separators at the edges are fine
    spec = ir(";\nflow f {;; input 4x8x8 ;; actnorm ;\n}\n;")
    assert kinds(spec) == ["actnorm"]


# ---- imports -------------------------------------------------------------------------------
def test_import_is_relative_to_the_importing_file(tmp_path: Path, monkeypatch):
    (tmp_path / "lib" / "more").mkdir(parents=True)
    (tmp_path / "lib" / "more" / "base.flow").write_text(t("let width = 6"))
    # lib/steps.flow imports more/base.flow relative to lib/, not to the main file
    (tmp_path / "lib" / "steps.flow").write_text(
        t(
            'import "more/base.flow" as base',
            "let width = base.width + 2",
            "block st(hidden = 4) {",
            "  actnorm",
            "  coupling affine hidden=hidden",
            "}",
            "flow small(K = 1) {",
            "  input 4x8x8",
            "  step x K { st() }",
            "}",
        )
    )
    main = tmp_path / "main.flow"
    main.write_text(
        t(
            'import "lib/steps.flow" as lib',
            "flow f {",
            "  input 4x8x8",
            "  step x 2 { lib.st(hidden=lib.width) }",
            "}",
            "flow g extends lib.small(K=3) { }",
        )
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load(main, flow="f")
    assert_json_round_trip(spec)
    assert paths(spec) == [
        "step01.actnorm",
        "step01.coupling",
        "step02.actnorm",
        "step02.coupling",
    ]
    assert spec.layers[1].args["hidden"] == 8
    assert "in block `st`" in spec.layers[1].trace[0].text
    assert spec.layers[1].span.file.endswith("steps.flow")  # the span is in the library
    g = load(main, flow="g")
    assert paths(g) == [
        "step01.actnorm",
        "step01.coupling",
        "step02.actnorm",
        "step02.coupling",
        "step03.actnorm",
        "step03.coupling",
    ]
    assert g.params == {"K": 3}


def test_shared_import_is_loaded_once(tmp_path: Path):
    (tmp_path / "c.flow").write_text(t("let n = 2"))
    (tmp_path / "a.flow").write_text(t('import "c.flow" as c', "let n = c.n"))
    main = tmp_path / "m.flow"
    main.write_text(
        t(
            'import "a.flow" as a',
            'import "c.flow" as c',
            "flow f {",
            "  input 4x8x8",
            "  step x a.n + c.n { actnorm }",
            "}",
        )
    )
    assert len(load(main).layers) == 4
