"""Checkpoints: written atomically, read with ``weights_only=True``, resumable bit for bit.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes), so
``torch.load(..., weights_only=True)`` reads it and loading one can never run code:

* ``model``, ``optimizer``, ``scheduler``: the three ``state_dict()``\\ s. The model's
  holds each actnorm's ``initialized`` buffer, so a loaded model never re-initialises.
* ``rng``: torch CPU (and every CUDA device's), Python ``random`` and NumPy states, and
  the data stream's ``(seed, step)``: the data order and the dequantisation noise are
  pure functions of those two (:func:`runtime.tasks.stream_seed`).
* ``step`` (optimisation steps done), ``digest`` (the IR digest of the model it belongs
  to), ``recipe``, ``flow``, ``spec_file``, ``overrides``, ``best_val_bpd``.

Writing goes to a temporary file in the same folder, is flushed and fsync'ed, and only
then ``os.replace``\\ d over the old file (atomic on POSIX): a crash or a kill at any point
leaves either the old checkpoint or the new one, never a torn file.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import RunError

FORMAT = 1


def rng_state(data_seed: int, step: int) -> dict[str, Any]:
    py = random.getstate()
    npy = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {"version": int(py[0]), "state": torch.tensor(py[1], dtype=torch.int64),
                   "gauss": py[2]},
        "numpy": {"kind": str(npy[0]), "keys": torch.from_numpy(npy[1].astype(np.int64)),
                  "pos": int(npy[2]), "has_gauss": int(npy[3]), "cached": float(npy[4])},
        "data": {"seed": int(data_seed), "step": int(step)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` so that a reader never sees a partial file.

    Raises :class:`RunError` (after removing the temporary file) when the write fails;
    the previous file at ``path``, if any, is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise RunError(f"could not write the checkpoint {path}: {e}; the previous "
                       "checkpoint (if any) is intact") from e
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not every platform lets a folder be opened
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint (CPU tensors) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"no checkpoint at {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file
        raise RunError(f"cannot read the checkpoint {path}: {e}") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or "model" not in ck:
        raise RunError(f"{path} is not a flowspec checkpoint (format {FORMAT})")
    return ck


def check_digest(ck: dict[str, Any], digest: str, path: str | os.PathLike, name: str) -> None:
    if ck.get("digest") != digest:
        raise RunError(f"the checkpoint {path} belongs to another model (digest "
                       f"{ck.get('digest')}, flow `{ck.get('flow')}` with "
                       f"{ck.get('overrides') or 'no overrides'}) than flow `{name}` "
                       f"(digest {digest}); pass the same --flow and --set as for training")
