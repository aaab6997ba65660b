"""Parse .flow text into the syntax tree of :mod:`flowspec.ast`.

One cached LALR parser over ``grammar/flow.lark``; positions are kept on every node. The
parser ignores comments; each parse collects its own afterwards, with the grammar's own
STRING and COMMENT terminals, so that ``fmt`` can put them back (no state is shared between
parses: parsing is re-entrant and thread-safe).

:func:`parse` drives the parse and owns what is checked of the whole file (the comments, the
nesting limit :data:`MAX_NESTING`); the parser and the transformer into the syntax tree are
:mod:`flowspec.parse_tree`'s, the diagnostics of syntax errors :mod:`flowspec.syntax_errors`'.
"""

from __future__ import annotations

import re
from functools import lru_cache

from lark.exceptions import UnexpectedInput

from . import ast, codes
from .errors import Diagnostic, FlowSyntaxError, remember_source
from .parse_tree import MAX_INT, _ToAst, parser
from .syntax_errors import COMMON_MISTAKES, _syntax_diagnostic

__all__ = ["COMMON_MISTAKES", "MAX_INT", "MAX_NESTING", "parse", "parser"]


@lru_cache(maxsize=1)
def _strings_or_comments() -> re.Pattern[str]:
    """Matches a string or a comment (group ``comment``), as the grammar writes them."""
    string = parser().get_terminal("STRING").pattern.to_regexp()
    comment = parser().get_terminal("COMMENT").pattern.to_regexp()
    return re.compile(f"(?:{string})|(?P<comment>{comment})")


def _comments(text: str) -> list[ast.Comment]:
    """The comments of ``text``, which parsed: outside a string, ``#`` only starts one."""
    out: list[ast.Comment] = []
    line, counted = 1, 0
    for m in _strings_or_comments().finditer(text):
        comment = m.group("comment")
        if comment is None:
            continue
        start = m.start()
        line += text.count("\n", counted, start)
        counted = start
        out.append(ast.Comment(line, start - text.rfind("\n", 0, start), comment))
    return out


#: How deeply blocks, statements and expressions may nest. Everything after the parser
#: walks the syntax tree recursively; this keeps it far from Python's recursion limit.
MAX_NESTING = 100


def parse(text: str, file: str = "<string>") -> ast.Module:
    """Parse one .flow file; raises :class:`FlowSyntaxError` (with every syntax error)."""
    remember_source(file, text)
    diags: list[Diagnostic] = []

    def on_error(e: UnexpectedInput) -> bool:
        diags.append(_syntax_diagnostic(e, file, text))
        return False  # the first syntax error stops the parse: later ones would be noise

    try:
        tree = parser().parse(text)
    except UnexpectedInput as e:
        on_error(e)
        raise FlowSyntaxError(diags) from None
    comments = _comments(text)
    to_ast = _ToAst(file)
    version, items, line = to_ast.transform(tree)
    diags += to_ast.errors
    deep = _too_deep(items)
    if deep is not None:
        diags.append(
            Diagnostic(
                codes.E_NESTING,
                f"the file nests more than {MAX_NESTING} levels deep",
                deep.span,
                help="blocks, statements and expressions nest; "
                "split a long expression with `let`, or flatten the nesting",
            )
        )
    if diags:
        raise FlowSyntaxError(diags)
    return ast.Module(
        file=file, version=version, items=items, comments=comments, version_line=line
    )


def _too_deep(items: list) -> ast.Node | None:
    """The first node (in the text) nested more than MAX_NESTING levels deep, found by an
    iterative walk."""
    first: ast.Node | None = None
    stack: list[tuple[object, int]] = [(x, 1) for x in items]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend((x, depth) for x in node)
        elif isinstance(node, ast.Node):
            if depth > MAX_NESTING:
                key = (node.span.line, node.span.column)
                if first is None or key < (first.span.line, first.span.column):
                    first = node
                continue
            for name in node.__dataclass_fields__:  # (dataclasses.fields is 10x slower)
                value = getattr(node, name)
                if isinstance(value, (ast.Node, list, tuple)):
                    stack.append((value, depth + 1))
    return first
