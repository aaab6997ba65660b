"""Your own data in Python: a map-style torch ``Dataset`` (or a tensor) as a run's data.

``runtime.train(spec, data=dataset, val_data=None, ...)`` (and ``flowspec.train``) reads
every item once, checks it, and trains on it as on a built-in set. An item is

* an image tensor ``(C, H, W)`` (``(H, W)`` for one channel) of exactly the flow's input
  shape: ``uint8``, or float in [0, 1] on the 8-bit grid ``k/255`` (what
  ``torchvision.transforms.ToTensor`` makes of an 8-bit image); the recipe's ``bits`` then
  reduce it as they do every image;
* a 1-tuple ``(image,)``, as ``TensorDataset(images)`` yields;
* ``(image, label)``: the class id, for ``condition y: class N`` (ignored by a flow without
  a class condition);
* ``(image, {name: label_map})``: an ``(H, W)`` or ``(1, H, W)`` map of class ids for a
  ``labels`` condition (translation).

A Dataset replaces the spec's ``data`` line: its options (``pad``, ``resize``, ...) do not
apply. Without ``val_data`` every tenth item is held out (per class for labelled items), as
for folders; the fixed validation subset is then its first ``val_images``. A tensor
``(N, C, H, W)`` is a data set of its rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .data.base import _every_tenth
from .errors import RunError
from .task_base import Split, Task, TaskData

#: ``recipe.data`` of a run on a Python data set (it cannot be read again from a name)
PREFIX = "python:"
GRID_TOL = 1e-3  # how far a float pixel may sit from k/255


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a tensor or a map-style data set (``__len__`` and ``__getitem__``),
    not a data set's name or path."""
    return isinstance(obj, Tensor) or (
        not isinstance(obj, (str, bytes))
        and hasattr(obj, "__len__")
        and hasattr(obj, "__getitem__")
    )


def describe(obj: Any) -> str:
    """The recipe's ``data`` of a run on ``obj``: ``python:TensorDataset(N=1000)``."""
    return f"{PREFIX}{type(obj).__name__}(N={len(obj)})"


def task_data(task: Task, data: Any, val_data: Any = None) -> TaskData:
    """The train split and the fixed validation subset of ``task`` from Python data."""
    name = task.spec.name
    images, labels, maps = _read(task, data, "data")
    if val_data is None:
        strata = None if labels is None else labels.numpy()
        train_i, val_i = (torch.as_tensor(i) for i in _every_tenth(len(images), strata))
        if not len(val_i) or not len(train_i):
            raise RunError(
                f"data has {len(images)} items; holding out every tenth for "
                "validation needs at least 10 (or pass val_data=...)"
            )
        train = _split(images, labels, maps, train_i)
        val = _split(images, labels, maps, val_i)
    else:
        train = _split(images, labels, maps, None)
        val = held_out(task, val_data, "val_data").val
    if not len(train):
        raise RunError(f"data for flow `{name}` is empty; give at least one item")
    n = task.recipe.val_images
    val = Split(val.images[:n], None if val.maps is None else val.maps[:n])
    return TaskData(
        train,
        val,
        f"{describe(data)}, {len(train)} train / {len(val)} val items",
        _classes(task, labels),
    )


def held_out(task: Task, data: Any, what: str = "data") -> TaskData:
    """All of ``data`` as the validation subset (``evaluate`` on Python data)."""
    images, labels, maps = _read(task, data, what)
    if not len(images):
        raise RunError(f"{what} is empty; give at least one item")
    return TaskData(
        None, _split(images, labels, maps, None), describe(data), _classes(task, labels)
    )


def _classes(task: Task, labels: Tensor | None) -> int | None:
    return None if labels is None else int(task.spec.conditions[0].shape[0])


def _split(
    images: Tensor, labels: Tensor | None, maps: Tensor | None, index: Tensor | None
) -> Split:
    extra = labels if labels is not None else maps
    if index is None:
        return Split(images, extra)
    return Split(images[index], None if extra is None else extra[index])


def _read(task: Task, data: Any, what: str) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Every item of ``data`` checked: uint8 images ``(N, C, H, W)``, then int64 class ids
    ``(N,)`` or uint8 label maps ``(N, H, W)`` when the flow's condition needs them."""
    if not is_dataset(data):
        raise RunError(
            f"{what} must be a torch Dataset (map-style: len() and [i]) or a "
            f"tensor, got {type(data).__name__}"
        )
    cond = task.spec.conditions[0] if task.spec.conditions else None
    kind = None if cond is None else cond.type
    if kind == "image":
        raise RunError(
            f"flow `{task.spec.name}` is a super-resolution flow: its low-res "
            f"input `{cond.name}` is made from each image by the task's bicubic "
            "downscale, so give images alone as data items"
        )
    images, extras = [], []
    for i in range(len(data)):
        image, extra = _unpack(data[i], i, what, kind)
        images.append(_image(image, i, what, tuple(task.spec.input)))
        if kind == "class":
            extras.append(_label(extra, i, what, cond))
        elif kind == "labels":
            extras.append(_label_map(extra, i, what, cond))
    if not images:
        return torch.zeros((0, *task.spec.input), dtype=torch.uint8), None, None
    stacked = torch.stack(images)
    if kind == "class":
        return stacked, torch.tensor(extras, dtype=torch.int64), None
    if kind == "labels":
        return stacked, None, torch.stack(extras)
    return stacked, None, None


