"""Shared pieces of the data package: the error, the ImageSet, split rules, file scans."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowspec.errors import FlowError

#: On-disk sets larger than this in memory need size= or limit= (read at each load, so
#: ``runtime.data.base.MAX_BYTES = ...`` raises it).
MAX_BYTES = 16 * 2**30

SPLITS = ("train", "val", "all")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class DataError(FlowError):
    """A data set could not be found, read or shaped as asked.

    The message always says what was expected, what was found and what to do, because
    the person reading it is usually pointing a spec at their own files.
    """


@dataclass
class ImageSet:
    """Images (and optional class labels or per-pixel label maps) of one split.

    Attributes:
        images: uint8 ``(N, C, H, W)``; raw pixel levels, dequantisation is the
            trainer's job so that bits/dim is computed on the true 256 levels.
        labels: int64 ``(N,)`` class ids, or ``None``.
        label_maps: int64 ``(N, H, W)`` per-pixel class ids (translation data), or ``None``.
        num_classes: classes of ``label_maps`` (background included) when present,
            else of ``labels``; ``None`` when there are neither.
        name: the built-in name or the folder/file name.
        description: one line: source, what it is, caveats.
        class_names: the name of each class id (a folder of class folders), or ``None``.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    label_maps: torch.Tensor | None
    num_classes: int | None
    name: str
    description: str
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Checked here because other code builds ImageSets too; a wrong dtype would
        # otherwise surface much later as a silent bits/dim error.
        im = self.images
        if im.dtype != torch.uint8 or im.ndim != 4:
            raise DataError(
                f"ImageSet {self.name!r}: images must be uint8 (N, C, H, W); found "
                f"{im.dtype} with shape {tuple(im.shape)}"
            )
        n = im.shape[0]
        if self.labels is not None and (
            self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (n,)
        ):
            raise DataError(
                f"ImageSet {self.name!r}: labels must be int64 ({n},); found "
                f"{self.labels.dtype} {tuple(self.labels.shape)}"
            )
        if self.label_maps is not None:
            want = (n, im.shape[2], im.shape[3])
            if self.label_maps.dtype != torch.int64 or tuple(self.label_maps.shape) != want:
                raise DataError(
                    f"ImageSet {self.name!r}: label_maps must be int64 {want}; found "
                    f"{self.label_maps.dtype} {tuple(self.label_maps.shape)}"
                )

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _every_tenth(n: int, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices by the every-tenth rule (see the module docstring)."""
    if labels is None:
        rank = np.arange(n)
    else:
        rank = np.empty(n, dtype=np.int64)
        for c in np.unique(labels):
            where = np.flatnonzero(labels == c)
            rank[where] = np.arange(where.size)
    val = rank % 10 == 9
    return np.flatnonzero(~val), np.flatnonzero(val)


def _check_options(what: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        ok = ", ".join(sorted(allowed)) or "none"
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for {what}; accepted options: {ok}"
        )


def _choose(items: dict[str, list[Any]], split: str, where: Path, rule: str) -> list[Any]:
    """The items of ``split``, with a clear error when the source has none for it."""
    chosen = items.get(split)
    if chosen is None:
        raise DataError(f"{where} has no {split!r} split; it has: {', '.join(items)} ({rule})")
    if not chosen:
        raise DataError(
            f"the {split!r} split of {where} is empty ({rule}); use split='all' or add data"
        )
    return chosen


def _rule_split(items: list[Any], labels: np.ndarray | None = None) -> dict[str, list[Any]]:
    train, val = _every_tenth(len(items), labels)
    return {"train": [items[i] for i in train], "val": [items[i] for i in val], "all": items}


def _num_classes(labels: np.ndarray | None, given: int | None, floor: int) -> int | None:
    """Classes of a labelled set: ``given``, else max(floor, largest id + 1).

    The floor (10 for MNIST/CIFAR-style sets, 34 for Cityscapes ids) keeps the count from
    shrinking on a small subset that lacks the top class, which would change the model.
    """
    if labels is None or labels.size == 0:
        return given
    top = int(labels.max()) + 1
    if int(labels.min()) < 0:
        raise DataError(f"class ids must be >= 0; found {int(labels.min())}")
    if given is not None:
        if top > given:
            raise DataError(f"num_classes={given} but the data holds class id {top - 1}")
        return int(given)
    return max(floor, top)


def _finish(
    images: np.ndarray,
    labels: np.ndarray | None,
    maps: np.ndarray | None,
    num_classes: int | None,
    path: Path,
    description: str,
    class_names: tuple[str, ...] | None = None,
) -> ImageSet:
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images)),
        None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        None if maps is None else torch.from_numpy(maps.astype(np.int64)),
        num_classes,
        path.name or str(path),
        description,
        class_names,
    )


def _read_bytes(path: Path) -> bytes:
    """Read a file, gunzipping it when it starts with the gzip magic (not by its name)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    return raw


def _scan(root: Path) -> list[Path]:
    """All files under ``root``, sorted, hidden files and folders (``.git``, ``._x``) left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS
