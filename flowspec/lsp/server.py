"""The language server: pygls wiring of the editor features over stdio.

Every handler catches what the compiler or a plugin raises and answers "nothing" (logged
on stderr), so no input stops the server. Diagnostics are those of ``flowspec check`` on
the document's text (every flow of the file), republished on each change and cleared
when fixed; a diagnostic inside an imported file is shown on the import that brings it
in, with the real place as related information.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
import traceback
from typing import Any

from lsprotocol import types as t
from pygls.lsp.server import LanguageServer

from .. import __version__, ast
from ..errors import Diagnostic, FlowSpecError
from ..fmt import format_text
from .actions import fixes
from .complete import complete
from .document import Analysis, Document, analyse, path_to_uri, uri_to_path
from .hover import hover
from .navigate import definition, document_symbols, references, target_at

__all__ = ["FlowServer", "build", "serve"]

MAX_WORKSPACE_FILES = 2000  # .flow files searched for references
_KINDS = {
    "keyword": t.CompletionItemKind.Keyword,
    "kind": t.CompletionItemKind.Class,
    "variant": t.CompletionItemKind.EnumMember,
    "argument": t.CompletionItemKind.Property,
    "parameter": t.CompletionItemKind.Variable,
    "block": t.CompletionItemKind.Function,
    "value": t.CompletionItemKind.Value,
    "setting": t.CompletionItemKind.Field,
}
_SYMBOLS = {
    "flow": t.SymbolKind.Class,
    "block": t.SymbolKind.Function,
    "level": t.SymbolKind.Namespace,
    "import": t.SymbolKind.Module,
    "let": t.SymbolKind.Constant,
}
_AT = re.compile(r"\bat (\d+):(\d+)")


def _log(message: str) -> None:
    print(f"flowspec lsp: {message}", file=sys.stderr, flush=True)


def _range(r: tuple[tuple[int, int], tuple[int, int]]) -> t.Range:
    (sl, sc), (el, ec) = r
    return t.Range(start=t.Position(line=sl, character=sc), end=t.Position(line=el, character=ec))


def _same_file(a: str, b: str) -> bool:
    return a == b or os.path.abspath(a) == os.path.abspath(b)


class FlowServer(LanguageServer):
    """pygls' server with each document's last analysis and text."""

    def __init__(self) -> None:
        super().__init__(
            "flowspec", __version__, text_document_sync_kind=t.TextDocumentSyncKind.Full
        )
        self.docs: dict[str, Document] = {}
        self.analyses: dict[str, Analysis] = {}
        self.last_good: dict[str, Analysis] = {}  # the last analysis whose text parsed

    # ---- documents -------------------------------------------------------------------------
    def update(self, uri: str, text: str, version: int | None) -> None:
        doc = Document(uri, text, version)
        analysis = analyse(doc)
        self.docs[uri], self.analyses[uri] = doc, analysis
        if analysis.env is not None:
            self.last_good[uri] = analysis
        self.text_document_publish_diagnostics(
            t.PublishDiagnosticsParams(
                uri=uri, version=version, diagnostics=self.diagnostics(doc, analysis)
            )
        )

    def good(self, uri: str) -> Analysis | None:
        return self.last_good.get(uri) or self.analyses.get(uri)

    def diagnostics(self, doc: Document, analysis: Analysis) -> list[t.Diagnostic]:
        if analysis.crashed:
            return [
                t.Diagnostic(
                    range=_range(((0, 0), (0, 0))),
                    message=analysis.crashed,
                    severity=t.DiagnosticSeverity.Error,
                    source="flowspec",
                )
            ]
        return [self._diagnostic(doc, analysis, d) for d in analysis.diagnostics]

    def _diagnostic(self, doc: Document, analysis: Analysis, d: Diagnostic) -> t.Diagnostic:
        message = d.message + (f"\nhelp: {d.help}" if d.help else "")
        related: list[t.DiagnosticRelatedInformation] = []
        span = d.span
        if span is None:
            rng = ((0, 0), (0, 0))
        elif _same_file(span.file, doc.path):
            rng = doc.span_range(span)
        else:  # inside an imported file: point at its import, say where it really is
            rng = self._import_range(doc, analysis, span.file)
            message = f"{os.path.basename(span.file)}:{span.short()}: {message}"
            other = _load(span.file, self.docs)
            related.append(
                t.DiagnosticRelatedInformation(
                    location=t.Location(
                        uri=path_to_uri(span.file), range=_range(other.span_range(span))
                    ),
                    message=d.message,
                )
            )
        here = t.Location(uri=doc.uri, range=_range(rng))
        for note in d.notes:
            where = here
            m = _AT.search(note)
            if m and (span is None or _same_file(span.file, doc.path) or "instantiated" in note):
                line = int(m.group(1)) - 1
                col = doc.to_utf16(line, int(m.group(2)) - 1)
                where = t.Location(uri=doc.uri, range=_range(((line, col), (line, col))))
            related.append(t.DiagnosticRelatedInformation(location=where, message=note))
        return t.Diagnostic(
            range=_range(rng),
            message=message,
            code=d.code,
            source="flowspec",
            severity=(
                t.DiagnosticSeverity.Error
                if d.severity == "error"
                else t.DiagnosticSeverity.Warning
            ),
            related_information=related or None,
            data={"help": d.help},
        )

    @staticmethod
    def _import_range(doc: Document, analysis: Analysis, file: str):
        module = analysis.module
        for item in module.items if module else []:
            if isinstance(item, ast.Import):
                target = os.path.join(os.path.dirname(doc.path), item.path)
                if _same_file(target, file):
                    return doc.span_range(item.span)
        return (0, 0), (0, 0)

    def workspace_texts(self) -> dict[str, str]:
        """Path -> text of the workspace's .flow files, open documents as edited."""
        texts: dict[str, str] = {}
        roots = [uri_to_path(f.uri) for f in self.workspace.folders.values()]
        if not roots and self.workspace.root_path:
            roots = [self.workspace.root_path]
        roots += [os.path.dirname(d.path) for d in self.docs.values()]
        for root in dict.fromkeys(roots):
            for path in glob.iglob(os.path.join(root, "**", "*.flow"), recursive=True):
                if len(texts) >= MAX_WORKSPACE_FILES:
                    break
                texts.setdefault(os.path.abspath(path), "")
        for path in list(texts):
            try:
                with open(path, encoding="utf-8") as f:
                    texts[path] = f.read()
            except (OSError, UnicodeDecodeError):
                texts.pop(path)
        for d in self.docs.values():
            texts[os.path.abspath(d.path)] = d.text
        return texts


