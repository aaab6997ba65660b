"""The build options' checks: the compile backend, the autocast dtype (the option's and the
caller's), and the one line that says why torch.compile failed."""

from __future__ import annotations

from typing import Any

import torch

from .errors import EXIT_USAGE, FlowError


class CompileBackendError(FlowError, ValueError):
    """``compile=`` names a backend torch.compile does not have (``available``: those it
    has, comma-separated); on the command line, ``--compile``'s value."""

    exit_code = EXIT_USAGE

    def __init__(self, backend: str, available: str):
        super().__init__(f"unknown torch.compile backend `{backend}`; available: {available}")
        self.available = available


def check_compile_backend(backend: Any) -> None:
    """Raise :class:`CompileBackendError` for a backend name torch.compile does not know
    (before compiling, which would otherwise fail deep inside torch)."""
    if not isinstance(backend, str):
        return
    known = _compile_backends()
    if known and backend not in known:
        raise CompileBackendError(backend, ", ".join(sorted(known)))


def _compile_backends() -> list[str]:
    """The backend names torch.compile takes: the public ``torch.compiler.list_backends``
    (torch 2.2 on), else the older private function; an empty list when neither exists
    (then every name is left for torch.compile to judge)."""
    lister = getattr(getattr(torch, "compiler", None), "list_backends", None)
    if lister is None:
        try:
            from torch._dynamo import list_backends as lister
        except ImportError:
            return []
    try:
        return list(lister(exclude_tags=()))
    except TypeError:  # a version without the keyword
        return list(lister())


def compile_failure(e: BaseException) -> str:
    """``Type: first line`` of the innermost error behind ``e`` (torch wraps the compiler's
    own error, and appends hints to messages)."""
    while True:
        inner = getattr(e, "inner_exception", None) or e.__cause__
        if inner is None or inner is e:
            break
        e = inner
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith(("Set TORCHDYNAMO_VERBOSE", "You can "))]
    return f"{type(e).__name__}: {(said or lines or [''])[0][:200]}"


def autocast_option(autocast: bool | torch.dtype) -> torch.dtype | None:
    if autocast is True:
        return torch.bfloat16
    if autocast is False or autocast is None:
        return None
    if isinstance(autocast, torch.dtype) and autocast in (torch.bfloat16, torch.float16):
        return autocast
    raise ValueError(
        f"autocast must be True, False, torch.bfloat16 or torch.float16, got {autocast!r}"
    )


def active_autocast(device_type: str) -> torch.dtype | None:
    """The dtype of the caller's ``torch.autocast`` on this device type, or ``None``."""
    try:
        if torch.is_autocast_enabled(device_type):
            return torch.get_autocast_dtype(device_type)
        return None
    except (TypeError, AttributeError):  # torch < 2.4
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        if device_type == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
        return None
