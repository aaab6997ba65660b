"""The `flowspec` command line: one table of commands, one direction of imports.

Exit codes: 0 success, 1 the spec (or data, or a run) has an error, 2 usage error, 3 internal
error (:func:`flowspec.errors.exit_code` maps every exception to its status). Spec errors are
printed as compiler diagnostics on stderr, never as a traceback.
Commands live in :mod:`flowspec.cli_front` (check, fmt, schema, kinds, verify),
:mod:`flowspec.cli_torch` (compile, render) and the modules that installed distributions
declare in the entry-point group ``flowspec.commands`` (train, eval, sample come that way);
each has ``register(commands)`` and imports only :mod:`flowspec.commands`.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
from importlib import metadata
from typing import Any

from .commands import ENTRY_POINT_GROUP, check_device, plugin_arg
from .errors import EXIT_INTERNAL, FlowError, FlowSpecError, exit_code

#: the compiler's own command modules, in the order of the help text (installed ones follow)
COMMAND_MODULES = ("flowspec.cli_front", "flowspec.cli_torch")
#: commands that read specs and print, never import torch and leave nothing open: after
#: them the process exits without a last pass of the cyclic collector (see :func:`run`)
FROZEN_EXIT = frozenset({"check", "fmt", "schema", "kinds"})


def _registrars(installed: bool = True) -> list[Any]:
    """The ``register`` functions: the compiler's, then (with ``installed``) the entry
    points' (one per value)."""
    found = [importlib.import_module(name).register for name in COMMAND_MODULES]
    if not installed:
        return found
    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.value in seen:
            continue
        seen.add(ep.value)
        try:
            found.append(ep.load())
        except ImportError:  # a distribution installed without its optional dependencies
            continue
    return found


def _commands(installed: bool = True) -> dict[str, Any]:
    commands: dict[str, Any] = {}
    for register in _registrars(installed):
        register(commands)
    return commands


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the command line ``argv`` whose command is one of
    the compiler's own (``check``, ``fmt``, ...), of that command only: the other commands'
    parsers are not built and the installed commands' entry points are neither looked up
    nor imported, which keeps ``flowspec check`` quick."""
    from . import __version__

    commands = _commands(installed=False)
    if argv and argv[0] in commands:
        commands = {argv[0]: commands[argv[0]]}
    else:
        commands = _commands()

    p = argparse.ArgumentParser(
        prog="flowspec",
        description="Compile .flow model specs of normalizing flows: check, build, render, train.",
    )
    p.add_argument("--version", action="version", version=f"flowspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for register, _ in commands.values():
        register(sub)
    for command in sub.choices.values():
        plugin_arg(command)
    return p


def _run(a: argparse.Namespace) -> int:
    from .plugins import load_plugins

    load_plugins(a.plugin, "--plugin")
    if getattr(a, "device", None):
        check_device(a.device)
    return a.func(a)


def _report(e: BaseException, a: argparse.Namespace) -> int:
    """Say on stderr why the command stopped (one line, or the diagnostics); its status."""
    code = exit_code(e)
    if isinstance(e, FlowSpecError):
        print(str(e), file=sys.stderr)
    elif isinstance(e, FlowError) and code != EXIT_INTERNAL:  # usage, plugin, ...: one line
        print(f"flowspec: error: {e}", file=sys.stderr)
    elif isinstance(e, FileNotFoundError):
        print(f"flowspec: error: no such file: {e.filename}", file=sys.stderr)
    elif isinstance(e, UnicodeDecodeError):
        print(
            f"flowspec: error: `{getattr(a, 'spec', '')}` is not UTF-8 text (a .flow file "
            "is text)",
            file=sys.stderr,
        )
    elif isinstance(e, BrokenPipeError):
        # the reader went away (`flowspec check x | head -1`): stop quietly, as `cat` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    elif isinstance(e, OSError):
        print(f"flowspec: error: cannot use `{e.filename}`: {e.strerror}", file=sys.stderr)
    elif isinstance(e, KeyboardInterrupt):
        print("flowspec: interrupted", file=sys.stderr)
    else:  # an internal error: short message, traceback only on request
        print(
            f"flowspec: internal error: {type(e).__name__}: {e}\n"
            "(set FLOWSPEC_DEBUG=1 to see the traceback)",
            file=sys.stderr,
        )
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    a = parser.parse_args(argv)
    try:
        return _run(a)
    except (Exception, KeyboardInterrupt) as e:
        if exit_code(e) == EXIT_INTERNAL and os.environ.get("FLOWSPEC_DEBUG"):
            raise
        return _report(e, a)


def run() -> None:
    """The ``flowspec`` command (and ``python -m flowspec.cli``): :func:`main`, then exit
    with its status. After a command of :data:`FROZEN_EXIT` the objects still alive are
    frozen out of the cyclic collector (``gc.freeze``) first: at shutdown Python collects
    once more, and that pass traverses every object the command built (for ``flowspec
    check`` of the largest shipped spec about a tenth of its time) only to find them all
    reachable from the modules about to be torn down. Not after a command that may hold
    objects whose finalizers must run (a training run's writers, torch's workers), and not
    in :func:`main`, which tests call in-process."""
    argv = sys.argv[1:]
    code = main(argv)
    if argv and argv[0] in FROZEN_EXIT:
        gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()