def _load(path: str, docs: dict[str, Document]) -> Document:
    """An open document by path, else the file as it is on disk (empty if unreadable)."""
    for d in docs.values():
        if _same_file(d.path, path):
            return d
    try:
        with open(path, encoding="utf-8") as f:
            return Document(path_to_uri(path), f.read())
    except (OSError, UnicodeDecodeError):
        return Document(path_to_uri(path), "")


def _safe(fn):
    """A handler that logs what it raises and answers None instead."""

    def run(ls: FlowServer, params: Any) -> Any:
        try:
            return fn(ls, params)
        except Exception:  # noqa: BLE001 - no input may stop the server
            _log(f"{fn.__name__} failed:\n{traceback.format_exc()}")
            return None

    run.__name__ = fn.__name__
    return run


def _position(doc: Document, p: t.Position) -> tuple[int, int]:
    """A protocol position as the compiler's 1-based line and column."""
    return p.line + 1, doc.from_utf16(p.line, p.character) + 1


def build() -> FlowServer:
    """The server with its features (plugins of ``--plugin`` and ``FLOWSPEC_PLUGINS`` are
    loaded before; those of ``initializationOptions.plugins`` on ``initialize``)."""
    server = FlowServer()
    _lifecycle(server)
    _assistance(server)
    _navigation(server)
    _editing(server)
    return server


