"""The registries and the built-in vocabulary deferred to first use (flowspec.registry,
flowspec.layers.BUILT_IN): the table says what the files declare, a check imports only the
declarations its spec uses, and a listing or a clash sees every entry all the same."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import flowspec
from flowspec import plugins
from flowspec.kinds import REGISTRIES, PluginError
from flowspec.layers import BUILT_IN
from flowspec.registry import Registry

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ROOT / "flowspec" / "layers"


def _fresh(code: str) -> dict:
    """What ``code`` (which sets ``out``) finds in a fresh interpreter."""
    script = "import json, sys\n" + textwrap.dedent(code) + "\nprint(json.dumps(out))"
    p = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(p.stdout)


def test_the_table_names_every_declaration_file_and_what_it_registers() -> None:
    files = {
        f.stem for f in LAYERS.glob("*.py") if not f.stem.startswith("_") and f.stem != "base"
    }
    assert files == {file for keys in BUILT_IN.values() for file in keys.values()}
    # each key is registered by the file the table names
    found = _fresh(
        """
        import flowspec
        from flowspec.kinds import REGISTRIES
        from flowspec.layers import BUILT_IN
        out = {}
        for registry, keys in BUILT_IN.items():
            for key, file in keys.items():
                entry = REGISTRIES[registry][key]
                out[f"{registry}:{key}"] = entry.__module__
        """
    )
    expected = {
        f"{registry}:{key}": f"flowspec.layers.{file}"
        for registry, keys in BUILT_IN.items()
        for key, file in keys.items()
    }
    assert found == expected
    # and nothing else of flowspec's own is registered
    listed = {
        f"{r}:{k}"
        for r, table in REGISTRIES.items()
        for k, v in table.items()
        if v.__module__.startswith("flowspec.")
    }
    assert listed == set(expected)


def test_importing_flowspec_imports_no_declaration_and_a_check_only_the_used_ones() -> None:
    out = _fresh(
        """
        import flowspec
        from flowspec.kinds import KINDS
        before = sorted(m for m in sys.modules if m.startswith("flowspec.layers."))
        known = "coupling.spline" in KINDS and "coupling.spline" in KINDS.names()
        after_in = "flowspec.layers.spline" in sys.modules
        specs, diags = flowspec.analyze("specs/demo.flow", all_flows=True)
        used = sorted({l.kind for s in specs for l in s.layers})
        loaded = sorted(m for m in sys.modules if m.startswith("flowspec.layers."))
        KINDS["coupling.spline"]
        out = dict(before=before, known=known, after_in=after_in, used=used, loaded=loaded,
                   spline="flowspec.layers.spline" in sys.modules, n=len(KINDS),
                   listed=len(list(KINDS)))
        """
    )
    assert out["before"] == [] and out["known"] and not out["after_in"]
    assert "coupling.affine" in out["used"] and "flowspec.layers.coupling" in out["loaded"]
    assert "flowspec.layers.spline" not in out["loaded"]  # demo has no spline coupling
    assert out["spline"]  # imported by its first lookup
    assert out["n"] == out["listed"] == len(BUILT_IN["kind"])


def test_a_listing_loads_every_deferred_entry() -> None:
    out = _fresh(
        """
        import flowspec
        from flowspec.kinds import KINDS, heads
        names = sorted(KINDS.names())
        listed = sorted(KINDS)
        out = dict(names=names, listed=listed, values=len(KINDS.values()),
                   heads=sorted(heads()), copy=len(dict(KINDS)))
        """
    )
    assert out["names"] == out["listed"] == sorted(BUILT_IN["kind"])
    assert out["values"] == out["copy"] == len(BUILT_IN["kind"])
    assert "coupling" in out["heads"] and "attention" in out["heads"]


def test_registry_semantics(tmp_path, monkeypatch) -> None:
    table = Registry()
    (tmp_path / "regdecl_two.py").write_text(
        "import sys\n"
        "table = sys.modules['flowspec_test_registry'].table\n"
        "table['a'] = 'A'\n"
        "table['b'] = 'B'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    holder = type(sys)("flowspec_test_registry")
    holder.table = table
    monkeypatch.setitem(sys.modules, "flowspec_test_registry", holder)
    table.defer("a", "regdecl_two")
    table.defer("b", "regdecl_two")
    table["c"] = "C"
    assert sorted(table.names()) == ["a", "b", "c"] and "regdecl_two" not in sys.modules
    assert "a" in table and "z" not in table and table.get("z") is None
    assert table.registered("a") is None and table.deferred_module("a") == "regdecl_two"
    assert table["b"] == "B" and table.registered("a") == "A"  # one import registers both
    assert table.deferred_module("a") is None
    with pytest.raises(KeyError):
        table["z"]
    monkeypatch.delitem(sys.modules, "regdecl_two")


def test_a_plugin_clashing_with_a_deferred_builtin_is_refused(
    tmp_path, monkeypatch, clean_registries
) -> None:
    (tmp_path / "plug_late_clash.py").write_text(
        "import flowspec\n@flowspec.kind\nclass S(flowspec.LayerKind):\n"
        "    key = 'coupling'\n    module = 'x:Y'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as info:
        plugins.load_plugins(["plug_late_clash"])
    assert "a head word has variants or none" in str(info.value)
    assert "coupling" in flowspec.kinds.head_keys()


def test_a_failed_plugin_keeps_the_builtins_it_imported(tmp_path) -> None:
    # the plugin imports a built-in file (deferred until then) and then fails: the registries
    # go back to before the plugin, but keep what that file registered (it will not again)
    (tmp_path / "plug_half.py").write_text(
        "from flowspec.layers.coupling import CouplingKind\nraise RuntimeError('half-way')\n"
    )
    out = _fresh(
        f"""
        sys.path.insert(0, {str(tmp_path)!r})
        import flowspec
        from flowspec import plugins
        from flowspec.kinds import KINDS, PluginError
        try:
            plugins.load_plugins(["plug_half"])
            failed = False
        except PluginError:
            failed = True
        out = dict(failed=failed, coupling=KINDS["coupling.affine"].__module__,
                   additive=KINDS["coupling.additive"].key, n=len(KINDS))
        """
    )
    assert out["failed"]
    assert out["coupling"] == "flowspec.layers.coupling"
    assert out["additive"] == "coupling.additive"
    assert out["n"] == len(BUILT_IN["kind"])
