"""Folders of images: CelebA partitions, train/ and val/ subfolders, class folders.

The rules (which split, which labels, grey or colour) are declared, as text for the docs, in
:data:`flowspec.datasets.FOLDER_RULES`; this module implements them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, ImageSet, _choose, _finish, _is_image, _rule_split, _scan
from .folders import _VAL_DIRS, _guard, _photo, _stack


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


def _grey(im: Any) -> bool:
    return im.mode in ("1", "L", "LA", "I", "F") or im.mode.startswith("I;16")


def _folder_channels(files: list[Path]) -> int:
    """1 when every image of the folder is grey, else 3: decided over the whole folder, so
    that every split (and a validation split that happens to be all grey) has the same
    channels. Only headers are read, and the scan stops at the first colour image."""
    from PIL import Image, UnidentifiedImageError

    for p in files:
        try:
            with Image.open(p) as im:
                if not _grey(im):
                    return 3
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise DataError(f"cannot read the image {p}: {e}; remove or replace it") from e
    return 1


def _class_names(base: Path, files: list[Path]) -> tuple[str, ...] | None:
    """The class folders of ``base`` (torchvision ImageFolder's convention), or ``None``.

    ``base`` has class folders when it has at least two non-hidden subfolders, every one
    of them holds images (at any depth) and no image lies in ``base`` itself. One subfolder
    is not a class (CelebA's ``img_align_celeba/`` inside its download folder).
    """
    subs = sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(subs) < 2:
        return None
    tops = set()
    for p in files:
        parts = p.relative_to(base).parts
        if len(parts) == 1:
            return None  # a loose image beside the subfolders
        tops.add(parts[0])
    return tuple(subs) if tops == set(subs) else None


def _split_classes(path: Path, under: dict[str, list[Path]]) -> tuple[str, ...] | None:
    """The class folders of ``train/``, which ``val/`` must repeat exactly (a ``test/`` of
    class folders must use the same names; a flat one stays unlabelled)."""
    names = _class_names(path / "train", under["train"])
    if names is None:
        return None
    for d, files in under.items():
        if d == "train" or not files:
            continue
        other = _class_names(path / d, files)
        if other == names or (d == "test" and (other is None or set(other) <= set(names))):
            continue
        if other is None:
            raise DataError(
                f"{path / 'train'} has class folders ({', '.join(names)}) but {path / d} does "
                f"not (images beside its subfolders, or fewer than two); give {d}/ the same "
                "class folders"
            )
        missing, extra = sorted(set(names) - set(other)), sorted(set(other) - set(names))
        diff = "; ".join(
            bit
            for bit in (
                f"missing in {d}/: {', '.join(missing)}" if missing else "",
                f"only in {d}/: {', '.join(extra)}" if extra else "",
            )
            if bit
        )
        raise DataError(
            f"train/ and {d}/ of {path} must hold the same class folders ({diff}); add or "
            "rename the folders"
        )
    return names


def _load_folder(
    path: Path,
    split: str,
    limit: int | None = None,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
) -> ImageSet:
    """Every PNG/JPEG under ``path`` (CelebA, FFHQ, class folders, ...), split and labelled
    as :data:`flowspec.datasets.FOLDER_RULES` says."""
    files = [p for p in _scan(path) if _is_image(p)]
    if not files:
        raise DataError(f"no PNG/JPEG images under {path}; expected a folder of images")
    tops = {p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1}
    partition = _partition_file(path)
    names: tuple[str, ...] | None = None
    label: dict[Path, int] = {}
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
        names = _split_classes(path, under)
        if names is not None:
            label = {
                p: names.index(p.relative_to(path).parts[1])
                for p in files
                if len(p.relative_to(path).parts) > 2 and p.relative_to(path).parts[1] in names
            }
        parts = {"train": under["train"], "val": under[val_dir], "all": files}
        if under["test"]:
            parts["test"] = under["test"]
    else:
        rule = "every-tenth rule over sorted paths"
        names = _class_names(path, files)
        if names is not None:
            label = {p: names.index(p.relative_to(path).parts[0]) for p in files}
            rule = "every-tenth rule within each class folder"
        parts = _rule_split(files, np.array([label[p] for p in files]) if label else None)
    chosen = _choose(parts, split, path, rule)[:limit]
    channels = channels or _folder_channels(files)
    arrays = [_photo(chosen[0], size, channels)]
    _guard(2 * arrays[0].nbytes, len(chosen), path)  # the list, then the stacked copy
    arrays += [_photo(p, size, channels) for p in chosen[1:]]
    images = _stack(arrays, chosen, channels)
    labelled = names is not None and all(p in label for p in chosen)
    what = f"{len(names)} class folders, " if labelled and names else ""
    return _finish(
        images,
        np.array([label[p] for p in chosen]) if labelled else None,
        None,
        len(names) if labelled and names else None,
        path,
        f"{len(chosen)} images from the folder {path} ({split}; {what}{rule})",
        names if labelled else None,
    )
