"""Reading photos (fitting them to a size), label/photo folder pairs and Cityscapes trees.

Folders of plain images (CelebA, class folders) are read by :mod:`.imagefolder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import base
from .base import (
    DataError,
    ImageSet,
    _choose,
    _finish,
    _is_image,
    _num_classes,
    _rule_split,
    _scan,
)

CITYSCAPES_NUM_CLASSES = 34  # labelIds 0..33 (cityscapesScripts labels.py)
_VAL_DIRS = ("val", "valid", "validation")
_IMAGE_DIRS = ("images", "image", "photos", "photo", "img", "imgs")
_LABEL_DIRS = ("labels", "label", "masks", "mask", "annotations", "gt")
_CS_PHOTO, _CS_LABEL = "_leftImg8bit.png", "_gtFine_labelIds.png"


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
            f"images differ in size: {found}; pass size=N (e.g. size=64) to resize and "
            "centre-crop them to NxN while reading, or resize=true on a spec's data line"
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
    limit = base.MAX_BYTES  # read now, so that it can be changed
    need = item_bytes * n
    if need > limit:
        raise DataError(
            f"reading {n} items from {where} at their stored size needs about "
            f"{need / 2**30:.0f} GiB (limit {limit / 2**30:.0f} GiB); pass size=N (e.g. "
            "size=64) to shrink them while reading, or limit=N"
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
