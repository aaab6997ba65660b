"""Class-conditional generation: the labels a flow with ``condition y: class N`` needs.

The generation task reads one class id per image from labelled data sets (mnist5k,
fashion-mnist, digits, IDX and CIFAR folders, one folder per class), scores held-out images
by their class-conditional bits/dim ``-log2 p(x | y) / D``, and draws sample grids with one
row per class. These helpers keep that out of :mod:`runtime.tasks`: checking the data's
labels against the declared class count, parsing ``--class`` (ids, or the names of the
class folders a run stores), the labels of a grid and the names on its rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from flowspec.ir import ConditionIR

from . import images as im
from .errors import RunError

#: A grid shows one row per class, up to this many classes (the first ones).
MAX_CLASS_ROWS = 32
LABELLED = (
    "mnist5k, fashion-mnist, digits, `idx root=...`, `cifar10 root=...`, or a folder "
    "with one subfolder of images per class"
)


def data_labels(s: Any, cond: ConditionIR, where: str) -> Tensor:
    """The int64 ``(N,)`` class ids of an ImageSet, checked against ``class N`` of ``cond``."""
    n = cond.shape[0]
    declared = f"condition `{cond.name}`: class {n}"
    if s.labels is None:
        raise RunError(
            f"{where}: `{s.name}` has no class labels, but the flow is "
            f"class-conditional ({declared}); train it on labelled data: {LABELLED}"
        )
    labels = s.labels.long()
    names = getattr(s, "class_names", None)
    if names is not None and len(names) != n:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise RunError(
            f"{where}: the folder has {len(names)} class folders ({shown}) but "
            f"{declared} declares {n}; declare `class {len(names)}`, or add or "
            "remove class folders"
        )
    top = int(labels.max()) + 1 if labels.numel() else 0
    classes = max(top, int(s.num_classes or 0))
    if classes > n or (labels.numel() and int(labels.min()) < 0):
        raise RunError(
            f"{where}: the data has {classes} classes (ids 0..{classes - 1}) but "
            f"{declared} declares {n}; declare `class {classes}`"
        )
    return labels


def parse_classes(
    value: str | int | Iterable[int] | None,
    cond: ConditionIR | None,
    flow: str,
    names: Sequence[str] | None = None,
) -> list[int] | None:
    """``--class 3``, ``--class 1,7`` or, when the run stored class names (class folders),
    ``--class cat,dog`` (or ints) as a list of class ids, checked."""
    if value is None:
        return None
    if cond is None:
        raise RunError(
            f"flow `{flow}` has no class condition; --class is for flows that "
            "declare `condition NAME: class N`"
        )
    if isinstance(value, str):
        ids = [_class_id(v.strip(), names) for v in value.split(",") if v.strip()]
    else:
        ids = [int(value)] if isinstance(value, int) else [int(v) for v in value]
    n = cond.shape[0]
    bad = [v for v in ids if not 0 <= v < n]
    if not ids or bad:
        raise RunError(
            f"--class: condition `{cond.name}` has classes 0..{n - 1}; got "
            f"{bad[0] if bad else 'none'}"
        )
    return ids


def _class_id(word: str, names: Sequence[str] | None) -> int:
    if names is not None and word in names:
        return list(names).index(word)
    try:
        return int(word)
    except ValueError:
        pass
    if names is None:
        raise RunError(
            f"--class takes class ids like 3 or 1,7; got {word!r} (this run stored "
            "no class names: only class folders have them)"
        )
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    raise RunError(
        f"--class: no class named {word!r}; the classes are {shown} (or their ids "
        f"0..{len(names) - 1})"
    )


def grid_labels(cond: ConditionIR, per_row: int, classes: list[int] | None = None) -> Tensor:
    """Labels of a grid with one row of ``per_row`` samples per class (``classes``, or the
    first :data:`MAX_CLASS_ROWS` classes of ``cond``), in class order."""
    rows = classes if classes is not None else list(range(min(cond.shape[0], MAX_CLASS_ROWS)))
    return torch.tensor(rows, dtype=torch.long).repeat_interleave(per_row)


def sample_labels(
    cond: ConditionIR | None,
    n: int,
    classes: str | int | Iterable[int] | None,
    flow: str,
    names: Sequence[str] | None = None,
) -> tuple[Tensor | None, int | None]:
    """The labels of ``flowspec sample`` and the grid's columns (None: the default): ``n``
    samples of one class (``--class 3``), or one row per class (every class, or those of
    ``--class 1,7``) of ``n // rows`` samples each; ``(None, None)`` when unconditional."""
    ids = parse_classes(classes, cond, flow, names)
    if cond is None:
        return None, None
    if ids is not None and len(ids) == 1:
        return torch.full((n,), ids[0], dtype=torch.long), None
    per_row = max(1, n // (len(ids) if ids else min(cond.shape[0], MAX_CLASS_ROWS)))
    return grid_labels(cond, per_row, ids), per_row


def name_rows(grid: Tensor, names: Sequence[str], rows: list[int], tile_h: int) -> Tensor:
    """A grid with one row per class in ``rows`` (class ids), labelled with their names."""
    return im.label_rows(grid, [names[int(r)] for r in rows], tile_h)
