"""A registry of declarations by key, whose entries may be deferred to first use.

:class:`Registry` is a ``dict`` (key -> declaration class) that may also know keys it has
not imported yet: ``defer(key, module)`` says which module declares ``key``, and the first
lookup of that key imports the module, whose decorator registers it as a plugin's does.
flowspec's built-in vocabulary is registered so (:mod:`flowspec.layers`): ``flowspec
check`` imports only the declarations a spec uses. Whatever lists a registry (iteration,
``keys``, ``values``, ``items``, ``len``) imports every deferred module first, so a listing
is always whole; :meth:`Registry.names` lists the keys without importing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any


class Registry(dict):
    """Key -> declaration, with keys known before their module is imported (see above)."""

    def __init__(self) -> None:
        super().__init__()
        self._deferred: dict[str, str] = {}  # key -> the module that declares it

    # -- entries not imported yet
    def defer(self, key: str, module: str) -> None:
        """``key`` is declared by ``module``, to be imported when ``key`` is first used."""
        if not dict.__contains__(self, key):
            self._deferred[key] = module

    def deferred_module(self, key: str) -> str | None:
        """The module that will declare ``key``, while it is not imported; else None."""
        return self._deferred.get(key)

    def registered(self, key: str) -> Any:
        """The declaration registered as ``key``, or None; imports nothing."""
        return dict.get(self, key)

    def names(self) -> list[str]:
        """Every key, registered or deferred, imports nothing."""
        return [*dict.keys(self), *self._deferred]

    def snapshot(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The registry's state (registered and deferred entries), importing nothing."""
        return dict(dict.items(self)), dict(self._deferred)

    def restore(self, state: tuple[dict[str, Any], dict[str, str]]) -> None:
        """Back to a :meth:`snapshot` (a plugin that failed half-way leaves nothing), but for
        the deferred entries imported since: their module, imported once, would not register
        them again."""
        registered, deferred = state
        kept = {
            key: entry
            for key, entry in dict.items(self)
            if deferred.get(key) == getattr(entry, "__module__", None)
        }
        dict.clear(self)
        dict.update(self, {**registered, **kept})
        self._deferred = {k: m for k, m in deferred.items() if k not in kept}

    def load_all(self) -> None:
        """Import every deferred module."""
        while self._deferred:
            self._load(next(iter(self._deferred)))

    def _load(self, key: str) -> None:
        module = self._deferred.pop(key)
        for other in [k for k, m in self._deferred.items() if m == module]:
            del self._deferred[other]  # the module registers them all
        importlib.import_module(module)

    # -- the dict, loading what it is asked for
    def __missing__(self, key: str) -> Any:
        if key in self._deferred:
            self._load(key)
            return dict.__getitem__(self, key)  # (a KeyError if the module did not register it)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._deferred

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __setitem__(self, key: str, value: Any) -> None:
        self._deferred.pop(key, None)
        dict.__setitem__(self, key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def clear(self) -> None:
        self._deferred.clear()
        dict.clear(self)

    def __iter__(self) -> Iterator[str]:
        self.load_all()
        return dict.__iter__(self)

    def keys(self):  # noqa: ANN201 - dict's views
        self.load_all()
        return dict.keys(self)

    def values(self):  # noqa: ANN201
        self.load_all()
        return dict.values(self)

    def items(self):  # noqa: ANN201
        self.load_all()
        return dict.items(self)

    def __len__(self) -> int:
        self.load_all()
        return dict.__len__(self)

    def copy(self) -> dict[str, Any]:
        self.load_all()
        return dict.copy(self)
