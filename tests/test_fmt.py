"""`flowspec fmt`: canonical, idempotent, keeps every comment, never changes the meaning.

Golden round trips run over every file in specs/ (globbed, so a new spec is covered the
moment it is added): ``fmt(fmt(x)) == fmt(x)``, the comment texts survive, the syntax tree
is the same up to positions, and every flow of the file resolves to the same IR.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest
from irdata import strip_spans

from flowspec.api import analyze
from flowspec.fmt import format_text
from flowspec.parse import parse

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").rglob("*.flow"))


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT / "specs"))


def ast_shape(text: str, file: str = "<string>"):
    """The syntax tree without positions and comments (what the program *is*)."""
    module = parse(text, file)
    data = dataclasses.asdict(module)
    data.pop("comments")
    data.pop("file")
    return strip_spans(data)


def comment_texts(text: str) -> Counter:
    return Counter(c.text.rstrip() for c in parse(text).comments)


def test_there_are_specs():
    assert any(p.name == "demo.flow" for p in SPEC_FILES)


@pytest.mark.parametrize("path", SPEC_FILES, ids=_id)
def test_fmt_is_idempotent(path: Path):
    once = format_text(path.read_text(), str(path))
    assert format_text(once, str(path)) == once
    assert once.endswith("\n") and not once.endswith("\n\n")
    assert "\t" not in once


@pytest.mark.parametrize("path", SPEC_FILES, ids=_id)
def test_fmt_keeps_every_comment(path: Path):
    text = path.read_text()
    out = format_text(text, str(path))
    assert comment_texts(out) == comment_texts(text)


@pytest.mark.parametrize("path", SPEC_FILES, ids=_id)
def test_fmt_keeps_the_syntax_tree(path: Path):
    text = path.read_text()
    assert ast_shape(format_text(text, str(path)), str(path)) == ast_shape(text, str(path))


@pytest.mark.parametrize("path", SPEC_FILES, ids=_id)
def test_fmt_keeps_the_ir_of_every_flow(path: Path):
    text = path.read_text()
    flows = list(dict.fromkeys(i.name for i in parse(text).items
                               if type(i).__name__ == "FlowDef"))
    if not flows:
        pytest.skip("a library file: no flows (the syntax tree test covers it)")
    before, diags = analyze(path, all_flows=True)
    assert not [d for d in diags if d.severity == "error"]
    # resolve the formatted text as if it were the file (imports stay relative to it)
    after, diags = analyze(path, all_flows=True, text=format_text(text, str(path)))
    assert not [d for d in diags if d.severity == "error"]
    assert [s.name for s in before] == [s.name for s in after] == flows
    for a, b in zip(before, after):
        assert strip_spans(a.model_dump()) == strip_spans(b.model_dump()), a.name
        assert a.digest() == b.digest()


# ---- a messy hand-written file -------------------------------------------------------------
MESSY = """\
flowspec   0.1   # version
# imports
import   "lib/steps.flow"   as   lib   # the shared steps
let  a=1+2*3 ;let b = (a+1)//2   # two lets on a line
let c = a - (b - 1) ; let d = (a * b) // 3 ; let e = -(a + 1) ; let g = not (true and false)
let s="hi"


let rate =8e-4
# a block
block  b( h=4 ,c ) {   # block head
    actnorm ; invconv lu=false
  # inside
  coupling   affine hidden = h on=c
}
flow   f( L=2,K = 2 ) {
  input 1 x (4*4) x 16  # the input
  condition lr : image 1x4x4 encoder=rrdb( blocks=1,features=4 )
  prior gaussian   learned on = lr
  for l in 1 .. L { level {
     squeeze ; step x K { b(h=8, c=lr) }
     if l==1 { split prior=learned } else if l == 2 {
       permute mode=reverse   # second level
     } else { actnorm }
  } }
  expect latent 8x4x4
  train { task generation ; batch 4
    optimizer   adam lr=rate    # learning rate
  }
}
flow g extends f(K=1) { insert attention imap after coupling }
flow h   extends   f { }"""

CANONICAL = """\
flowspec 0.1  # version

# imports
import "lib/steps.flow" as lib  # the shared steps

let a = 1 + 2 * 3  # two lets on a line
let b = (a + 1) // 2
let c = a - (b - 1)
let d = a * b // 3
let e = -(a + 1)
let g = not (true and false)
let s = "hi"
let rate = 8e-4

# a block
block b(h = 4, c) {  # block head
  actnorm
  invconv lu=false
  # inside
  coupling affine hidden=h on=c
}

flow f(L = 2, K = 2) {
  input 1 x (4 * 4) x 16  # the input
  condition lr: image 1x4x4 encoder=rrdb(blocks=1, features=4)
  prior gaussian learned on=lr
  for l in 1..L {
    level {
      squeeze
      step x K {
        b(h=8, c=lr)
      }
      if l == 1 {
        split prior=learned
      } else if l == 2 {
        permute mode=reverse  # second level
      } else {
        actnorm
      }
    }
  }
  expect latent 8x4x4
  train {
    task generation
    batch 4
    optimizer adam lr=rate  # learning rate
  }
}

