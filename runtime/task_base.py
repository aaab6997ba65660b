"""What every task does (:class:`Task`; the three tasks are :mod:`runtime.tasks`).

A task is built from a checked spec and a recipe. The base class loads the data and shapes
it to the spec (:meth:`Task.load`, with a :class:`RunError` that says what to change when
the data does not fit), turns a batch into model inputs and conditions, sums validation
bits/dim over fixed chunks with fixed noise (and the importance-weighted bound), and draws
the rows of a conditional sample grid; a task says which conditions it feeds, how it checks
the spec, and what it measures and draws beyond bits/dim.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowspec.ir import ConditionIR, FlowSpec

from . import images as im
from . import srprotocol as sr
from .data import DataError, load_dataset, prepare
from .dequantize import of as dequantizer_of
from .errors import RunError
from .metrics import bits_per_dim
from .objective import Objective
from .recipe import PATH_FORMATS, Recipe, check_data
from .streams import generator, stream_seed

#: Validation runs in fixed chunks, each with its own noise seed, so that the dequantisation
#: noise of an image never depends on a batch size and evaluate() reproduces training.
VAL_CHUNK = 64
SAMPLE_TEMPERATURES = (0.5, 0.7, 1.0)
GRID_EXAMPLES = 8  # rows of a conditional grid
GRID_SAMPLES = 4  # samples per row of a conditional grid


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A batch tensor made on the host, on ``device`` without the host waiting for the copy
    (pinned, then copied asynchronously, on CUDA; a training step issues no synchronisation)."""
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


@dataclass
class Split:
    """Prepared images (uint8, the spec's input shape) and, for translation, label maps."""

    images: Tensor
    #: translation: uint8 (N, H, W) label maps; class-conditional generation: int64 (N,) ids
    maps: Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass
class TaskData:
    train: Split | None  # None when only evaluating
    val: Split  # the fixed validation subset: the first `val_images` of the val split
    description: str
    num_classes: int | None = None
    class_names: tuple[str, ...] | None = None  # of class folders: grid rows, --class NAME


