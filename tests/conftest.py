"""Shared fixtures: torch on one thread for the whole run; the CLI run in-process."""

from __future__ import annotations

import pytest


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