flow g extends f(K=1) {
  insert attention imap after coupling
}

flow h extends f { }
"""


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "steps.flow").write_text("block unused_here() { actnorm }\n")
    path = tmp_path / "messy.flow"
    path.write_text(MESSY)
    return path


def test_messy_input_formats_to_the_canonical_text(messy: Path):
    assert format_text(MESSY) == CANONICAL
    assert format_text(CANONICAL) == CANONICAL
    assert comment_texts(CANONICAL) == comment_texts(MESSY)
    before, d1 = analyze(messy, all_flows=True)
    after, d2 = analyze(messy, all_flows=True, text=CANONICAL)
    assert [s.name for s in before] == ["f", "g", "h"]
    assert not [d for d in d1 + d2 if d.severity == "error"]
    for a, b in zip(before, after):
        assert strip_spans(a.model_dump()) == strip_spans(b.model_dump())


def test_fmt_cli_check_write_and_print(messy: Path, cli):
    rc, out, err = cli("fmt", "--check", messy)
    assert rc == 1 and "not formatted" in err
    assert messy.read_text() == MESSY  # --check never writes

    rc, out, err = cli("fmt", messy)
    assert rc == 0 and out == CANONICAL
    assert messy.read_text() == MESSY  # printing never writes

    rc, out, err = cli("fmt", "--write", messy)
    assert rc == 0 and out == ""
    assert messy.read_text() == CANONICAL
    assert not list(messy.parent.glob("*.tmp"))

    rc, out, err = cli("fmt", "--check", messy)
    assert (rc, err) == (0, "")
    mtime = messy.stat().st_mtime_ns
    rc, _, _ = cli("fmt", "--write", messy)  # already formatted: untouched
    assert rc == 0 and messy.stat().st_mtime_ns == mtime


def test_fmt_check_and_write_exclude_each_other(messy: Path, cli):
    rc, _, err = cli("fmt", "--check", "--write", messy)
    assert rc == 2 and "not allowed" in err


def test_fmt_of_a_broken_file_is_a_compiler_error(tmp_path: Path, cli):
    bad = tmp_path / "bad.flow"
    bad.write_text("flow f {\n  input 1x8x8\n")
    rc, _out, err = cli("fmt", bad)
    assert rc == 1
    assert "error[E002]" in err and "Traceback" not in err
    assert bad.read_text() == "flow f {\n  input 1x8x8\n"


@pytest.mark.parametrize("src,expected", [
    ("let a = 1 - (2 - 3)", "let a = 1 - (2 - 3)"),
    ("let a = (1 - 2) - 3", "let a = 1 - 2 - 3"),
    ("let a = 2 * (3 + 4)", "let a = 2 * (3 + 4)"),
    ("let a = -(-1)", "let a = --1"),
    ("let a = not (1 < 2) or false", "let a = not 1 < 2 or false"),
    ("let a = (true or false) and true", "let a = (true or false) and true"),
    ("let a = 8e-4", "let a = 8e-4"),
    ('let a = "q\\"uote"', 'let a = "q\\"uote"'),
])
def test_expressions_keep_their_meaning(src, expected):
    out = format_text(src + "\n")
    assert out == expected + "\n"
    assert ast_shape(out) == ast_shape(src + "\n")


def test_shapes_are_printed_compactly_or_spaced():
    src = "flow f(c = 1) {\n  input 1 x 8 x 8\n  expect latent c x (8 // 2) x 8\n}\n"
    assert format_text(src) == (
        "flow f(c = 1) {\n  input 1x8x8\n  expect latent c x (8 // 2) x 8\n}\n")


def test_comment_on_an_else_line_stays_outside_the_code():
    src = ("flow f(K = 2) {\n  input 4x8x8\n  if K == 2 {\n    actnorm\n"
           "  } else {  # otherwise\n    invconv\n  }\n}\n")
    out = format_text(src)
    assert ast_shape(out) == ast_shape(src)
    assert comment_texts(out) == comment_texts(src)


def test_comment_above_the_header_stays_above_it():
    out = format_text("# a file comment\nflowspec 0.1\nflow f {\n  input 4x8x8\n}\n")
    assert out.startswith("# a file comment\nflowspec 0.1\n")


def test_fmt_reescapes_import_paths():
    """Found by bench/fuzz.py: an import path with a quote or backslash must print back as
    a literal that parses to the same path."""
    from flowspec.parse import parse as parse_text

    text = 'import "a\\"b\\\\c.flow" as lib\n'
    out = format_text(text)
    assert parse_text(out).items[0].path == parse_text(text).items[0].path == 'a"b\\c.flow'
    assert format_text(out) == out