def _unpack(item: Any, i: int, what: str, kind: str | None) -> tuple[Any, Any]:
    if isinstance(item, Tensor):
        image, extra = item, None
    elif isinstance(item, (tuple, list)) and len(item) in (1, 2):
        image, extra = item[0], (item[1] if len(item) == 2 else None)
    else:
        got = f"a {len(item)}-tuple" if isinstance(item, (tuple, list)) else type(item).__name__
        raise RunError(
            f"{what} item {i}: expected an image tensor, (image,), (image, label) "
            f"or (image, {{name: label_map}}), got {got}"
        )
    if kind == "class" and extra is None:
        raise RunError(
            f"{what} item {i}: the flow is class-conditional, so items are "
            "(image, label) pairs; this one has no label"
        )
    if kind == "labels" and not isinstance(extra, dict):
        raise RunError(
            f"{what} item {i}: the flow's condition is a label map, so items are "
            f"(image, {{name: label_map}}); got {type(extra).__name__} beside the "
            "image"
        )
    return image, extra


def _shape(t: Any) -> str:
    return "x".join(str(d) for d in t.shape)


def _image(x: Any, i: int, what: str, shape: tuple[int, ...]) -> Tensor:
    want = "x".join(map(str, shape))
    if not isinstance(x, Tensor):
        raise RunError(
            f"{what} item {i}: the image is a {type(x).__name__}, expected a "
            f"tensor of shape {want}"
        )
    if x.dim() == 2 and shape[0] == 1:
        x = x.unsqueeze(0)
    if tuple(x.shape) != shape:
        raise RunError(
            f"{what} item {i}: image of shape {_shape(x)}, expected {want} (the "
            "flow's input; a Dataset is used as it is, no pad or resize)"
        )
    if x.dtype == torch.uint8:
        return x.cpu()
    if not x.is_floating_point():
        raise RunError(
            f"{what} item {i}: image of dtype {str(x.dtype).replace('torch.', '')}"
            ", expected uint8 or float in [0, 1]"
        )
    v = x.detach().double().cpu() * 255.0
    k = v.round()
    if v.numel() and (
        float(v.min()) < -GRID_TOL
        or float(v.max()) > 255 + GRID_TOL
        or float((v - k).abs().max()) > GRID_TOL
    ):
        raise RunError(
            f"{what} item {i}: float image not in [0, 1] on the 8-bit grid k/255 "
            f"(values {float(x.min()):.4g} .. {float(x.max()):.4g}); give uint8, "
            "or floats as ToTensor() makes them from 8-bit images"
        )
    return k.clamp(0, 255).to(torch.uint8)


def _label(y: Any, i: int, what: str, cond: Any) -> int:
    n = int(cond.shape[0])
    if isinstance(y, Tensor) and y.numel() == 1 and not y.is_floating_point():
        y = int(y)
    if not isinstance(y, (int, np.integer)) or isinstance(y, bool) or not 0 <= y < n:
        raise RunError(
            f"{what} item {i}: label {y!r}, expected a class id in 0..{n - 1} "
            f"(condition `{cond.name}`: class {n})"
        )
    return int(y)


def _label_map(extra: dict[str, Any], i: int, what: str, cond: Any) -> Tensor:
    n, h, w = (int(d) for d in cond.shape)
    m = extra.get(cond.name)
    if not isinstance(m, Tensor) or m.is_floating_point():
        raise RunError(
            f"{what} item {i}: expected {{'{cond.name}': an integer tensor {h}x{w}}}"
            f" beside the image, got keys {sorted(extra)}"
            if m is None
            else f"{what} item {i}: label map `{cond.name}` must be an integer tensor {h}x{w}"
        )
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != (h, w):
        raise RunError(
            f"{what} item {i}: label map `{cond.name}` of shape {_shape(m)}, expected {h}x{w}"
        )
    if m.numel() and (int(m.min()) < 0 or int(m.max()) >= n):
        raise RunError(
            f"{what} item {i}: label map `{cond.name}` holds ids "
            f"{int(m.min())}..{int(m.max())}, expected 0..{n - 1}"
        )
    return m.cpu().to(torch.uint8)
