"""Syntax errors (internal): what a parse error of lark becomes as a diagnostic.

:func:`_syntax_diagnostic` turns lark's ``UnexpectedInput`` into one diagnostic: a
hand-written message for the common mistakes (:data:`COMMON_MISTAKES`, recognised by the
parser state their examples fail at), else the unexpected character or token, or the end of
the file, with what the parser expected, in words (the terminal names' table).
"""

from __future__ import annotations

from functools import lru_cache

from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from . import codes
from .errors import Diagnostic, Span
from .parse_tree import parser

_TOKEN_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "SHAPE": "a shape like 1x32x32",
    "LBRACE": "`{`",
    "RBRACE": "`}`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "EQUAL": "`=`",
    "COMMA": "`,`",
    "_NL": "a new line",
    "SEMICOLON": "`;`",
    "COLON": "`:`",
    "DOT": "`.`",
    "VERSION": "a version number",
    "X": "`x`",
    "$END": "the end of the file",
    "BEFORE": "`before`",
    "AFTER": "`after`",
    "MINUS": "`-`",
    "__ANON_0": "`..`",
    "LEVEL": "`level`",
    "STEP": "`step`",
    "COMP_OP": "a comparison",
    "ADD_OP": "`+` or `-`",
    "MUL_OP": "`*`, `//` or `%`",
}

# Hand-written messages for common mistakes: (code, message, help, examples). Each example
# fails at the same parser state as the mistake it stands for (lark's match_examples).
COMMON_MISTAKES: list[tuple[str, str, str, list[str]]] = [
    (
        codes.E_UNCLOSED,
        "a block is not closed before the end of the file",
        "add the missing `}`",
        ["flow f { input 1x8x8", "flow f { level { squeeze }"],
    ),
    (
        codes.E_ARG_COLON,
        "arguments are written `name=value`, not `name: value`",
        "write for example `hidden=96`",
        ["flow f { coupling affine hidden: 96 }"],
    ),
    (
        codes.E_REPEAT_COUNT,
        "`x` needs a count after it",
        "write `step x 4 { ... }` (the count may be a parameter: `step x K`)",
        ["flow f { step x { actnorm } }"],
    ),
    (
        codes.E_REPEAT_FORM,
        "a repeat count is written `x N`",
        "write `level x 2 { ... }` or `step x K { ... }`",
        ["flow f { level 2 { squeeze } }"],
    ),
    (
        codes.E_SHAPE_FORM,
        "a shape is written CxHxW",
        "write for example `input 1x32x32` (or `input C x H x W` with spaces)",
        ["flow f { input 1,32,32 }", "flow f { input 32 }", "flow f {\n input 32\n}"],
    ),
    (
        codes.E_INSERT_PLACE,
        "an `insert` needs a place: `before KIND` or `after KIND`",
        "write for example `insert attention imap after coupling`",
        [
            "flow f { insert attention imap }",
            "flow f {\n insert attention imap\n}",
            "flow f { insert attention isdp heads=2 }",
            "flow f {\n insert attention isdp heads=2\n}",
            "flow f { insert actnorm; }",
        ],
    ),
]


def _expected_words(expected: set[str]) -> str:
    words = sorted(
        {_TOKEN_WORDS.get(t, f"`{t.lower()}`") for t in expected if not t.startswith("__")}
        | ({"`..`"} if any(t.startswith("__ANON") for t in expected) else set())
    )
    if len(words) > 8:
        words = words[:8] + ["..."]
    return ", ".join(words)


def _error_key(err: UnexpectedInput) -> tuple:
    """Where the parser stood: its LALR state and the offending token's type."""
    state = getattr(getattr(err, "state", None), "position", None)
    tok = getattr(err, "token", None)
    return (state, tok.type if tok is not None else "CHAR")


@lru_cache(maxsize=1)
def _mistake_keys() -> dict[tuple, tuple[str, str, str]]:
    """Parser states of the COMMON_MISTAKES examples (computed once; each is tested)."""
    keys: dict[tuple, tuple[str, str, str]] = {}
    for code, message, help_, examples in COMMON_MISTAKES:
        for example in examples:
            try:
                parser().parse(example)
            except UnexpectedInput as e:
                keys.setdefault(_error_key(e), (code, message, help_))
    return keys


def _syntax_diagnostic(err: UnexpectedInput, file: str, text: str) -> Diagnostic:
    line, col = max(1, err.line), max(1, err.column)
    width = 1
    at_end = isinstance(err, UnexpectedEOF) or (
        isinstance(err, UnexpectedToken) and err.token.type == "$END"
    )
    if at_end:  # point just past the last character, not at the last token
        # lines as the lexer counts them: only \n ends one (splitlines() would also split
        # at \u2028, \x0c, ... inside comments and strings)
        lines = text.split("\n")
        if len(lines) > 1 and lines[-1] == "":
            lines.pop()
        line, col = len(lines), len(lines[-1].rstrip("\r")) + 1
    elif isinstance(err, UnexpectedToken) and err.token.type != "_NL":
        width = max(1, len(str(err.token)))
    span = Span(file=file, line=line, column=col, end_line=line, end_column=col + width)
    known = _mistake_keys().get(_error_key(err))
    if known is not None:
        code, message, help_ = known
        return Diagnostic(code, message, span, help=help_)
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else "?"
        return Diagnostic(
            codes.E_UNEXPECTED,
            f"unexpected character `{ch}`",
            span,
            help=f"expected {_expected_words(set(err.allowed or ()))}" if err.allowed else None,
        )
    if at_end:
        opened = text.count("{") - text.count("}")
        if opened > 0:
            return Diagnostic(
                codes.E_UNCLOSED,
                COMMON_MISTAKES[0][1],
                span,
                help=f"add the missing `}}` ({opened} block"
                f"{'s are' if opened > 1 else ' is'} open)",
            )
        return Diagnostic(
            codes.E_UNCLOSED,
            "unexpected end of file",
            span,
            help=f"expected {_expected_words(set(err.expected))}",
        )
    tok = err.token
    shown = "end of line" if tok.type == "_NL" else f"`{tok}`"
    return Diagnostic(
        codes.E_UNEXPECTED,
        f"unexpected {shown}",
        span,
        help=f"expected {_expected_words(set(err.expected))}",
    )
