"""On-disk data sets: detect a path's format and hand it to its loader."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowspec.datasets import FORMATS

from .base import DataError, ImageSet, _check_options, _is_image, _read_bytes, _scan
from .cifar import _CIFAR_BATCH, _load_cifar
from .folders import _load_cityscapes, _load_pairs, _pair_dirs
from .idx import _IDX_DTYPES, _IDX_IMAGES, _load_idx
from .imagefolder import _load_folder

#: format -> the options its loader takes (declared in :mod:`flowspec.datasets`)
_FORMAT_OPTIONS: dict[str, set[str]] = {k: {"limit", *f.options} for k, f in FORMATS.items()}


def _load_path(path: Path, split: str, options: dict[str, Any]) -> ImageSet:
    fmt = options.pop("format", None) or _detect(path)
    if fmt not in _FORMAT_OPTIONS:
        raise DataError(f"unknown format {fmt!r}; known formats: {', '.join(_FORMAT_OPTIONS)}")
    _check_options(f"format {fmt!r}", options, _FORMAT_OPTIONS[fmt])
    if "size" in options:
        options["size"] = _size(options["size"])
    if options.get("channels") not in (None, 1, 3):
        raise DataError(f"channels must be 1 or 3; got {options['channels']!r}")
    loader = {
        "idx": _load_idx,
        "cifar": _load_cifar,
        "folder": _load_folder,
        "cityscapes": _load_cityscapes,
        "pairs": _load_pairs,
    }[fmt]
    return loader(path, split, **options)


def _size(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise DataError(f"size must be an int or (H, W); got {value!r}")


def _detect(path: Path) -> str:
    """Guess a path's format from names first (cheap, unambiguous), then from contents."""
    if path.is_file():
        if re.search(r"idx\d-ubyte", path.name):
            return "idx"
        if _CIFAR_BATCH.match(path.name):
            return "cifar"
        head = _read_bytes(path)[:4]
        if len(head) == 4 and head[:2] == b"\0\0" and head[2] in _IDX_DTYPES:
            return "idx"
        if head[:1] == b"\x80":
            return "cifar"
        raise DataError(
            f"cannot tell the format of the file {path}: expected an IDX file "
            "(train-images-idx3-ubyte[.gz]) or a CIFAR batch (data_batch_1, test_batch); a "
            "single image is not a data set, pass its folder instead (or give format=...)"
        )
    if (path / "leftImg8bit").is_dir() and (path / "gtFine").is_dir():
        return "cityscapes"
    if _pair_dirs(path, None, None) is not None:
        return "pairs"
    files = _scan(path)
    if any(_IDX_IMAGES.match(p.name) for p in files):
        return "idx"
    if any(_CIFAR_BATCH.match(p.name) for p in files):
        return "cifar"
    if any(_is_image(p) for p in files):
        return "folder"
    expected = (
        "expected PNG/JPEG images, IDX files (train-images-idx3-ubyte[.gz]), CIFAR batches "
        "(data_batch_1..5, test_batch), or Cityscapes' leftImg8bit/ and gtFine/"
    )
    if not files:
        raise DataError(f"{path} is an empty folder; {expected}")
    examples = ", ".join(str(p.relative_to(path)) for p in files[:3])
    raise DataError(
        f"no data found in {path}: {expected}; found {len(files)} other files "
        f"({examples}{', ...' if len(files) > 3 else ''})"
    )
