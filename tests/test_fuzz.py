"""Front-end fuzzing, bounded for the suite (the long runs are ``bench/fuzz.py``).

1. Random *valid* specs, generated from the language with their shapes computed by the
   generator (levels, steps, every layer kind, attention in steps and through ``insert``
   rules and ``extends``, blocks with parameters, ``for`` / ``if`` / ``let``, image and
   label conditions): each resolves and checks without errors, has the latent the
   generator computed, formats idempotently to the same IR, compiles, and is an exact
   bijection (autograd-Jacobian logdet to 1e-8, inverse to 1e-10, float64).
2. Mutants of ``specs/*.flow`` and of generated specs: ``analyze`` answers with
   diagnostics that point into the file, or resolves; never another exception, never
   slowly; ``flowspec check`` in-process exits 0 or 1.
3. Regression rows for the front-end bugs the fuzzer found.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import fuzz_mutate
import fuzz_oracle
import fuzz_specs
import fuzzing
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from irdata import strip_spans
from numerics import jacobian_logdet, max_abs_diff, perturb_, random_cond, single_thread

import flowspec
from flowspec.api import analyze
from flowspec.errors import FlowSpecError
from flowspec.fmt import format_text
from flowspec.interpret import MAX_CALL_DEPTH, MAX_LAYERS
from flowspec.loader import MAX_IMPORT_DEPTH
from flowspec.parse import MAX_NESTING

ROOT = Path(__file__).resolve().parents[1]


# ---- 1. generated valid specs ---------------------------------------------------------------
class _Draw(fuzz_specs.Chooser):
    """The generator's decisions drawn by hypothesis (so failures shrink)."""

    def __init__(self, draw):
        self.draw = draw

    def integer(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def choice(self, options: list):
        return self.draw(st.sampled_from(options))

    def boolean(self, p: float = 0.5) -> bool:
        # shrinks towards False, i.e. towards the plainer spec
        return self.draw(st.integers(0, 99)) >= round(100 * (1 - p))


@st.composite
def valid_specs(draw) -> fuzz_specs.GenSpec:
    return fuzz_specs.random_spec(_Draw(draw))


FILE = str(ROOT / "specs" / "generated.flow")  # a name only: generated specs import nothing


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(valid_specs())
def test_generated_specs_check_format_compile_and_are_exact(gen: fuzz_specs.GenSpec):
    text = gen.text
    specs, diags = analyze(FILE, text=text, all_flows=True)
    errors = [d.render() for d in diags if d.severity == "error"]
    assert not errors, "\n".join(errors) + "\n" + text
    spec = next(s for s in specs if s.name == gen.flow)
    assert tuple(spec.input) == gen.input
    assert tuple(spec.latents[-1].shape) == gen.latent, text

    # fmt: idempotent, and the IR of every flow is unchanged
    once = format_text(text, FILE)
    assert format_text(once, FILE) == once
    again, _ = analyze(FILE, text=once, all_flows=True)
    assert [strip_spans(s.model_dump()) for s in again] == [
        strip_spans(s.model_dump()) for s in specs
    ]

    # compile at this (tiny) size; float64; perturbed after one data-dependent init
    with single_thread():
        gen_t = torch.Generator().manual_seed(0)
        model = flowspec.compile(spec, device="cpu", seed=0).double()
        x = torch.rand((2, *spec.input), generator=gen_t, dtype=torch.float64)
        cond = random_cond(spec, 2, gen_t)
        model.train()
        with torch.no_grad():
            model(x, cond)
        perturb_(model, 0.05, gen_t)
        model.eval()

        def fn(xb, *cs):
            cb = None if cond is None else dict(zip(cond, cs))
            zs, _ = model(xb, cb)
            return torch.cat([z.flatten(1) for z in zs], 1)

        with torch.no_grad():
            zs, logdet = model(x, cond)
        want, sign = jacobian_logdet(fn, x, *([] if cond is None else cond.values()))
        assert torch.all(sign != 0), text
        assert max_abs_diff(logdet, want) < 1e-8, (logdet, want, text)
        with torch.no_grad():
            back = model.inverse(zs, cond)
        assert max_abs_diff(back, x) < 1e-10, text


def test_the_generator_covers_the_language():
    """Over a few hundred draws, every feature the generator knows comes up."""
    chooser = fuzz_specs.Chooser(random.Random(0))
    seen: set[str] = set()
    kinds: set[str] = set()
    for _ in range(300):
        g = fuzz_specs.random_spec(chooser)
        seen |= g.features
        kinds |= {
            w
            for w in (
                "actnorm",
                "invconv",
                "permute",
                "coupling affine",
                "coupling additive",
                "coupling mixture",
                "injector",
                "attention imap",
                "attention isdp",
                "squeeze",
                "split",
                "condition lr: image",
                "condition seg: labels",
                "on=",
            )
            if w in g.text
        }
    assert seen >= {"block", "let", "if", "for", "insert", "extends", "condition"}
    assert len(kinds) == 14, kinds


# ---- 2. mutants ---------------------------------------------------------------------------
def test_mutants_give_only_diagnostics():
    """300 mutants (fixed seed): diagnostics with positions, or a resolved spec; every
    10th also through `flowspec check` in-process."""
    start = time.process_time()  # CPU time: the machine may be shared
    report = fuzzing.fuzz(300, seed=2024, cli_every=10)
    messages = [f"{f['kind']}: {f['message']} ({f['file']}, {f['ops']})" for f in report.failures]
    assert not messages, "\n".join(messages)
    assert report.tried == 300
    assert report.resolved > 5 and report.errors > 200  # mutants do both
    assert report.cli_runs == 30
    assert time.process_time() - start < 30


def test_mutation_keeps_untouched_text():
    rng = random.Random(1)
    text = (ROOT / "specs" / "demo.flow").read_text()
    assert "".join(fuzz_mutate.tokens(text)) == text
    for _ in range(50):
        mutant, ops = fuzz_mutate.mutate(rng, text)
        assert ops and isinstance(mutant, str)


# ---- 3. regressions: front-end bugs the fuzzer found -----------------------------------------
def t(*lines: str) -> str:
    return "\n".join(lines) + "\n"


@dataclass
class Row:
    id: str
    text: str
    code: str | None  # None: resolves without errors
    line: int | None = None
    col: int | None = None
    frag: str = ""


BIG = "9" * 5000
DEEP_NEG = "-" * 2000 + "1"
LONG_SUM = " + ".join(["1"] * 3000)
NESTED_IFS = "\n".join(["  if true {"] * 300 + ["    actnorm"] + ["  }"] * 300)
CHAIN = "".join(f"block b{i}() {{ b{i + 1}() }}\n" for i in range(MAX_CALL_DEPTH + 5))

ROWS = [
    # a string escape Python's unicode_escape rejected (\x, \N) raised a lark VisitError
    Row(
        "bad_escape_x",
        t('import "\\x" as lib', "flow f {", "  input 1x8x8", "}"),
        "E131",
        1,
        8,
        "cannot import",
    ),
    Row("bad_escape_N", t("flow f {", "  input 1x8x8", '  train { data "\\N" }', "}"), None),
    # non-ASCII text in strings came back as mojibake ("é" -> "Ã©")
    Row(
        "non_ascii_string",
        t('import "\u00e9t\u00e9.flow" as lib', "flow f {", "  input 1x8x8", "}"),
        "E131",
        1,
        8,
        "`\u00e9t\u00e9.flow`",
    ),
    # integer literals of more than 4300 digits raised ValueError inside the parser
    Row(
        "huge_int_literal",
        t("flow f {", "  input 1x8x8", f"  step x {BIG} {{ actnorm }}", "}"),
        "E008",
        3,
        10,
        "too large",
    ),
    Row(
        "int_literal_past_int64",
        t("flow f {", "  input 1x8x8", "  step x 9223372036854775808 { actnorm }", "}"),
        "E008",
        3,
        10,
        "2**63 - 1",
    ),
    Row("huge_dim_in_shape_token", t("flow f {", f"  input 1x{BIG}x8", "}"), "E008", 2, 9),
    Row(
        "infinite_float_literal",
        t("flow f {", "  input 1x8x8", "  train { optimizer adam lr=1e999 }", "}"),
        "E008",
        3,
        29,
        "1.8e308",
    ),
    Row(
        "overflowing_product",
        t(
            "let a = 9223372036854775807",
            "flow f {",
            "  input 1x8x8",
            "  step x a * a { actnorm }",
            "}",
        ),
        "E141",
        4,
        10,
    ),
    Row(
        "overflowing_float", t("flow f(lr = 1e308 * 10.0) {", "  input 1x8x8", "}"), "E141", 1, 13
    ),
    # deep nesting raised RecursionError (in lark's transformer, evaluate and fmt)
    Row(
        "deep_unary_minus",
        t("flow f {", "  input 1x8x8", f"  step x {DEEP_NEG} {{ actnorm }}", "}"),
        "E009",
        3,
        10 + MAX_NESTING - 3,
        "nests",
    ),
    Row(
        "long_sum",
        t("flow f {", "  input 1x8x8", f"  step x {LONG_SUM} {{ actnorm }}", "}"),
        "E009",
        3,
        10,
    ),
    Row("nested_ifs", t("flow f {", "  input 1x8x8", NESTED_IFS, "}"), "E009"),
    # empty nested loops ran 10^12 times (only layers were counted)
    Row(
        "nested_empty_loops",
        t(
            "flow f {",
            "  input 1x8x8",
            "  for i in 1..10000 {",
            "    for j in 1..10000 {",
            "      for k in 1..10000 { }",
            "    }",
            "  }",
            "}",
        ),
        "E170",
        5,
        7,
        "statements",
    ),
    # insert rules could grow a flow past MAX_LAYERS (and took seconds doing it)
    Row(
        "inserts_past_max_layers",
        t(
            "flow f {",
            "  input 4x8x8",
            f"  step x {MAX_LAYERS // 2} {{ actnorm }}",
            "  insert invconv after actnorm",
            "  insert permute before actnorm",
            "}",
        ),
        "E170",
        5,
        25,
        "insert rule",
    ),
    # a chain of block calls deeper than Python's recursion limit allows
    Row(
        "block_call_chain",
        CHAIN
        + t(
            f"block b{MAX_CALL_DEPTH + 5}() {{ actnorm }}",
            "flow f {",
            "  input 4x8x8",
            "  b0()",
            "}",
        ),
        "E162",
        MAX_CALL_DEPTH,
        1 + len(f"block b{MAX_CALL_DEPTH - 1}() {{ "),
    ),
    # encoder calls as values reached pydantic (ValidationError) outside `encoder=`
    Row(
        "encoder_call_as_flow_param",
        t("flow f(a = rrdb()) {", "  input 1x8x8", "}"),
        "E121",
        1,
        12,
        "encoder call",
    ),
    Row(
        "encoder_call_as_setting",
        t("let e = rrdb()", "flow f {", "  input 1x8x8", "  train { data e }", "}"),
        "E121",
        4,
        16,
    ),
    Row(
        "encoder_call_as_option",
        t("flow f {", "  input 1x8x8", "  train { task generation scale=rrdb(blocks=1) }", "}"),
        "E121",
        3,
        27,
        "condition's encoder",
    ),
    Row(
        "encoder_call_in_extends",
        t("flow f(a = 1) {", "  input 1x8x8", "}", "flow g extends f(a = convnet()) { }"),
        "E121",
        4,
        22,
    ),
    # end-of-file errors counted lines with str.splitlines (which also splits at \u2028)
    Row(
        "line_separator_in_comment",
        t("flow f {", "  # a\u2028b\u2028c\u2028d", "  input 1x8x8"),
        "E002",
        3,
        14,
    ),
    # the cache of validated arguments must not confuse true with 1
    Row(
        "valid_args_cache_keeps_types",
        t("flow f {", "  input 4x8x8", "  invconv lu=true", "  invconv lu=1", "}"),
        "E121",
        4,
        11,
        "lu",
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fuzz_regressions(row: Row):
    start = time.process_time()
    _, diags = analyze("main.flow", text=row.text, all_flows=True)
    assert time.process_time() - start < 2, "slow"
    errors = [d for d in diags if d.severity == "error"]
    fuzz_oracle.check_diagnostics(diags, "main.flow", row.text)
    if row.code is None:
        assert not errors, [d.render() for d in errors]
        return
    assert errors, f"expected {row.code}"
    first = errors[0]
    assert first.code == row.code, first.render()
    if row.line is not None:
        assert (first.span.line, first.span.column) == (row.line, row.col), first.render()
    assert row.frag in first.message + (first.help or ""), first.render()
    with pytest.raises(FlowSpecError):
        flowspec.loads(row.text, filename="main.flow")


def test_strings_keep_non_ascii_text_and_known_escapes():
    text = t(
        "flow f {", "  input 1x8x8", '  train { data "caf\u00e9 \\u00e9\\t\\"q\\" C:\\data" }', "}"
    )
    spec = flowspec.loads(text)
    assert spec.train["data"].value == 'caf\u00e9 \u00e9\t"q" C:\\data'


def test_import_of_a_binary_file_is_a_diagnostic(tmp_path: Path):
    (tmp_path / "blob.flow").write_bytes(bytes(range(128, 256)))
    main = tmp_path / "main.flow"
    main.write_text(t('import "blob.flow" as b', "flow f {", "  input 1x8x8", "}"))
    _, diags = analyze(main)
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [("E131", 1, 8)]
    assert "UTF-8" in diags[0].message
    _, diags = analyze(tmp_path / "blob.flow")
    assert [d.code for d in diags] == ["E131"]


def test_import_chains_are_bounded(tmp_path: Path):
    n = MAX_IMPORT_DEPTH + 3
    for i in range(n):
        (tmp_path / f"m{i}.flow").write_text(f'import "m{i + 1}.flow" as m\n')
    (tmp_path / f"m{n}.flow").write_text("let x = 1\n")
    _, diags = analyze(tmp_path / "m0.flow", all_flows=True)
    assert [d.code for d in diags if d.severity == "error"] == ["E133"]


def test_cli_check_on_regression_rows(tmp_path: Path, cli):
    for row in ROWS[:8]:
        path = tmp_path / "main.flow"
        path.write_text(row.text, encoding="utf-8")
        rc, _, err = cli("check", path)
        assert rc == (0 if row.code is None else 1), (row.id, err)
        if row.code is not None:
            assert f"[{row.code}]" in err


@pytest.mark.parametrize(
    "text,value",
    [
        ("3", 3),
        ("-3", -3),
        ("2.5", 2.5),
        ("8e-4", 8e-4),
        ("true", True),
        ("x", "x"),
        # Python's int()/float() accepted these; the language does not write numbers so
        ("nan", "nan"),
        ("inf", "inf"),
        ("1e999", "1e999"),
        ("1_000", "1_000"),
        ("9" * 5000, "9" * 5000),
        ("9223372036854775808", "9223372036854775808"),
    ],
)
def test_set_values_are_numbers_only_as_the_language_writes_them(text, value):
    from flowspec import parse_override

    got = parse_override(text)
    assert got == value and isinstance(got, type(value))
