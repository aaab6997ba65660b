"""The `flowspec` command line: one table of commands, one direction of imports.

Exit codes: 0 success, 1 the spec (or data, or a run) has an error, 2 usage error.
Spec errors are printed as compiler diagnostics on stderr, never as a traceback.
Commands live in :mod:`flowspec.cli_front` (check, fmt, schema, kinds, verify),
:mod:`flowspec.cli_torch` (compile, render) and :mod:`runtime.cli` (train, eval, sample);
each has ``register(commands)`` and imports only :mod:`flowspec.cli_args`.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from .cli_args import UsageError, check_device, plugin_arg
from .errors import FlowSpecError

#: the modules that register commands, in the order of the help text
COMMAND_MODULES = ("flowspec.cli_front", "flowspec.cli_torch", "runtime.cli")


def _commands() -> dict[str, Any]:
    commands: dict[str, Any] = {}
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:  # the runtime is optional (e.g. installed without it)
            continue
        module.register(commands)
    return commands


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="flowspec", description="Compile .flow model specs of "
                                "normalizing flows: check, build, render, train.")
    p.add_argument("--version", action="version", version=f"flowspec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for register, _ in _commands().values():
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return _run(a)
    except UsageError as e:
        print(f"flowspec: error: {e}", file=sys.stderr)
        return 2
    except FlowSpecError as e:
        print(str(e), file=sys.stderr)
        return 1
    except FileNotFoundError as e:
        print(f"flowspec: error: no such file: {e.filename}", file=sys.stderr)
        return 2
    except UnicodeDecodeError:
        print(f"flowspec: error: `{getattr(a, 'spec', '')}` is not UTF-8 text (a .flow file "
              "is text)", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`flowspec check x | head -1`): stop quietly, as `cat` does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:
        print(f"flowspec: error: cannot use `{e.filename}`: {e.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowspec: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal error: short message, traceback only on request
        from .kinds import PluginError

        if isinstance(e, PluginError):
            print(f"flowspec: error: {e}", file=sys.stderr)
            return 1
        if os.environ.get("FLOWSPEC_DEBUG"):
            raise
        print(f"flowspec: internal error: {type(e).__name__}: {e}\n"
              "(set FLOWSPEC_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
