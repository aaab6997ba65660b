"""Deterministic algorithms for a run: ``--deterministic``, or ``deterministic true`` in
``train { }``.

CPU kernels give the same bits for the same inputs whatever is set here, so a CPU run
resumes bit for bit either way. CUDA does not: cuDNN picks convolution algorithms by timing
them (``cudnn.benchmark``), some kernels accumulate with atomics in whatever order threads
finish, and cuBLAS splits reductions by the size of its workspace. Deterministic mode turns
all three off: ``torch.use_deterministic_algorithms(True)`` (an op with no deterministic
kernel then raises instead of running), cuDNN's deterministic algorithms without
benchmarking, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which must be in the environment
before CUDA starts (hence the refusal once it has). The model's own ops that have no
deterministic CUDA kernel (the spline's cumulative sum, bilinear resampling) or only a slow
one (iSDP's sum over blocks) switch to matrix products, equal to rounding, while the mode is
on (``torch.are_deterministic_algorithms_enabled()``).

Without it, a CUDA run lets cuDNN benchmark (``cudnn.benchmark = True``): faster, and
reproducible only to rounding.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from .errors import RunError

__all__ = ["CUBLAS_WORKSPACE", "configured"]

#: the value cuBLAS needs for deterministic reductions (":16:8" works too, more slowly)
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def configured(deterministic: bool, device: torch.device) -> Iterator[None]:
    """Run the enclosed code in deterministic mode (or, on CUDA without it, with cuDNN
    benchmarking); the process's previous settings come back at exit. Enter it before
    anything touches CUDA."""
    cudnn = torch.backends.cudnn
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn.deterministic,
        cudnn.benchmark,
    )
    if deterministic:
        _cublas_workspace(device)
        torch.use_deterministic_algorithms(True)
        cudnn.deterministic, cudnn.benchmark = True, False
    elif device.type == "cuda":
        cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        cudnn.deterministic, cudnn.benchmark = before[2], before[3]


def _cublas_workspace(device: torch.device) -> None:
    if os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (CUBLAS_WORKSPACE, ":16:8"):
        return
    if device.type == "cuda" and torch.cuda.is_initialized():
        raise RunError(
            "deterministic mode was asked for after CUDA started, too late for "
            f"cuBLAS: set CUBLAS_WORKSPACE_CONFIG={CUBLAS_WORKSPACE} in the "
            "environment, or ask for it before any CUDA work in this process"
        )
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
