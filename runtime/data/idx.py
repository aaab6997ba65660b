"""MNIST-family IDX files (plain or gzipped): one file, or a folder of train-*/t10k-*."""

from __future__ import annotations

import re
import struct
from pathlib import Path

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

_IDX_IMAGES = re.compile(r"^(train|t10k|test)-images[-.]idx3-ubyte(\.gz)?$")
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (LeCun's MNIST format): 0, 0, dtype code, ndim, big-endian dims."""
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DataError(
            f"{path} is not an IDX file: expected the header 00 00 <dtype> <ndim>, found "
            f"{raw[:4].hex(' ') or 'an empty file'}"
        )
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims))
    offset = 4 + 4 * ndim
    if len(raw) - offset != count * dtype.itemsize:
        raise DataError(
            f"{path}: the IDX header promises {'x'.join(map(str, dims))} values "
            f"({count * dtype.itemsize} bytes) but the file holds {len(raw) - offset}; "
            "it is truncated or not IDX"
        )
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(dims)


def _idx_images(array: np.ndarray, path: Path) -> np.ndarray:
    """IDX image arrays as uint8 (N, C, H, W): (N, H, W) is grey, (N, H, W, C) channels-last."""
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise DataError(
            f"{path}: expected uint8 images (N, H, W) or (N, H, W, C); found "
            f"{array.dtype} with shape {array.shape}"
        )
    out = array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(out)


def _read_idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The images and labels IDX files of one prefix ("train", "t10k") in ``folder``."""
    found: dict[str, Path] = {}
    for kind, rank in (("images", 3), ("labels", 1)):
        for name in (f"{prefix}-{kind}-idx{rank}-ubyte", f"{prefix}-{kind}.idx{rank}-ubyte"):
            for cand in (folder / name, folder / f"{name}.gz"):
                if cand.is_file() and kind not in found:
                    found[kind] = cand
    if "images" not in found:
        raise DataError(
            f"expected {prefix}-images-idx3-ubyte[.gz] in {folder}; not found "
            f"(files there: {', '.join(sorted(p.name for p in folder.iterdir())[:8])})"
        )
    images = _idx_images(_read_idx(found["images"]), found["images"])
    labels = None
    if "labels" in found:
        lab = _read_idx(found["labels"])
        if lab.ndim != 1 or len(lab) != len(images):
            raise DataError(
                f"{found['labels']}: expected {len(images)} labels to match "
                f"{found['images'].name}; found shape {lab.shape}"
            )
        labels = lab.astype(np.int64)
    return images, labels


def _load_idx(
    path: Path, split: str, limit: int | None = None, num_classes: int | None = None
) -> ImageSet:
    """MNIST-family IDX: a folder (train-* = train, t10k-*/test-* = val) or one images file."""
    if path.is_file():
        array = _read_idx(path)
        if array.ndim == 1:
            raise DataError(f"{path} holds labels; pass the images file or its folder")
        images = _idx_images(array, path)
        labels = None
        sibling = path.name.replace("images", "labels").replace("idx3", "idx1")
        for cand in (
            path.with_name(sibling),
            path.with_name(sibling.removesuffix(".gz")),
            path.with_name(sibling + ".gz"),
        ):
            if cand != path and cand.is_file():
                labels = _read_idx(cand).astype(np.int64)
                if labels.shape != (len(images),):
                    raise DataError(f"{cand}: expected {len(images)} labels; found {labels.shape}")
                break
        rule = "one IDX file: every-tenth rule within it"
        parts = _rule_split(list(range(len(images))), labels)
        index = np.asarray(_choose(parts, split, path, rule)[:limit], dtype=np.int64)
        lab = None if labels is None else labels[index]
        return _finish(
            images[index],
            lab,
            None,
            _num_classes(labels, num_classes, 10),
            path,
            f"IDX images from {path}",
        )
    folders = sorted({p.parent for p in _scan(path) if _IDX_IMAGES.match(p.name)})
    if len(folders) != 1:
        raise DataError(
            f"expected one folder of IDX files under {path}; found "
            f"{len(folders)}: {', '.join(map(str, folders[:4])) or 'none'}; pass one of them"
        )
    folder = folders[0]
    names = {p.name.split("-")[0] for p in folder.iterdir() if _IDX_IMAGES.match(p.name)}
    val_prefix = "t10k" if "t10k" in names else "test"
    prefixes = {
        "train": ["train"],
        "val": [val_prefix],
        "all": [p for p in ("train", val_prefix) if p in names],
    }.get(split)
    if not prefixes or any(p not in names for p in prefixes):
        want = {"train": "train-*", "val": "t10k-* or test-*"}.get(split, split)
        raise DataError(
            f"no {split!r} split in {folder}: expected {want} IDX files; found "
            f"{', '.join(sorted(names))}-* only (IDX splits are train and val)"
        )
    loaded = [_read_idx_pair(folder, p) for p in prefixes]
    images = np.concatenate([im for im, _ in loaded])[:limit]
    labels = None
    if all(lab is not None for _, lab in loaded):
        labels = np.concatenate([lab for _, lab in loaded])[:limit]  # type: ignore[misc]
    return _finish(
        images,
        labels,
        None,
        _num_classes(labels, num_classes, 10),
        folder,
        f"IDX images from {folder} ({split})",
    )
