"""The fuzzer's mutator of .flow texts (:func:`mutate`): one to three random edits of a
text's tokens and lines: delete, duplicate, swap or move tokens and lines; change numbers
(0, -1, huge, float, 5,000 digits); change names (misspell, another identifier of the file,
a keyword, a layer or argument name); insert random characters, braces, quotes and odd
Unicode; cut the file short. :data:`OVERRIDES` are the ``--set`` values the driver tries.
"""

from __future__ import annotations

import random
import re

_TOKEN = re.compile(
    r'"(?:[^"\\\n]|\\.)*"'  # strings
    r"|#[^\n]*"  # comments
    r"|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"  # numbers
    r"|[A-Za-z_][A-Za-z0-9_]*"  # names
    r"|\.\.|==|!=|<=|>=|//"  # two-character operators
    r"|\r?\n|[ \t]+|.",
    re.DOTALL,
)

KEYWORDS = [
    "flowspec",
    "import",
    "as",
    "let",
    "block",
    "flow",
    "extends",
    "for",
    "in",
    "if",
    "else",
    "level",
    "step",
    "x",
    "input",
    "prior",
    "condition",
    "expect",
    "latent",
    "train",
    "insert",
    "before",
    "after",
    "true",
    "false",
    "and",
    "or",
    "not",
]
LAYER_WORDS = [
    "actnorm",
    "invconv",
    "permute",
    "coupling",
    "affine",
    "additive",
    "mixture",
    "injector",
    "attention",
    "imap",
    "isdp",
    "squeeze",
    "split",
    "gaussian",
    "learned",
    "image",
    "labels",
    "rrdb",
    "convnet",
    "hidden",
    "heads",
    "patches",
    "mask",
    "on",
    "lu",
    "mode",
    "net",
    "components",
    "factor",
    "prior",
    "blocks",
    "features",
    "checkerboard",
    "complement",
    "channel",
    "shuffle",
    "reverse",
    "task",
    "data",
    "bits",
    "batch",
    "optimizer",
    "steps",
    "lib",
    "glow_step",
]
NUMBERS = [
    "0",
    "-1",
    "1",
    "2",
    "3",
    "4",
    "7",
    "16",
    "10000",
    "10001",
    "99999",
    "4096",
    "2147483648",
    "99999999999999999999999999",
    "1" + "0" * 400,
    "9" * 5000,
    "0.5",
    "1.0",
    "2.5",
    "1e308",
    "1e999",
    "1e-999",
    "8e-4",
    "007",
    "0x10",
    "1_000",
    "3.",
    ".5",
    "nan",
    "inf",
]
CHARS = list("{}()[]\"';:,.=+-*/%<>!#\\@$&|?^~`\t\n x") + [
    "\r",
    "\r\n",
    "\x00",
    "\x0b",
    "\x0c",
    "\u00a0",
    "\u2028",
    "\u00e9",
    "\U0001f600",
    "\ufeff",
    "..",
    "//",
    "==",
    '""',
    '"\\',
    "{}",
    "()",
    "x 2",
    " x ",
    ";;",
    "\n}\n",
    "{\n",
]
OVERRIDES = [
    "0",
    "-1",
    "2",
    "99999999999999999999999",
    "1e999",
    "nan",
    "inf",
    "true",
    "x",
    "2.5",
    "",
    "rrdb(blocks=1)",
    "1x8x8",
]
GLUE = [
    "(",
    ")",
    "{",
    "}",
    ",",
    "=",
    ":",
    ";",
    ".",
    "..",
    "\n",
    "x",
    "-",
    "+",
    '"',
    "#",
    "not",
    "level",
    "step",
    "flow f {",
    "insert attention imap after",
    "extends",
]


#: Edit operators and how often each is drawn: most keep the text parseable (numbers,
#: names, whole lines) so that the resolver and checker see as many mutants as the parser.
OPS = [
    "delete",
    "duplicate",
    "swap",
    "move",
    "number",
    "name",
    "char",
    "glue",
    "line",
    "cut",
    "string",
]
WEIGHTS = [2, 1.5, 2, 1, 5, 6, 1.5, 1, 3, 0.5, 1]


def _class(tok: str) -> str:
    c = tok[:1]
    return (
        "num" if c.isdigit() else "name" if c.isalpha() or c == "_" else "str" if c == '"' else tok
    )


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


