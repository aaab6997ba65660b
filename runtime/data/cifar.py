"""CIFAR-10/100 python batches, unpickled with a whitelist (a pickle could run code)."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    DataError,
    ImageSet,
    _choose,
    _finish,
    _num_classes,
    _read_bytes,
    _rule_split,
    _scan,
)

_CIFAR_BATCH = re.compile(r"^(data_batch_\d+|test_batch)$")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches but refuses any class other than NumPy's array plumbing.

    CIFAR ships as pickles, and a pickle can run arbitrary code; a downloaded file named
    ``data_batch_1`` should not be able to do that.
    """

    _ALLOWED = frozenset(
        {
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise DataError(f"refusing to unpickle {module}.{name}: not part of a CIFAR batch")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core") :]  # NumPy 2 moved it
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    try:
        obj = _BatchUnpickler(io.BytesIO(_read_bytes(path)), encoding="bytes").load()
    except DataError:
        raise
    except Exception as e:  # any malformed pickle
        raise DataError(f"cannot read {path} as a CIFAR python batch: {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a CIFAR batch (a dict); found {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(path)
    data = d.get("data")
    labels = d.get("labels", d.get("fine_labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(
            f"{path}: expected keys 'data' and 'labels' of a CIFAR batch; found "
            f"{', '.join(map(str, d))}"
        )
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(
            f"{path}: expected uint8 data of shape (N, 3072); found {data.dtype} {data.shape}"
        )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{path}: {len(data)} images but {labels.size} labels")
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar(
    path: Path, split: str, limit: int | None = None, num_classes: int | None = None
) -> ImageSet:
    """CIFAR-10 python batches (CIFAR-100's ``train``/``test`` too), or one batch file."""
    if path.is_file():
        images, labels = _cifar_batch(path)
        parts = _rule_split(list(range(len(images))), labels)
        rule = "one CIFAR batch: every-tenth rule within it"
        index = np.asarray(_choose(parts, split, path, rule)[:limit], dtype=np.int64)
        return _finish(
            images[index],
            labels[index],
            None,
            _num_classes(labels, num_classes, 10),
            path,
            f"CIFAR batch {path}",
        )
    files = _scan(path)
    folders = sorted({p.parent for p in files if _CIFAR_BATCH.match(p.name)})
    if not folders:
        folders = sorted(
            {p.parent for p in files if p.name == "train" and (p.parent / "test").is_file()}
        )  # CIFAR-100
    if len(folders) != 1:
        raise DataError(
            f"expected one folder of CIFAR batches under {path}; found "
            f"{len(folders)}: {', '.join(map(str, folders[:4])) or 'none'}"
        )
    folder = folders[0]
    trains = sorted(folder.glob("data_batch_*"), key=lambda p: int(p.name.rsplit("_", 1)[1]))
    trains = trains or [p for p in [folder / "train"] if p.is_file()]
    vals = [p for p in (folder / "test_batch", folder / "test") if p.is_file()][:1]
    parts = {"train": trains, "val": vals, "all": trains + vals}
    batches = [_cifar_batch(p) for p in _choose(parts, split, folder, "CIFAR's own files")]
    images = np.concatenate([b[0] for b in batches])[:limit]
    labels = np.concatenate([b[1] for b in batches])[:limit]
    given = num_classes
    for meta in (folder / "batches.meta", folder / "meta"):
        if given is None and meta.is_file():
            names = _unpickle(meta)
            names = names.get("label_names", names.get("fine_label_names"))
            given = len(names) if names else None
    return _finish(
        images,
        labels,
        None,
        _num_classes(labels, given, 10),
        folder,
        f"CIFAR python batches from {folder} ({split})",
    )
