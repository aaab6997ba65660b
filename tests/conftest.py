"""Shared fixtures: torch on one thread for the whole run; the CLI run in-process."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _declare_entry_points() -> None:
    """An install made before pyproject.toml declared an entry point (an editable install
    of an older checkout: one is read at install time) lacks it, and the CLI would have no
    train, eval or sample. Declare the missing ones in a dist-info folder beside the sources
    (ignored by git), which in-process and subprocess runs find as they find an installed
    distribution's. A fresh ``pip install -e .`` makes it unnecessary."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    missing = {group: table for group, table in declared.get("entry-points", {}).items()
               if not metadata.entry_points(group=group)}
    folder = ROOT / "flowspec_test_entry_points-0.dist-info"
    if not missing:
        return
    folder.mkdir(exist_ok=True)
    (folder / "METADATA").write_text("Metadata-Version: 2.1\nName: flowspec-test-entry-points"
                                     "\nVersion: 0\n")
    (folder / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in table.items())
        for group, table in missing.items()))


_declare_entry_points()


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
