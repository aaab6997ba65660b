"""Shared fixtures: torch on one thread for the whole run; the CLI run in-process."""

from __future__ import annotations

import sys

import pytest

from flowspec import plugins
from flowspec.kinds import REGISTRIES


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tensors in these tests are tiny: extra intra-op threads only add synchronisation,
    and on a shared 2-core machine they made model steps ~100x slower. (The subprocesses
    that check `flowspec check` stays torch-free are unaffected.)"""
    from numerics import single_thread

    with single_thread():
        yield


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> (exit code, stdout, stderr)`` of ``flowspec.cli.main``, in-process."""
    from flowspec.cli import main

    def run(*args: object) -> tuple[int, str, str]:
        capsys.readouterr()  # drop whatever the test printed before
        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            rc = e.code if isinstance(e.code, int) else 1
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def clean_registries(monkeypatch, tmp_path_factory):
    """Whatever a test registers or imports from its folders is undone afterwards (not the
    libraries it imported: re-importing their C extensions fails)."""
    saved = {name: table.snapshot() for name, table in REGISTRIES.items()}
    loaded, origin, path = dict(plugins.LOADED), dict(plugins.ORIGIN), list(sys.path)
    modules = set(sys.modules)
    monkeypatch.delenv(plugins.ENV, raising=False)
    plugins.reset_auto()
    yield
    for name, table in REGISTRIES.items():
        table.restore(saved[name])
    plugins.LOADED.clear()
    plugins.LOADED.update(loaded)
    plugins.ORIGIN.clear()
    plugins.ORIGIN.update(origin)
    sys.path[:] = path
    base = str(tmp_path_factory.getbasetemp())
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None)
        if file is None or str(file).startswith(base):
            del sys.modules[name]
    plugins.reset_auto()
