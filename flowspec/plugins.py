"""Loading users' vocabulary: layer kinds, nets, encoders and priors from Python modules.

A plugin is any importable module whose import registers declarations with
:func:`flowspec.kind`, :func:`flowspec.net`, :func:`flowspec.encoder` or
:func:`flowspec.prior`. Five routes load one (README, "Writing a layer kind"):

* ``--plugin MODULE`` (or ``--plugin path/to/file.py``) on every command of the CLI
  (repeatable),
* the environment variable ``FLOWSPEC_PLUGINS=a,b``,
* ``flowspec.load(..., plugins=["a"])`` (and ``loads``),
* importing the module yourself,
* the entry-point group ``flowspec.plugins`` of an installed distribution.

A spec never names a module and never causes an import. A plugin whose import fails, whose
key clashes with a registered one or whose declaration is malformed raises
:class:`~flowspec.kinds.PluginError` naming the plugin, and leaves the registries as they
were before the import.

What a plugin registered is remembered (:data:`ORIGIN`), so that a checkpoint can record
which plugins its model's vocabulary comes from (:func:`used_plugins`) and loading it
without them can name the ``--plugin`` to pass, instead of importing anything itself.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .kinds import REGISTRIES, PluginError

ENV = "FLOWSPEC_PLUGINS"
ENTRY_POINT_GROUP = "flowspec.plugins"

#: module name (or entry point ``name = value``, or a file path) -> the route that loaded it
LOADED: dict[str, str] = {}
#: ``(registry, key)`` -> the plugin that registered it, as it was given: a module name or
#: the file path of ``--plugin path/to/file.py``
ORIGIN: dict[tuple[str, str], str] = {}
_AUTO_DONE = False


def _snapshot() -> dict[str, tuple]:
    return {name: table.snapshot() for name, table in REGISTRIES.items()}


def _restore(saved: dict[str, tuple]) -> None:
    for name, table in REGISTRIES.items():
        table.restore(saved[name])


def is_file_plugin(name: str) -> bool:
    """Whether ``--plugin NAME`` names a Python file rather than a module."""
    return name.endswith(".py") or "/" in name or os.sep in name


def load_plugin(module: str, route: str = "import") -> None:
    """Import ``module`` (a module name, or the path of a ``.py`` file) so that it registers
    its vocabulary; idempotent."""
    module = module.strip()
    if not module or module in LOADED:
        return
    saved = _snapshot()
    try:
        if is_file_plugin(module):
            name = _import_file(module)
        else:
            name = module
            importlib.import_module(module)
    except PluginError as e:
        _restore(saved)
        raise PluginError(f"plugin `{module}` ({route}): {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of a user's module is reported
        _restore(saved)
        hint = ""
        if isinstance(e, ModuleNotFoundError) and e.name == module.split(".")[0]:
            hint = " (is it installed, or on PYTHONPATH / in the working folder?)"
        raise PluginError(
            f"plugin `{module}` ({route}) cannot be imported{hint}: {type(e).__name__}: {e}"
        ) from None
    _remember(saved, module)
    LOADED[module] = route
    LOADED.setdefault(name, route)


def _import_file(path: str) -> str:
    """Import the file ``path`` as the module named by its file name (``leaky.py`` ->
    ``leaky``), with its folder on ``sys.path`` as ``python path/to/file.py`` has it (so a
    declaration may name a sibling module); returns the module name."""
    file = Path(path)
    if not file.is_file():
        raise PluginError(f"no such file {file.absolute()}")
    name = file.stem
    if not name.isidentifier():
        raise PluginError(
            f"`{file.name}` cannot be imported as a module (its name is not a "
            "Python identifier); rename the file"
        )
    there = sys.modules.get(name)
    if there is not None:
        if Path(getattr(there, "__file__", None) or "").resolve() == file.resolve():
            return name
        raise PluginError(
            f"a module named `{name}` is already imported (from "
            f"{getattr(there, '__file__', None) or 'elsewhere'}); rename the "
            "file"
        )
    folder = str(file.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise PluginError(f"{file} is not a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise
    return name


def _remember(saved: dict[str, tuple], given: str) -> None:
    for registry, table in REGISTRIES.items():
        registered, deferred = saved[registry]
        for key in table.names():
            if key not in registered and key not in deferred:
                ORIGIN[(registry, key)] = given


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


def load_auto() -> None:
    """Load the plugins named by ``FLOWSPEC_PLUGINS`` and by installed entry points, once
    per process."""
    global _AUTO_DONE
    if _AUTO_DONE:
        return
    _AUTO_DONE = True
    for name in os.environ.get(ENV, "").split(","):
        if name.strip():
            load_plugin(name, f"from {ENV}")
    for ep in _entry_points():
        key = f"{ep.name} = {ep.value}"
        if key in LOADED or ep.module in LOADED:
            continue
        saved = _snapshot()
        try:
            ep.load()
        except PluginError as e:
            _restore(saved)
            raise PluginError(
                f"plugin `{ep.value}` (entry point `{ep.name}` of group {ENTRY_POINT_GROUP}): {e}"
            ) from None
        except Exception as e:  # noqa: BLE001
            _restore(saved)
            raise PluginError(
                f"plugin `{ep.value}` (entry point `{ep.name}` of group "
                f"{ENTRY_POINT_GROUP}) cannot be imported: "
                f"{type(e).__name__}: {e}"
            ) from None
        _remember(saved, ep.module)
        LOADED[key] = "entry point"
        LOADED.setdefault(ep.module, "entry point")


def load_plugins(
    modules: Iterable[str] | None = None, route: str = "plugins=[...] of load()"
) -> None:
    """The automatic routes (once), then ``modules`` in order."""
    load_auto()
    for m in modules or ():
        load_plugin(m, route)


def reset_auto() -> None:
    """Forget that the automatic routes ran (tests that change the environment)."""
    global _AUTO_DONE
    _AUTO_DONE = False


def _builtin(entry: Any) -> bool:
    return entry.__module__.startswith("flowspec.")


def _registry_args(entry: Any, args: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """The ``(registry, key)`` of each argument of ``entry`` that names another registry's
    entry (``net=``)."""
    for name, f in entry.Args.model_fields.items():
        extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
        if extra.get("registry") and isinstance(args.get(name), str):
            yield extra["registry"], args[name]


def vocabulary(spec: Any) -> list[tuple[str, str]]:
    """Every ``(registry, key)`` a checked spec uses: its layers' kinds and the nets they
    name, its conditions' encoders (and their flows' vocabulary), its prior."""
    out: list[tuple[str, str]] = []

    def add(registry: str, key: str, args: dict[str, Any]) -> None:
        if (registry, key) not in out:
            out.append((registry, key))
        entry = REGISTRIES[registry].get(key)
        if entry is not None:
            for pair in _registry_args(entry, args):
                if pair not in out:
                    out.append(pair)

    for layer in spec.layers:
        add("kind", layer.kind, layer.args)
    for c in spec.conditions:
        if c.flow is not None:
            out += [v for v in vocabulary(c.flow) if v not in out]
        else:
            add("encoder", c.encoder.kind, c.encoder.args)
    add("prior", spec.prior.kind, spec.prior.args)
    return out


def used_plugins(spec: Any) -> list[dict[str, Any]]:
    """Which plugins a spec's vocabulary comes from: ``[{"plugin": "leaky_mod", "uses":
    ["kind leaky"]}]``, the plugin as it was given (module name or file path; the module of
    the declaration when it was imported some other way). Empty for built-in vocabulary."""
    by: dict[str, list[str]] = {}
    for registry, key in vocabulary(spec):
        entry = REGISTRIES[registry].get(key)
        if entry is None or _builtin(entry):
            continue
        plugin = ORIGIN.get((registry, key), entry.__module__)
        by.setdefault(plugin, []).append(f"{registry} {key}")
    return [{"plugin": p, "uses": uses} for p, uses in by.items()]


def missing_plugins(record: list[dict[str, Any]]) -> str | None:
    """What a :func:`used_plugins` record needs that is not registered now, as one line
    saying which ``--plugin`` to pass; ``None`` when everything is there."""
    missing = []
    for item in record:
        for use in item.get("uses", []):
            registry, _, key = str(use).partition(" ")
            if key not in REGISTRIES.get(registry, {}):
                missing.append((registry, key, str(item.get("plugin"))))
    if not missing:
        return None
    registry, key, plugin = missing[0]
    flags = " ".join(dict.fromkeys(f"--plugin {p}" for _, _, p in missing))
    more = f" (and {len(missing) - 1} more of its vocabulary)" if len(missing) > 1 else ""
    return f"uses {registry} `{key}` of plugin module `{plugin}`{more}: pass {flags}"
