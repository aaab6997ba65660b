"""No import cycles among the project's modules (``flowspec/``, ``runtime/``).

Every ``import`` and ``from ... import`` in a file counts, at the top or inside a function
(a lazy import closes a cycle as surely, only later), except those under
``if TYPE_CHECKING:``, which never run. A package's ``__init__.py`` is the package's module;
``from pkg import name`` imports the submodule ``pkg.name`` when there is one, else ``pkg``;
``import a.b.c`` imports ``a.b.c``. Imports by string (``importlib.import_module``) are not
seen. One exception: the facade ``flowspec`` may reach the runtime (it exposes
``flowspec.load_checkpoint`` lazily); the rest of the compiler may not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flowspec", "runtime")
FACADE = "flowspec"


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, whether it is a package's ``__init__``)."""
    out = {}
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            parts = list(file.relative_to(ROOT).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts.pop()
            out[".".join(parts)] = (file, is_package)
    return out


def _run_time_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph() -> nx.DiGraph:
    mods = modules()

    def project_module(name: str) -> str | None:  # the module that runs for `name`
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = nx.DiGraph()
    for name, (file, is_package) in mods.items():
        graph.add_node(name)
        package = name if is_package else name.rpartition(".")[0]
        for node in _run_time_imports(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            for target in map(project_module, targets):
                if target is None or target == name:
                    continue
                if name == FACADE and target.split(".")[0] != FACADE:
                    continue  # the facade's lazy exports of the runtime
                graph.add_edge(name, target, line=node.lineno)
    return graph


def cycles(graph: nx.DiGraph) -> set[frozenset[str]]:
    return {frozenset(c) for c in nx.strongly_connected_components(graph) if len(c) > 1}


def describe(graph: nx.DiGraph, cycle: frozenset[str]) -> str:
    edges = sorted((a, b, graph.edges[a, b]["line"]) for a, b in graph.subgraph(cycle).edges)
    return (
        "{"
        + ", ".join(sorted(cycle))
        + "}: "
        + "; ".join(f"{a} -> {b} (line {line})" for a, b, line in edges)
    )


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    graph = import_graph()
    assert graph.has_edge("flowspec.cli_front", "flowspec.verify")  # inside cmd_verify
    assert not graph.has_edge("flowspec.condflow", "flowspec.build")  # TYPE_CHECKING only
    assert graph.has_edge("runtime.recipe", "flowspec")  # `from flowspec import ...`


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(describe(graph, c) for c in found)
