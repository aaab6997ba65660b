"""Shared fixtures of the front-end tests: run the CLI in-process."""

from __future__ import annotations

import pytest


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
