"""Loading .flow files: each file and its imports parsed once, their top-level names bound.

A :class:`ModuleEnv` is one file's namespace (imports, lets, blocks, flows); the
:class:`Loader` fills it, following ``import "FILE.flow" as NS`` relative to the importing
file and reporting missing files, import cycles and version headers it cannot read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from . import ast
from .errors import Abort, Collector, Span, did_you_mean
from .evaluate import Scope, evaluate
from .parse import parse

__all__ = ["LANGUAGE_VERSIONS", "MAX_IMPORT_DEPTH", "Loader", "ModuleEnv"]

#: the language versions a file may declare in its `flowspec X.Y` header
LANGUAGE_VERSIONS = ("0.1", "0.2")
MAX_IMPORT_DEPTH = 32  # files importing files importing files ...


@dataclass
class ModuleEnv:
    file: str
    module: ast.Module
    imports: dict[str, ModuleEnv] = field(default_factory=dict)
    lets: dict[str, Any] = field(default_factory=dict)
    blocks: dict[str, ast.BlockDef] = field(default_factory=dict)
    flows: dict[str, ast.FlowDef] = field(default_factory=dict)

    def scope(self, **local: Any) -> Scope:
        return Scope(dict(local), self.lookup, self.names)

    def lookup(self, ns: str | None, name: str) -> Any:
        env = self if ns is None else self.imports[ns]
        return env.lets[name]

    def names(self, ns: str | None) -> list[str]:
        env = self if ns is None else self.imports.get(ns)
        return list(env.lets) if env else []

    def find(self, ns: str | None, name: str, what: str, span: Span, diags: Collector):
        """Look up a block or flow (``what``), with did-you-mean on failure."""
        if ns is not None and ns not in self.imports:
            diags.error(
                "E107",
                f"unknown import namespace `{ns}`",
                span,
                help=did_you_mean(ns, self.imports)
                or f'add `import "FILE.flow" as {ns}` at the top of the file',
            )
            raise Abort
        env = self if ns is None else self.imports[ns]
        table = env.blocks if what == "block" else env.flows
        if name in table:
            return env, table[name]
        hint = did_you_mean(name, table)
        if what == "block" and name in env.flows:
            hint = f"`{name}` is a flow; flows are reused with `extends`, blocks are called"
        shown = f"{ns}.{name}" if ns else name
        diags.error(
            "E102" if what == "block" else "E103", f"unknown {what} `{shown}`", span, help=hint
        )
        raise Abort


class Loader:
    """Loads a file and its imports once each; reports missing files and cycles."""

    def __init__(self, diags: Collector):
        self.diags = diags
        self.envs: dict[str, ModuleEnv] = {}
        self.loading: list[str] = []

    def load_text(self, text: str, file: str) -> ModuleEnv:
        module = parse(text, file)
        env = ModuleEnv(file, module)
        key = os.path.abspath(file) if os.path.exists(file) else file
        self.envs[key] = env
        self.loading.append(key)
        try:
            self._fill(env)
        finally:
            self.loading.pop()
        return env

    def load_file(self, path: str) -> ModuleEnv:
        with open(path, encoding="utf-8") as f:
            return self.load_text(f.read(), path)

    def _fill(self, env: ModuleEnv) -> None:
        version = env.module.version
        if version is not None and version not in LANGUAGE_VERSIONS:
            line = env.module.version_line
            self.diags.error(
                "E011",
                f"the file is written for flowspec {version}, but this "
                f"flowspec reads versions {', '.join(LANGUAGE_VERSIONS)}",
                Span(
                    file=env.file, line=line, column=1, end_line=line, end_column=10 + len(version)
                ),
                help=f"write `flowspec {LANGUAGE_VERSIONS[-1]}` (or upgrade "
                "flowspec if the file needs a newer language)",
            )
        base = os.path.dirname(env.file)
        for item in env.module.items:
            if isinstance(item, ast.Import):
                self._import(env, item, base)
            elif isinstance(item, ast.Let):
                self._define(env, item.name, item.span, env.lets)
                try:
                    env.lets[item.name] = evaluate(item.value, env.scope(), self.diags, words=True)
                except Abort:
                    env.lets[item.name] = 0  # keep going; the error is recorded
            elif isinstance(item, ast.BlockDef):
                self._define(env, item.name, item.span, env.blocks)
                env.blocks[item.name] = item
            elif isinstance(item, ast.FlowDef):
                self._define(env, item.name, item.span, env.flows)
                env.flows[item.name] = item

    def _define(self, env: ModuleEnv, name: str, span: Span, table: dict) -> None:
        if name in table:
            self.diags.error("E110", f"`{name}` is defined twice in this file", span)

    def _import(self, env: ModuleEnv, item: ast.Import, base: str) -> None:
        path = os.path.normpath(os.path.join(base, item.path))
        key = os.path.abspath(path)
        if item.alias in env.imports:
            self.diags.error("E110", f"namespace `{item.alias}` is imported twice", item.span)
            return
        if len(self.loading) >= MAX_IMPORT_DEPTH:
            self.diags.error(
                "E133", f"imports nest more than {MAX_IMPORT_DEPTH} files deep", item.path_span
            )
            return
        if key in self.loading:
            chain = [os.path.relpath(k) for k in self.loading[self.loading.index(key) :]]
            self.diags.error(
                "E132",
                "import cycle: " + " -> ".join(chain + [chain[0]]),
                item.path_span,
                help="move what both files need into a third file",
            )
            return
        if key in self.envs:
            env.imports[item.alias] = self.envs[key]
            return
        if not os.path.isfile(path):
            self.diags.error(
                "E131",
                f"cannot import `{item.path}`: no such file ({path})",
                item.path_span,
                help="import paths are relative to the importing file",
            )
            return
        try:
            env.imports[item.alias] = self.load_file(path)
        except OSError as e:
            self.diags.error("E131", f"cannot read `{item.path}`: {e.strerror}", item.path_span)
        except UnicodeDecodeError:
            self.diags.error(
                "E131",
                f"cannot read `{item.path}`: it is not UTF-8 text",
                item.path_span,
                help="import .flow files only",
            )