class Task(ABC):
    """Base class; a task is built from a checked spec and a recipe."""

    name = ""
    #: Applied to every batch of samples drawn for a grid (``runtime.finite.watch_samples``
    #: sets it while ``sample`` runs); by default non-finite samples are drawn mid-grey.
    check_samples: Callable[[Tensor], Tensor] | None = None

    def __init__(self, spec: FlowSpec, recipe: Recipe):
        self.spec = spec
        self.recipe = recipe
        self.bits = recipe.bits
        self.dims = math.prod(spec.input)
        self.check_spec()

    # ---- spec and data checks
    @abstractmethod
    def check_spec(self) -> None:
        """Refuse a spec this task cannot train (a RunError that says what to add)."""

    def _one_condition(self, kind: str, needed_for: str) -> ConditionIR:
        conds = [c for c in self.spec.conditions if c.type == kind]
        declared = (
            ", ".join(f"{c.name}: {c.type} {fmt_shape(c.shape)}" for c in self.spec.conditions)
            or "none"
        )
        example = (
            "condition lr: image CxHxW encoder=rrdb(blocks=8, features=64)"
            if kind == "image"
            else "condition seg: labels NxHxW encoder=convnet()"
        )
        if not conds:
            alt = (
                "generation"
                if all(c.type == "class" for c in self.spec.conditions)
                else "translation"
                if kind == "image"
                else "super_resolution"
            )
            raise RunError(
                f"task `{self.name}` needs {needed_for}, but flow "
                f"`{self.spec.name}` declares no {kind} condition (conditions: "
                f"{declared}); add `{example}` to the flow, or use task {alt}"
            )
        if len(self.spec.conditions) > 1:
            raise RunError(
                f"task `{self.name}` feeds one condition, but flow "
                f"`{self.spec.name}` declares {len(self.spec.conditions)} "
                f"({declared})"
            )
        return conds[0]

    def load(self, train: bool = True, whole_val: bool = False) -> TaskData:
        """Read and shape the train split (unless ``train=False``) and the fixed validation
        subset (``whole_val``: the whole validation split)."""
        r = self.recipe
        if r.data.startswith("python:"):
            raise RunError(
                f"the run trained on Python data ({r.data}), which no name reads "
                "again: pass data=... (a Dataset or a tensor, or --data NAME)"
            )
        check_data(r.data, r.data_options)
        opts = dict(r.data_options)
        pad = int(opts.pop("pad", 0))
        resize = bool(opts.pop("resize", False))
        channels = opts.pop("channels", None)
        root = opts.pop("root", None)
        limit = opts.pop("limit", None)
        source, load_opts = r.data, dict(opts)
        if r.data in PATH_FORMATS:
            if root is None:
                raise RunError(
                    f"data `{r.data}` reads a local copy: give its folder with "
                    f'root=PATH (e.g. --data "{r.data} root=/data/{r.data}")'
                )
            source = str(root)
            if PATH_FORMATS[r.data]:
                load_opts["format"] = PATH_FORMATS[r.data]
        elif root is not None:
            raise RunError(
                f"root= is for the on-disk formats ({', '.join(PATH_FORMATS)}); "
                f"`{r.data}` is a built-in set or a path itself"
            )
        if resize and source not in _builtins():
            _, h, w = self.spec.input
            load_opts.setdefault("size", (h - 2 * pad, w - 2 * pad))
        splits: dict[str, Split | None] = {"train": None}
        for split in ("train", "val") if train else ("val",):
            n = (
                limit
                if split == "train" or whole_val
                else min(r.val_images, limit or r.val_images)
            )
            try:
                s = load_dataset(source, split, **load_opts, **({"limit": n} if n else {}))
            except DataError as e:
                raise RunError(f"data `{r.data}` ({split} split): {e}") from e
            splits[split] = self._shape_split(s, split, pad, resize, channels is not None)
        return TaskData(
            splits["train"], splits["val"], s.description, s.num_classes, s.class_names
        )

    def _shape_split(self, s: Any, split: str, pad: int, resize: bool, convert: bool) -> Split:
        where = f"data `{self.recipe.data}` ({split} split) for flow `{self.spec.name}`"
        maps = self._maps(s, split, pad, resize, where)  # data of the wrong kind goes first
        try:
            images = prepare(
                s.images, self.spec.input, pad=pad, resize=resize, convert_channels=convert
            )
        except DataError as e:
            raise RunError(
                f"{where}: {e} (data options go on the spec's `data` line or in "
                '--data "NAME pad=2"; another data set than the spec\'s takes '
                "none of the spec's options)"
            ) from e
        return Split(images, maps)

    def _maps(self, s: Any, split: str, pad: int, resize: bool, where: str) -> Tensor | None:
        return None

    # ---- batches
    def inputs(
        self, images: Tensor, maps: Tensor | None, noise: Tensor, device: torch.device
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        """Model inputs of a batch: ``x`` dequantised by the uniform ``noise`` itself, and
        the condition dict (:class:`runtime.objective.Objective` dequantises with a learnt
        ``q`` instead)."""
        x = to_device(im.dequantize(images, self.bits, noise), device)
        return x, self.conditions(images, maps, noise, device)

    def levels(self, images: Tensor, noise: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
        """The integer levels of the images and the uniform noise, on ``device``: what a
        learnt ``q(u | x)`` dequantises."""
        return to_device(im.levels(images, self.bits), device), to_device(noise, device)

    def conditions(
        self, images: Tensor, maps: Tensor | None, noise: Tensor, device: torch.device
    ) -> dict[str, Tensor] | None:
        """The flow's conditions of a batch (``noise``: the images' dequantisation noise)."""
        return self.condition(images, maps, device)

    def condition(
        self, images: Tensor, maps: Tensor | None, device: torch.device
    ) -> dict[str, Tensor] | None:
        return None

    def loss(self, bpd: Tensor, cond_logp: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sample training loss (its mean is minimised) from the per-sample bits/dim and
        the log-densities of the conditions modelled by a flow, with what else the task
        reports of it: bits/dim unless a task says."""
        return bpd, {}

    # ---- validation
    @torch.no_grad()
    def val_sums(
        self, model: Any, split: Split, device: torch.device, *, uniform: bool = False
    ) -> dict[str, float]:
        """Sums over the fixed validation subset of the objective's per-sample ``bpd`` (and
        what the task adds), with fixed dequantisation noise; ``uniform``: with the uniform
        noise itself even when the run learns ``q``."""
        objective, sums = Objective(model, self, uniform=uniform), {}
        seed = self.recipe.seed
        for k, start in enumerate(range(0, len(split), VAL_CHUNK)):
            imgs = split.images[start : start + VAL_CHUNK]
            maps = None if split.maps is None else split.maps[start : start + VAL_CHUNK]
            noise = torch.rand(imgs.shape, generator=generator(stream_seed(seed, "val", k)))
            _, extras = objective(objective.batch(imgs, maps, noise, device))
            for key, value in extras.items():
                if key != "finite":
                    sums[key] = sums.get(key, 0.0) + float(value.double().sum())
        return sums

    def val_bpd(
        self, model: Any, split: Split, device: torch.device, *, uniform: bool = False
    ) -> float:
        """Mean bits/dim of the fixed validation subset, with fixed dequantisation noise."""
        return self.val_sums(model, split, device, uniform=uniform)["bpd"] / len(split)

    @torch.no_grad()
    def val_bpd_iw(
        self, model: Any, split: Split, device: torch.device, samples: int
    ) -> tuple[float, float]:
        r"""The importance-weighted bound over ``samples`` dequantisation draws per image,
        and the mean of their single-draw bounds, both in bits/dim (means over images).

        .. math:: -\log P(x) \le -\log \frac1K \sum_k \frac{p(x + u_k)}{q(u_k \mid x)}
                  \le \frac1K \sum_k -\log \frac{p(x + u_k)}{q(u_k \mid x)}

        (Jensen; Burda et al. 2016, as Flow++ reports test likelihoods), with ``q`` the
        run's learned dequantiser or the uniform one. Draw 0 is :meth:`val_bpd`'s noise, so
        ``samples=1`` gives back ``bpd``; draw ``j`` has its own stream ``val/iw{j}``.
        """
        if samples < 1:
            raise RunError(f"iw_samples must be at least 1, got {samples}")
        objective, sums, seed = Objective(model, self), [0.0, 0.0], self.recipe.seed
        nats = self.dims * math.log(2.0)  # bits/dim -> nats of the whole image
        for k, start in enumerate(range(0, len(split), VAL_CHUNK)):
            imgs = split.images[start : start + VAL_CHUNK]
            maps = None if split.maps is None else split.maps[start : start + VAL_CHUNK]
            logw = []
            for j in range(samples):
                tag = "val" if j == 0 else f"val/iw{j}"
                noise = torch.rand(imgs.shape, generator=generator(stream_seed(seed, tag, k)))
                _, extras = objective(objective.batch(imgs, maps, noise, device))
                # the objective's bpd is b - (log p - log q) / (D log 2): log p - log q back
                logw.append((self.bits - extras["bpd"].double()) * nats)
            lw = torch.stack(logw)  # (K, B)
            iw = torch.logsumexp(lw, 0) - math.log(samples)
            sums[0] += float(bits_per_dim(iw, self.dims, self.bits).sum())
            sums[1] += float(bits_per_dim(lw, self.dims, self.bits).mean(0).sum())
        return sums[0] / len(split), sums[1] / len(split)

    def validate(
        self,
        model: Any,
        data: TaskData,
        device: torch.device,
        *,
        full: bool = False,
        final: bool = False,
        temperatures: tuple[float, ...] | None = None,
        lpips: Any = None,
        protocol: sr.Protocol | None = None,
    ) -> dict[str, Any]:
        """Held-out metrics: ``full`` for ``eval`` (every validation image), ``final`` for
        training's last validation (the paper's protocol where a task has one)."""
        return {"bpd": self.val_bpd(model, data.val, device)}

    def dequantization_metrics(
        self, model: Any, data: TaskData, device: torch.device
    ) -> dict[str, Any]:
        """Under variational dequantisation (``bpd`` is then the bound): bits/dim of the
        same images under uniform noise, for comparison; nothing otherwise."""
        if dequantizer_of(model) is None:
            return {}
        return {"bpd_uniform": self.val_bpd(model, data.val, device, uniform=True)}

    # ---- pictures
    def _checked(self, x: Tensor) -> Tensor:
        if self.check_samples is not None:
            return self.check_samples(x)
        finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        return torch.where(finite.view(-1, 1, 1, 1), x, torch.zeros_like(x))

    @abstractmethod
    def grids(
        self,
        model: Any,
        data: TaskData,
        device: torch.device,
        temperatures: tuple[float, ...] = SAMPLE_TEMPERATURES,
        rows: int = GRID_EXAMPLES,
        per_row: int | None = None,
    ) -> dict[float, Tensor]:
        """One uint8 grid image ``(C, H, W)`` per temperature: ``rows`` rows of ``per_row``
        samples (conditional tasks add the condition before and the truth after them)."""

    def _conditional_grid(
        self,
        model: Any,
        device: torch.device,
        temperature: float,
        first: Tensor,
        last: Tensor,
        images: Tensor,
        maps: Tensor | None,
        k: int,
    ) -> Tensor:
        """Rows of: the condition shown as an image, ``k`` samples, the ground truth."""
        n = images.shape[0]
        cond = self.condition(
            images.repeat_interleave(k, 0),
            None if maps is None else maps.repeat_interleave(k, 0),
            device,
        )
        g = generator(stream_seed(self.recipe.seed, "grid", temperature), device)
        x = self._checked(model.sample(n * k, temperature, cond, generator=g))
        samples = im.to_uint8(x, self.bits).view(n, k, *x.shape[1:])
        rgb = first.shape[1] == 3 or last.shape[1] == 3 or samples.shape[2] == 3
        conv = im.to_rgb if rgb else (lambda t: t)
        rows = [
            torch.cat([conv(first[i : i + 1]), conv(samples[i]), conv(last[i : i + 1])])
            for i in range(n)
        ]
        return im.make_grid(torch.cat(rows), ncol=k + 2)


def _builtins() -> set[str]:
    from .data import BUILTIN

    return set(BUILTIN)


def fmt_shape(shape: Any) -> str:
    return "x".join(str(d) for d in shape)