def _lifecycle(server: FlowServer) -> None:
    """``initialize`` (plugins of the client's options) and the documents' open, change and
    close."""

    @server.feature(t.INITIALIZE)
    @_safe
    def initialize(ls: FlowServer, params: t.InitializeParams) -> None:
        options = params.initialization_options or {}
        names = options.get("plugins", []) if isinstance(options, dict) else []
        from ..plugins import load_plugins

        for name in (n for n in names if isinstance(n, str)):
            try:
                load_plugins([name], "initializationOptions.plugins")
            except Exception as e:  # noqa: BLE001 - a broken plugin is reported, not fatal
                _log(f"plugin `{name}` not loaded: {e}")

    @server.feature(t.TEXT_DOCUMENT_DID_OPEN)
    @_safe
    def did_open(ls: FlowServer, params: t.DidOpenTextDocumentParams) -> None:
        d = params.text_document
        ls.update(d.uri, d.text, d.version)

    @server.feature(t.TEXT_DOCUMENT_DID_CHANGE)
    @_safe
    def did_change(ls: FlowServer, params: t.DidChangeTextDocumentParams) -> None:
        text = ls.workspace.get_text_document(params.text_document.uri).source
        ls.update(params.text_document.uri, text, params.text_document.version)

    @server.feature(t.TEXT_DOCUMENT_DID_CLOSE)
    @_safe
    def did_close(ls: FlowServer, params: t.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        for table in (ls.docs, ls.analyses, ls.last_good):
            table.pop(uri, None)
        ls.text_document_publish_diagnostics(t.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


def _assistance(server: FlowServer) -> None:
    """Hover and completion."""

    @server.feature(t.TEXT_DOCUMENT_HOVER)
    @_safe
    def on_hover(ls: FlowServer, params: t.HoverParams) -> t.Hover | None:
        doc, analysis = (
            ls.docs.get(params.text_document.uri),
            ls.analyses.get(params.text_document.uri),
        )
        if doc is None or analysis is None:
            return None
        text = hover(analysis, *_position(doc, params.position))
        return (
            t.Hover(contents=t.MarkupContent(kind=t.MarkupKind.Markdown, value=text))
            if text
            else None
        )

    @server.feature(
        t.TEXT_DOCUMENT_COMPLETION, t.CompletionOptions(trigger_characters=[" ", "=", "."])
    )
    @_safe
    def on_complete(ls: FlowServer, params: t.CompletionParams) -> t.CompletionList:
        uri = params.text_document.uri
        doc = ls.docs.get(uri)
        if doc is None:
            return t.CompletionList(is_incomplete=False, items=[])
        pos = (params.position.line, params.position.character)
        items = [
            t.CompletionItem(
                label=i.label,
                kind=_KINDS.get(i.kind),
                detail=i.detail or None,
                documentation=i.doc or None,
                insert_text=i.insert,
            )
            for i in complete(doc, pos, ls.good(uri))
        ]
        return t.CompletionList(is_incomplete=False, items=items)


def _navigation(server: FlowServer) -> None:
    """Go to definition, references and the document's outline."""

    @server.feature(t.TEXT_DOCUMENT_DEFINITION)
    @_safe
    def on_definition(ls: FlowServer, params: t.DefinitionParams) -> t.Location | None:
        uri = params.text_document.uri
        doc, analysis = ls.docs.get(uri), ls.good(uri)
        if doc is None or analysis is None:
            return None
        found = definition(doc, analysis, *_position(doc, params.position))
        if found is None:
            return None
        path, span = found
        target = _load(path, ls.docs)
        return t.Location(uri=path_to_uri(path), range=_range(target.span_range(span)))

    @server.feature(t.TEXT_DOCUMENT_REFERENCES)
    @_safe
    def on_references(ls: FlowServer, params: t.ReferenceParams) -> list[t.Location] | None:
        uri = params.text_document.uri
        doc, analysis = ls.docs.get(uri), ls.good(uri)
        if doc is None or analysis is None or analysis.module is None:
            return None
        target = target_at(analysis.module, *_position(doc, params.position))
        if target is None:
            return None
        out = []
        for path, span in references(
            target, ls.workspace_texts(), params.context.include_declaration
        ):
            other = _load(path, ls.docs)
            out.append(t.Location(uri=path_to_uri(path), range=_range(other.span_range(span))))
        return out

    @server.feature(t.TEXT_DOCUMENT_DOCUMENT_SYMBOL)
    @_safe
    def on_symbols(ls: FlowServer, params: t.DocumentSymbolParams) -> list[t.DocumentSymbol]:
        uri = params.text_document.uri
        doc, analysis = ls.docs.get(uri), ls.good(uri)
        if doc is None or analysis is None or analysis.module is None:
            return []

        def convert(s) -> t.DocumentSymbol:
            return t.DocumentSymbol(
                name=s.name,
                kind=_SYMBOLS[s.kind],
                detail=s.detail or None,
                range=_range(doc.span_range(s.span)),
                selection_range=_range(doc.span_range(s.selection)),
                children=[convert(c) for c in s.children or []] or None,
            )

        return [convert(s) for s in document_symbols(analysis.module, doc.lines)]


def _editing(server: FlowServer) -> None:
    """Formatting and the quick fixes of diagnostics."""

    @server.feature(t.TEXT_DOCUMENT_FORMATTING)
    @_safe
    def on_format(ls: FlowServer, params: t.DocumentFormattingParams) -> list[t.TextEdit]:
        doc = ls.docs.get(params.text_document.uri)
        if doc is None:
            return []
        try:
            out = format_text(doc.text, doc.path)
        except FlowSpecError:  # it does not parse: nothing to format (the error is shown)
            return []
        if out == doc.text:
            return []
        last = len(doc.lines) - 1
        end = (last, doc.to_utf16(last, len(doc.line(last)) + 1))
        return [t.TextEdit(range=_range(((0, 0), end)), new_text=out)]

    @server.feature(
        t.TEXT_DOCUMENT_CODE_ACTION,
        t.CodeActionOptions(code_action_kinds=[t.CodeActionKind.QuickFix]),
    )
    @_safe
    def on_action(ls: FlowServer, params: t.CodeActionParams) -> list[t.CodeAction]:
        uri = params.text_document.uri
        doc, analysis = ls.docs.get(uri), ls.good(uri)
        if doc is None or analysis is None:
            return []
        out = []
        for diag in params.context.diagnostics:
            data = diag.data if isinstance(diag.data, dict) else {}
            rng = (
                (diag.range.start.line, diag.range.start.character),
                (diag.range.end.line, diag.range.end.character),
            )
            for title, edits in fixes(doc, analysis, str(diag.code), rng, data.get("help")):
                change = [t.TextEdit(range=_range(r), new_text=text) for r, text in edits]
                out.append(
                    t.CodeAction(
                        title=title,
                        kind=t.CodeActionKind.QuickFix,
                        diagnostics=[diag],
                        edit=t.WorkspaceEdit(changes={uri: change}),
                    )
                )
        return out


def serve() -> int:
    """Run the server on stdin/stdout until the client exits. Only JSON-RPC goes to stdout:
    whatever else prints (a plugin, a warning) is sent to stderr."""
    out = sys.stdout.buffer
    sys.stdout = sys.stderr
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    build().start_io(sys.stdin.buffer, out)
    return 0
