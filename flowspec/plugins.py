"""Loading users' vocabulary: layer kinds, nets, encoders and priors from Python modules.

A plugin is any importable module whose import registers declarations with
:func:`flowspec.kind`, :func:`flowspec.net`, :func:`flowspec.encoder` or
:func:`flowspec.prior`. Five routes load one (DESIGN §8.1):

* ``--plugin MODULE`` on every command of the CLI (repeatable),
* the environment variable ``FLOWSPEC_PLUGINS=a,b``,
* ``flowspec.load(..., plugins=["a"])`` (and ``loads``),
* importing the module yourself,
* the entry-point group ``flowspec.plugins`` of an installed distribution.

A spec never names a module and never causes an import. A plugin whose import fails, whose
key clashes with a registered one or whose declaration is malformed raises
:class:`~flowspec.kinds.PluginError` naming the plugin, and leaves the registries as they
were before the import.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from importlib import metadata

from .kinds import REGISTRIES, PluginError

ENV = "FLOWSPEC_PLUGINS"
ENTRY_POINT_GROUP = "flowspec.plugins"

#: module name (or entry point ``name = value``) -> the route that loaded it
LOADED: dict[str, str] = {}
_AUTO_DONE = False


def _snapshot() -> dict[str, dict]:
    return {name: dict(table) for name, table in REGISTRIES.items()}


def _restore(saved: dict[str, dict]) -> None:
    for name, table in REGISTRIES.items():
        table.clear()
        table.update(saved[name])


def import_object(target: str) -> object:
    """``"package.module:Name"`` of a declaration's ``module``, imported on first build.

    The only other place (with :func:`load_plugin`) where flowspec imports code by name:
    both take names from Python code or the user's command line, never from a spec.
    """
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_plugin(module: str, route: str = "import") -> None:
    """Import ``module`` so that it registers its vocabulary; idempotent."""
    module = module.strip()
    if not module or module in LOADED:
        return
    saved = _snapshot()
    try:
        importlib.import_module(module)
    except PluginError as e:
        _restore(saved)
        raise PluginError(f"plugin `{module}` ({route}): {e}") from None
    except Exception as e:  # noqa: BLE001 - any failure of a user's module is reported
        _restore(saved)
        hint = ""
        if isinstance(e, ModuleNotFoundError) and e.name == module.split(".")[0]:
            hint = " (is it installed, or on PYTHONPATH / in the working folder?)"
        raise PluginError(f"plugin `{module}` ({route}) cannot be imported{hint}: "
                          f"{type(e).__name__}: {e}") from None
    LOADED[module] = route


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
            raise PluginError(f"plugin `{ep.value}` (entry point `{ep.name}` of group "
                              f"{ENTRY_POINT_GROUP}): {e}") from None
        except Exception as e:  # noqa: BLE001
            _restore(saved)
            raise PluginError(f"plugin `{ep.value}` (entry point `{ep.name}` of group "
                              f"{ENTRY_POINT_GROUP}) cannot be imported: "
                              f"{type(e).__name__}: {e}") from None
        LOADED[key] = "entry point"
        LOADED.setdefault(ep.module, "entry point")


def load_plugins(modules: Iterable[str] | None = None,
                 route: str = "plugins=[...] of load()") -> None:
    """The automatic routes (once), then ``modules`` in order."""
    load_auto()
    for m in modules or ():
        load_plugin(m, route)


def reset_auto() -> None:
    """Forget that the automatic routes ran (tests that change the environment)."""
    global _AUTO_DONE
    _AUTO_DONE = False
