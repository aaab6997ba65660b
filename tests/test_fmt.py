"""`flowspec fmt`: canonical, idempotent, keeps every comment, never changes the meaning.

Golden round trips run over every file in specs/ and examples/ (globbed, so a new spec is
covered the moment it is added): ``fmt(fmt(x)) == fmt(x)``, the comment texts survive, the
syntax tree is the same up to positions, and every flow of the file resolves to the same IR.
Every shipped spec and every .flow example of README.md and docs/ is already formatted.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from pathlib import Path

import pytest
from irdata import strip_spans

from flowspec.api import analyze
from flowspec.errors import FlowSyntaxError
from flowspec.fmt import format_text
from flowspec.fmt_layout import LINE_LENGTH
from flowspec.parse import parse

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").rglob("*.flow"))
# examples/ needs its plugins to resolve: its files get every test but the IR one
SHIPPED = SPEC_FILES + sorted((ROOT / "examples").rglob("*.flow"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


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


@pytest.mark.parametrize("path", SHIPPED, ids=_id)
def test_fmt_is_idempotent(path: Path):
    once = format_text(path.read_text(), str(path))
    assert format_text(once, str(path)) == once
    assert once.endswith("\n") and not once.endswith("\n\n")
    assert "\t" not in once


@pytest.mark.parametrize("path", SHIPPED, ids=_id)
def test_fmt_keeps_every_comment(path: Path):
    text = path.read_text()
    out = format_text(text, str(path))
    assert comment_texts(out) == comment_texts(text)


@pytest.mark.parametrize("path", SHIPPED, ids=_id)
def test_fmt_keeps_the_syntax_tree(path: Path):
    text = path.read_text()
    assert ast_shape(format_text(text, str(path)), str(path)) == ast_shape(text, str(path))


@pytest.mark.parametrize("path", SPEC_FILES, ids=_id)
def test_fmt_keeps_the_ir_of_every_flow(path: Path):
    text = path.read_text()
    flows = list(dict.fromkeys(i.name for i in parse(text).items if type(i).__name__ == "FlowDef"))
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


@pytest.mark.parametrize("path", SHIPPED, ids=_id)
def test_every_shipped_spec_is_formatted(path: Path, cli):
    rc, _, err = cli("fmt", "--check", path)
    assert (rc, err) == (0, ""), f"run `flowspec fmt --write {_id(path)}`"
    for line in path.read_text().splitlines():
        code = line.split("  #")[0] if not line.lstrip().startswith("#") else ""
        assert len(code) <= LINE_LENGTH, line


def _doc_examples() -> list[tuple[str, str, str]]:
    """The .flow examples of the docs: ``(where, text as written, text as checked)``.

    A fenced block without a language tag (or tagged ``flow``) is a whole spec if it parses
    as a file, and a fragment of a flow's body if it parses inside ``flow f { }`` (checked
    there, indented); any other block (shell, a CLI transcript, a diagram) is not a .flow
    example and is skipped, as are blocks tagged with another language.
    """
    found = []
    for md in DOCS:
        text = md.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            lang, block = m.group(1), m.group(2)
            where = f"{md.relative_to(ROOT)}:{text[: m.start()].count(chr(10)) + 1}"
            if lang not in ("", "flow"):
                continue
            body = "".join(
                f"  {line}" if line.strip() else line for line in block.splitlines(keepends=True)
            )
            for candidate in (block, f"flow f {{\n{body}}}\n"):
                try:
                    parse(candidate, where)
                except FlowSyntaxError:
                    continue
                found.append((where, block, candidate))
                break
    return found


DOC_EXAMPLES = _doc_examples()


def test_the_docs_have_flow_examples():
    wheres = [w for w, block, checked in DOC_EXAMPLES if block == checked]
    assert any(w.startswith("README.md") for w in wheres)  # the quick start's whole spec
    assert sum(w.startswith("docs/language.md") for w in wheres) >= 8  # the shipped specs
    assert len(DOC_EXAMPLES) - len(wheres) >= 10  # the statements' fragments


@pytest.mark.parametrize("where,block,checked", DOC_EXAMPLES, ids=[w for w, *_ in DOC_EXAMPLES])
def test_every_doc_example_is_formatted(where: str, block: str, checked: str):
    assert format_text(checked, where) == checked


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
  condition lr: image 1 x 4 x 4 encoder=rrdb(blocks=1, features=4)
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
  expect latent 8 x 4 x 4
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


@pytest.mark.parametrize(
    "src,expected",
    [
        ("let a = 1 - (2 - 3)", "let a = 1 - (2 - 3)"),
        ("let a = (1 - 2) - 3", "let a = 1 - 2 - 3"),
        ("let a = 2 * (3 + 4)", "let a = 2 * (3 + 4)"),
        ("let a = -(-1)", "let a = --1"),
        ("let a = not (1 < 2) or false", "let a = not 1 < 2 or false"),
        ("let a = (true or false) and true", "let a = (true or false) and true"),
        ("let a = 8e-4", "let a = 8e-4"),
        ('let a = "q\\"uote"', 'let a = "q\\"uote"'),
    ],
)
def test_expressions_keep_their_meaning(src, expected):
    out = format_text(src + "\n")
    assert out == expected + "\n"
    assert ast_shape(out) == ast_shape(src + "\n")


def test_shapes_are_spaced_as_the_docs_write_them():
    src = "flow f(c = 1) {\n  input 1x8x8\n  expect latent c x (8 // 2) x 8\n}\n"
    assert format_text(src) == (
        "flow f(c = 1) {\n  input 1 x 8 x 8\n  expect latent c x (8 // 2) x 8\n}\n"
    )


def test_comment_on_an_else_line_stays_outside_the_code():
    src = (
        "flow f(K = 2) {\n  input 4x8x8\n  if K == 2 {\n    actnorm\n"
        "  } else {  # otherwise\n    invconv\n  }\n}\n"
    )
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


def test_blank_lines_are_kept_once_and_never_at_the_edges_of_a_body():
    src = (
        "flowspec 0.2\n# about the file\n\n\n\nflow f {\n\n  input 4 x 8 x 8\n  actnorm\n\n\n"
        "  # a comment block\n\n  invconv\n\n}\n"
    )
    assert format_text(src) == (
        "flowspec 0.2\n\n# about the file\n\nflow f {\n"
        "  input 4 x 8 x 8\n  actnorm\n\n  # a comment block\n\n"
        "  invconv\n}\n"
    )


def test_a_block_without_parameters_keeps_its_brackets():
    assert format_text("block b { actnorm }\n") == "block b() {\n  actnorm\n}\n"


LONG_HEAD = (
    "flow marflow(L = 3 in 1..8, K = 4 in 1..256, hidden = 96, components = 32, "
    "blocks = 10, features = 32, size = 32) {\n  input 1 x size x size\n}\n"
)


def test_a_long_parameter_list_wraps_aligned_after_its_bracket():
    out = format_text(LONG_HEAD)
    assert out.startswith(
        "flow marflow(L = 3 in 1..8, K = 4 in 1..256, hidden = 96, components = 32, blocks = 10,\n"
        "             features = 32, size = 32) {\n"
    )
    assert format_text(out) == out
    assert ast_shape(out) == ast_shape(LONG_HEAD)


def test_a_list_the_author_broke_stays_broken_with_its_comments():
    src = (
        "flow f(L = 3,  # levels\n       K = 4, hidden = 8,\n  size = 32) {\n"
        "  input 1 x size x size\n}\n"
    )
    out = format_text(src)
    assert out == (
        "flow f(L = 3,  # levels\n       K = 4, hidden = 8,\n       size = 32) {\n"
        "  input 1 x size x size\n}\n"
    )
    assert format_text(out) == out


def test_a_list_that_starts_far_right_breaks_after_its_bracket():
    src = (
        "flow f(size = 8, blocks = 2, features = 8) {\n  input 3 x size x size\n"
        "  condition lr: image 3 x (size // 2) x (size // 2) encoder=srflow(blocks=blocks, "
        "features=features, taps=2, ups=1, head=true, scale=2)\n}\n"
    )
    out = format_text(src)
    assert (
        "encoder=srflow(\n      blocks=blocks, features=features, taps=2, ups=1, head=true, "
        "scale=2)\n" in out
    )
    assert format_text(out) == out
    assert max(len(line) for line in out.splitlines()) <= LINE_LENGTH


def test_nested_lists_break_inside_the_one_that_does_not_fit():
    src = (
        "flow seg(a = 1, b = 2, c = 3) {\n  input 1 x 8 x 8\n}\n\nflow f(classes = 4) {\n"
        "  input 1 x 8 x 8\n  condition seg: labels classes x 8 x 8 encoder=flow(seg(a=11111,"
        " b=22222, c=33333)) on=something_long\n}\n"
    )
    out = format_text(src)
    assert format_text(out) == out
    assert ast_shape(out) == ast_shape(src)
    assert max(len(line) for line in out.splitlines()) <= LINE_LENGTH


def test_comments_inside_a_broken_list_stay_one_a_line():
    src = (
        "flow f(  # the parameters\n  L = 3,\n  # the width\n  hidden = 8) {  # head\n"
        "  input 1 x 8 x 8\n}\n"
    )
    out = format_text(src)
    assert comment_texts(out) == comment_texts(src)
    assert "       # the width\n       hidden = 8) {  # head\n" in out
    assert format_text(out) == out
