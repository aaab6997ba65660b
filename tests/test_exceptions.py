"""One exception root (flowspec.errors.FlowError), each class with its exit status, and the
one mapping from exceptions to the command line's exit status and message."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil

import pytest

import flowspec
import runtime
from flowspec import cli
from flowspec.build import FlowRuntimeError
from flowspec.build_options import CompileBackendError
from flowspec.commands import UsageError
from flowspec.diagram import UnsupportedFormat
from flowspec.errors import Abort, Diagnostic, FlowError, FlowSpecError, FlowSyntaxError, exit_code
from flowspec.kinds import PluginError
from runtime.cli import _guard
from runtime.data import DataError
from runtime.errors import RunError


def _project_exceptions() -> list[type[BaseException]]:
    found = set()
    for pkg in (flowspec, runtime):
        for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            module = importlib.import_module(m.name)
            found |= {
                c
                for _, c in inspect.getmembers(module, inspect.isclass)
                if issubclass(c, BaseException) and c.__module__ == m.name
            }
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def test_every_exception_of_the_project_derives_from_the_root() -> None:
    classes = _project_exceptions()
    assert len(classes) >= 12  # FlowSpecError and its three, Abort, PluginError, UsageError, ...
    for c in classes:
        assert issubclass(c, FlowError), f"{c.__module__}.{c.__qualname__}"
        assert c.exit_code in (1, 2, 3), c


def _spec_error() -> FlowSpecError:
    return FlowSyntaxError([Diagnostic("E001", "unexpected `}`", None)])


# what each error of the project makes the command line print and return
ERRORS = [
    (_spec_error(), 1, "error[E001]: unexpected `}`"),
    (PluginError("plugin `p` failed"), 1, "flowspec: error: plugin `p` failed"),
    (UsageError("--set expects NAME=VALUE"), 2, "flowspec: error: --set expects NAME=VALUE"),
    (UnsupportedFormat("cannot render to `x.gif`"), 2, "flowspec: error: cannot render"),
    (CompileBackendError("nope", "eager"), 2, "flowspec: error: unknown torch.compile backend"),
    (FlowRuntimeError("a.b", None, "boom"), 1, "flowspec: error: in layer `a.b`: boom"),
    (RunError("loss is nan"), 1, "flowspec: error: loss is nan"),
    (DataError("no images"), 1, "flowspec: error: no images"),
    (Abort(), 3, "flowspec: internal error: Abort"),
    (FileNotFoundError(2, "No such file", "x.flow"), 2, "flowspec: error: no such file: x.flow"),
    (PermissionError(13, "Permission denied", "out"), 2, "cannot use `out`: Permission denied"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), 1, "`x.flow` is not UTF-8 text"),
    (KeyboardInterrupt(), 130, "flowspec: interrupted"),
    (ValueError("a bug"), 3, "flowspec: internal error: ValueError: a bug"),
]


@pytest.mark.parametrize("exc,code,message", ERRORS, ids=lambda v: type(v).__name__)
def test_the_cli_reports_each_error_with_its_exit_status(
    exc, code, message, monkeypatch, capsys
) -> None:
    def fail(a: argparse.Namespace) -> int:
        raise exc

    monkeypatch.setattr(cli, "_run", fail)
    monkeypatch.delenv("FLOWSPEC_DEBUG", raising=False)
    assert exit_code(exc) == code
    assert cli.main(["check", "x.flow"]) == code
    assert message in capsys.readouterr().err


def test_debug_shows_internal_errors_only(monkeypatch) -> None:
    monkeypatch.setenv("FLOWSPEC_DEBUG", "1")
    for exc, raised in ((ValueError("a bug"), True), (UsageError("bad"), False)):

        def fail(a: argparse.Namespace, exc: Exception = exc) -> int:
            raise exc

        monkeypatch.setattr(cli, "_run", fail)
        if raised:
            with pytest.raises(ValueError):
                cli.main(["check", "x.flow"])
        else:
            assert cli.main(["check", "x.flow"]) == 2


def test_a_broken_pipe_is_141() -> None:
    assert exit_code(BrokenPipeError()) == 141


@pytest.mark.parametrize(
    "exc",
    [RunError("r"), DataError("d"), FlowRuntimeError("p", None, "m")],
    ids=lambda v: type(v).__name__,
)
def test_the_runtime_names_the_command_of_a_run_error(exc, capsys) -> None:
    def fail(a: argparse.Namespace) -> int:
        raise exc

    rc = _guard(fail)(argparse.Namespace(threads=None, command="train"))
    assert rc == 1 and capsys.readouterr().err.startswith("flowspec train: error: ")


@pytest.mark.parametrize(
    "exc",
    [_spec_error(), UsageError("u"), PluginError("p"), RuntimeError("bug")],
    ids=lambda v: type(v).__name__,
)
def test_the_runtime_leaves_other_errors_to_the_cli(exc) -> None:
    def fail(a: argparse.Namespace) -> int:
        raise exc

    with pytest.raises(type(exc)):
        _guard(fail)(argparse.Namespace(threads=None, command="train"))
