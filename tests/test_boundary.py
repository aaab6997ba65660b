"""The compiler and the runtime: one direction of imports, through the public API only.

``flowspec/`` imports nothing of ``runtime/`` and names none of its modules (the facade
``flowspec/__init__.py`` may expose a runtime function lazily); ``runtime/`` imports from
``flowspec`` only the names of ``flowspec.__all__`` and the modules of
``flowspec.PUBLIC_MODULES``. The runtime's commands join the CLI through the entry-point
group ``flowspec.commands``, as any installed command module does.
"""

from __future__ import annotations

import ast
from importlib import metadata
from pathlib import Path

import tomllib

import flowspec
import flowspec.cli

ROOT = Path(__file__).resolve().parents[1]


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module and its classes and functions."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every import of a module (``names`` empty for ``import m``)."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def test_the_compiler_knows_nothing_of_the_runtime() -> None:
    found = []
    for path in sorted((ROOT / "flowspec").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        found += [
            f"{where}: imports {m}"
            for m, _ in _imports(tree)
            if m == "runtime" or m.startswith("runtime.")
        ]
        if path == ROOT / "flowspec" / "__init__.py":
            continue  # the facade's lazy attributes may name a runtime function
        docs = _docstrings(tree)
        found += [
            f"{where}:{n.lineno}: names {n.value!r}"
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant)
            and isinstance(n.value, str)
            and id(n) not in docs
            and "runtime." in n.value
        ]
    assert not found, "\n".join(found)


def test_the_runtime_uses_the_public_api_only() -> None:
    public = set(flowspec.__all__)
    modules = set(flowspec.PUBLIC_MODULES)
    found = []
    for path in sorted((ROOT / "runtime").rglob("*.py")):
        for module, names in _imports(ast.parse(path.read_text(), str(path))):
            if module == "flowspec":
                found += [
                    f"{path.relative_to(ROOT)}: flowspec.{n}"
                    for n in names
                    if n not in public and f"flowspec.{n}" not in modules
                ]
            elif module.startswith("flowspec.") and module not in modules:
                found.append(f"{path.relative_to(ROOT)}: {module}")
    assert not found, "not public API:\n" + "\n".join(found)


def test_public_names_exist() -> None:
    import importlib

    for name in flowspec.__all__:
        assert getattr(flowspec, name) is not None, name
    for module in flowspec.PUBLIC_MODULES:
        importlib.import_module(module)


def test_the_runtime_commands_are_an_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["flowspec.commands"] == {"runtime": "runtime.cli:register"}
    names = [ep.value for ep in metadata.entry_points(group="flowspec.commands")]
    assert "runtime.cli:register" in names  # installed, or declared by conftest.py
    sub = flowspec.cli.build_parser()._subparsers._group_actions[0].choices
    assert {"check", "compile", "train", "eval", "sample"} <= set(sub)


def test_commands_come_from_every_entry_point(monkeypatch) -> None:
    """Any installed distribution adds commands the same way: ``register(commands)``."""
    import argparse

    def register(commands: dict) -> None:
        def add(sub: argparse._SubParsersAction) -> None:
            sub.add_parser("hello").set_defaults(func=lambda a: 7)

        commands["hello"] = (add, None)

    class EntryPoint:
        name, value = "hello", "hello_mod:register"

        def load(self):
            return register

    real = metadata.entry_points

    def entry_points(**kw):
        eps = list(real(**kw))
        return [*eps, EntryPoint()] if kw.get("group") == "flowspec.commands" else eps

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert flowspec.cli.main(["hello"]) == 7