def _significant(toks: list[str]) -> list[int]:
    return [i for i, t in enumerate(toks) if not t.isspace()]


def _misspell(rng: random.Random, word: str) -> str:
    if not word:
        return "x"
    i = rng.randrange(len(word))
    op = rng.randrange(4)
    letters = "abcdefghijklmnopqrstuvwxyz_0123456789-"
    if op == 0 and len(word) > 1:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + rng.choice(letters) + word[i:]
    if op == 2:
        return word[:i] + rng.choice(letters) + word[i + 1 :]
    if len(word) > 1:
        j = min(i + 1, len(word) - 1)
        w = list(word)
        w[i], w[j] = w[j], w[i]
        return "".join(w)
    return word + word


def _rename(rng: random.Random, toks: list[str], sig: list[int], i: int) -> None:
    """Change a name token (in place): misspell it, or put another name of the file, a
    keyword or a layer word there."""
    names = [k for k in sig if toks[k][:1].isalpha() or toks[k][:1] == "_"]
    k = rng.choice(names) if names else i
    r = rng.random()
    if r < 0.35:
        toks[k] = _misspell(rng, toks[k])
    elif r < 0.6:
        toks[k] = toks[rng.choice(names)] if names else "x"
    elif r < 0.8:
        toks[k] = rng.choice(KEYWORDS)
    else:
        toks[k] = rng.choice(LAYER_WORDS)


def _edit_line(rng: random.Random, toks: list[str]) -> list[str]:
    """Delete, duplicate or swap whole lines; the tokens of the result."""
    lines = "".join(toks).split("\n")
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    how = rng.randrange(3)
    if how == 0:
        del lines[a]
    elif how == 1:
        lines.insert(a, lines[b])
    else:
        lines[a], lines[b] = lines[b], lines[a]
    return tokens("\n".join(lines))


def mutate(rng: random.Random, text: str, edits: int | None = None) -> tuple[str, list[str]]:
    """``text`` with 1-3 random edits (mostly one; or exactly ``edits``); also returns
    their names."""
    toks = tokens(text)
    assert "".join(toks) == text
    done: list[str] = []
    for _ in range(edits or rng.choice([1, 1, 1, 2, 2, 3])):
        sig = _significant(toks) or [0]
        if not toks:
            toks = [""]
        op = rng.choices(OPS, WEIGHTS)[0]
        i = rng.choice(sig)
        if op == "delete":
            del toks[i]
        elif op == "duplicate":
            toks.insert(i, toks[i] + rng.choice(["", " ", "\n"]))
        elif op == "swap":  # with a token of the same class, a random one, or the next one
            same = [k for k in sig if _class(toks[k]) == _class(toks[i])]
            r = rng.random()
            j = (
                rng.choice(same)
                if r < 0.5
                else rng.choice(sig)
                if r < 0.75
                else sig[min(sig.index(i) + 1, len(sig) - 1)]
            )
            toks[i], toks[j] = toks[j], toks[i]
        elif op == "move":
            t = toks.pop(i)
            toks.insert(rng.randrange(len(toks) + 1), t)
        elif op == "number":
            nums = [k for k in sig if toks[k][:1].isdigit()]
            k = rng.choice(nums) if nums else i
            toks[k] = rng.choice(NUMBERS)
        elif op == "name":
            _rename(rng, toks, sig, i)
        elif op == "char":
            toks.insert(rng.randrange(len(toks) + 1), rng.choice(CHARS))
        elif op == "glue":
            toks.insert(rng.randrange(len(toks) + 1), " " + rng.choice(GLUE) + " ")
        elif op == "line":
            toks = _edit_line(rng, toks)
        elif op == "cut":
            toks = toks[: rng.randrange(len(toks) + 1)]
        elif op == "string":
            strs = [k for k in sig if toks[k].startswith('"')]
            k = rng.choice(strs) if strs else i
            toks[k] = rng.choice(
                [
                    '""',
                    '"lib/steps.flow"',
                    '"demo.flow"',
                    '"."',
                    '"/"',
                    '"nonexistent.flow"',
                    '"lib"',
                    '"\\u00e9"',
                    '"\\x"',
                    '"\\N"',
                    '"\\777"',
                    '"a\\"b"',
                    '"lib/../lib/steps.flow"',
                ]
            )
        done.append(op)
    return "".join(toks), done
