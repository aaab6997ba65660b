"""The three tasks: what the data is, what the model is conditioned on, what is measured.

* ``generation``: unconditional bits/dim; sample grids at temperatures.
* ``super_resolution``: the condition is the bicubic downscale of the high-res image;
  conditional bits/dim, PSNR, SSIM and LR-PSNR of samples over temperatures.
* ``translation``: the condition is a per-pixel label map (one-hot inside the model, or
  the input of its own flow, Full-Glow); conditional bits/dim (and the label-map flow's);
  grids of label map, samples and ground truth.

Every task checks, before any training, that the spec can do it and that the data fits
the spec, and says what to change when not (:class:`RunError`).
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flowspec import condflow
from flowspec.ir import ConditionIR, FlowSpec

from . import classcond as cc
from . import images as im
from . import srprotocol as sr
from .data import DataError, load_dataset, prepare
from .dequantize import of as dequantizer_of
from .errors import RunError
from .metrics import bits_per_dim
from .objective import Objective
from .recipe import PATH_FORMATS, Recipe, check_data

#: Validation runs in fixed chunks, each with its own noise seed, so that the dequantisation
#: noise of an image never depends on a batch size and evaluate() reproduces training.
VAL_CHUNK = 64
SAMPLE_TEMPERATURES = (0.5, 0.7, 1.0)
SR_TEMPERATURES_EVAL = tuple(round(0.1 * k, 1) for k in range(1, 10))  # 0.1 ... 0.9
SR_TEMPERATURES_TRAIN = (0.1, 0.5, 0.9)
GRID_EXAMPLES = 8  # rows of a conditional grid
GRID_SAMPLES = 4  # samples per row of a conditional grid


def stream_seed(seed: int, tag: str, index: float) -> int:
    """A 63-bit seed that is a pure function of (run seed, purpose, index).

    Data order, dequantisation noise and sample noise all come from generators seeded
    this way, so a step's batch depends on nothing but (seed, step): resuming from a
    checkpoint at step k replays exactly the batches an uninterrupted run sees.
    """
    h = hashlib.sha256(f"{seed}/{tag}/{index}".encode()).digest()
    return int.from_bytes(h[:8], "little") & (2**63 - 1)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A batch tensor made on the host, on ``device`` without the host waiting for the copy
    (pinned, then copied asynchronously, on CUDA; a training step issues no synchronisation)."""
    if torch.device(device).type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


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
            ", ".join(f"{c.name}: {c.type} {_fmt(c.shape)}" for c in self.spec.conditions)
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


def _fmt(shape: Any) -> str:
    return "x".join(str(d) for d in shape)


class Generation(Task):
    """Unconditional, or class-conditional when the flow's one condition is ``class N``: then
    the data's labels are the condition (kept in ``Split.maps``), bits/dim is
    ``-log2 p(x | y) / D`` and each grid has one row per class (:mod:`runtime.classcond`)."""

    name = "generation"
    cond: ConditionIR | None = None

    def check_spec(self) -> None:
        if len(self.spec.conditions) == 1 and self.spec.conditions[0].type == "class":
            self.cond = self.spec.conditions[0]
        elif self.spec.conditions:
            conds = ", ".join(f"{c.name}: {c.type}" for c in self.spec.conditions)
            kind = (
                "translation"
                if any(c.type == "labels" for c in self.spec.conditions)
                else "super_resolution"
            )
            raise RunError(
                f"task `generation` samples without a condition or from one "
                f"`class N` condition, but flow `{self.spec.name}` is conditional "
                f"({conds}); use task {kind}"
            )

    def _maps(self, s: Any, split: str, pad: int, resize: bool, where: str) -> Tensor | None:
        return None if self.cond is None else cc.data_labels(s, self.cond, where)

    def condition(
        self, images: Tensor, maps: Tensor | None, device: torch.device
    ) -> dict[str, Tensor] | None:
        return None if self.cond is None else {self.cond.name: to_device(maps.long(), device)}

    def grids(
        self,
        model: Any,
        data: TaskData,
        device: torch.device,
        temperatures: tuple[float, ...] = SAMPLE_TEMPERATURES,
        rows: int = 8,
        per_row: int | None = None,
    ) -> dict[float, Tensor]:
        k = per_row or 8
        out = {}
        for t in temperatures:
            g = generator(stream_seed(self.recipe.seed, "grid", t), device)
            y = None if self.cond is None else cc.grid_labels(self.cond, k)  # a row per class
            cond = None if y is None else {self.cond.name: y.to(device)}
            x = self._checked(
                model.sample(rows * k if y is None else len(y), t, cond, generator=g)
            )
            out[t] = im.make_grid(im.to_uint8(x, self.bits), ncol=k)
            if y is not None and data.class_names:
                out[t] = cc.name_rows(out[t], data.class_names, y[::k].tolist(), x.shape[-2])
        return out


class SuperResolution(Task):
    name = "super_resolution"

    def check_spec(self) -> None:
        c = self._one_condition("image", "the low-resolution image as an image condition")
        _, h, w = self.spec.input
        _, lh, lw = c.shape
        scale = self.recipe.scale
        if scale is None:
            if h % lh or w % lw or h // lh != w // lw:
                raise RunError(
                    f"cannot tell the super-resolution scale: input "
                    f"{_fmt(self.spec.input)}, condition `{c.name}` {_fmt(c.shape)}"
                    "; give `task super_resolution scale=S`"
                )
            scale = h // lh
        if h % scale or w % scale:
            raise RunError(f"scale={scale} does not divide the input {_fmt(self.spec.input)}")
        want = (self.spec.input[0], h // scale, w // scale)
        if tuple(c.shape) != want:
            raise RunError(
                f"task `super_resolution scale={scale}` downscales the "
                f"{_fmt(self.spec.input)} input to {_fmt(want)}, but condition "
                f"`{c.name}` is declared {_fmt(c.shape)} "
                f"({c.span.file}:{c.span.line})"
            )
        self.cond = c
        self.scale = scale

    def condition(
        self, images: Tensor, maps: Tensor | None, device: torch.device
    ) -> dict[str, Tensor]:
        return {
            self.cond.name: to_device(im.to_condition(im.downscale(images, self.scale)), device)
        }

    @torch.no_grad()
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
        """bits/dim, and PSNR, SSIM, LR-PSNR (LPIPS) of samples averaged over temperatures
        (0.1 ... 0.9 in ``eval`` and training's final validation, as the paper's Table 4;
        0.1, 0.5, 0.9 in the others), each temperature under ``per_temperature``, with the
        bicubic baseline on the same images (:mod:`runtime.srprotocol`)."""
        protocol = protocol or sr.Protocol()
        out: dict[str, Any] = {"bpd": self.val_bpd(model, data.val, device)}
        temps = temperatures or (SR_TEMPERATURES_EVAL if full or final else SR_TEMPERATURES_TRAIN)
        n = len(data.val) if full else min(len(data.val), self.recipe.sr_images)
        hr = data.val.images[:n]
        gt = im.quantized(hr, self.bits)
        lr = im.downscale(hr, self.scale)
        per: dict[str, dict[str, float]] = {}
        for t in temps:
            preds = []
            for k, start in enumerate(range(0, n, VAL_CHUNK)):
                part = hr[start : start + VAL_CHUNK]
                g = generator(stream_seed(self.recipe.seed, f"sr/{t}", k), device)
                x = model.sample(part.shape[0], t, self.condition(part, None, device), generator=g)
                preds.append(im.to_uint8(x, self.bits))
            per[f"{t:g}"] = sr.row(torch.cat(preds), gt, lr, self.scale, protocol, lpips)
        out.update(sr.table4(per, lpips is not None))
        out.update(sr.bicubic_baseline(gt, lr, self.scale, protocol, lpips))
        out["temperatures"] = [float(t) for t in temps]
        out["sr_images"] = n
        out["sr_protocol"] = protocol.describe()
        out["per_temperature"] = per
        return out

    def grids(
        self,
        model: Any,
        data: TaskData,
        device: torch.device,
        temperatures: tuple[float, ...] = SAMPLE_TEMPERATURES,
        rows: int = GRID_EXAMPLES,
        per_row: int | None = None,
    ) -> dict[float, Tensor]:
        hr = data.val.images[:rows]
        lr_up = im.upscale_nearest(im.downscale(hr, self.scale), hr.shape[-2:])
        gt = im.quantized(hr, self.bits)
        k = per_row or GRID_SAMPLES
        spans = [("LR", 0, 1), ("samples", 1, k + 1), ("HR", k + 1, k + 2)]
        return {
            t: im.label_columns(
                self._conditional_grid(model, device, t, lr_up, gt, hr, None, k),
                spans,
                hr.shape[-1],
            )
            for t in temperatures
        }


class Translation(Task):
    name = "translation"

    def check_spec(self) -> None:
        c = self._one_condition("labels", "a label map as a labels condition")
        if tuple(c.shape[1:]) != tuple(self.spec.input[1:]):
            raise RunError(
                f"condition `{c.name}` is {_fmt(c.shape[1:])} but the input is "
                f"{_fmt(self.spec.input[1:])}; translation pairs each pixel with "
                "its label, so they must match"
            )
        self.cond = c
        self.num_classes = c.shape[0]

    def _maps(self, s: Any, split: str, pad: int, resize: bool, where: str) -> Tensor:
        if s.label_maps is None:
            raise RunError(
                f"{where}: `{s.name}` has no label maps; translation needs "
                "label-map/image pairs (fashion-seg, `cityscapes root=...`, or a "
                "folder with labels/ and images/)"
            )
        if s.num_classes is not None and s.num_classes > self.num_classes:
            raise RunError(
                f"{where}: the data has {s.num_classes} classes but condition "
                f"`{self.cond.name}` declares {self.num_classes}; set the "
                "condition's class count to at least that"
            )
        chunks = []
        for start in range(0, s.label_maps.shape[0], 8192):
            part = s.label_maps[start : start + 8192]
            try:
                part = prepare(part, self.spec.input, pad=pad, resize=resize)
            except DataError as e:
                raise RunError(f"{where}: {e}") from e
            if int(part.max()) >= self.num_classes or int(part.min()) < 0:
                raise RunError(
                    f"{where}: label ids reach {int(part.max())}, outside the "
                    f"{self.num_classes} classes of condition `{self.cond.name}`"
                )
            chunks.append(part.to(torch.uint8))
        return torch.cat(chunks)

    def condition(
        self, images: Tensor, maps: Tensor | None, device: torch.device
    ) -> dict[str, Tensor]:
        return {self.cond.name: to_device(maps.long(), device)}

    # ---- a label map with its own flow (encoder=flow(...), Full-Glow): joint likelihood
    def conditions(
        self, images: Tensor, maps: Tensor | None, noise: Tensor, device: torch.device
    ) -> dict[str, Tensor] | None:
        """As every task's; a label map modelled by a flow goes to it dequantised, with noise
        that is a pure function of the batch's image noise (so of seed and step)."""
        cond = super().conditions(images, maps, noise, device)
        c = self.cond
        if c.flow is not None:
            g = generator(stream_seed(self.recipe.seed, "labels", float(noise.double().sum())))
            u = torch.rand((maps.shape[0], *c.flow.input), generator=g, dtype=noise.dtype)
            cond[c.name] = to_device(condflow.label_input(c, maps.long(), u), device)
        return cond

    def loss(self, bpd: Tensor, cond_logp: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``-log2 p(x | y) - log2 p(y)`` per image dimension: the joint likelihood, when the
        label map has its own flow (``label_bpd``: the label maps' bits/dim under it); else
        the conditional bits/dim."""
        c = self.cond
        if c.flow is None:
            return bpd, {}
        label = bits_per_dim(
            cond_logp[c.name], math.prod(c.flow.input), condflow.label_bits(c) or self.bits
        )
        return bpd + label * (math.prod(c.flow.input) / self.dims), {"label_bpd": label}

    @torch.no_grad()
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
        if self.cond.flow is None:
            return {"bpd": self.val_bpd(model, data.val, device)}
        sums = self.val_sums(model, data.val, device)
        return {"bpd": sums["bpd"] / len(data.val), "label_bpd": sums["label_bpd"] / len(data.val)}

    def grids(
        self,
        model: Any,
        data: TaskData,
        device: torch.device,
        temperatures: tuple[float, ...] = SAMPLE_TEMPERATURES,
        rows: int = GRID_EXAMPLES,
        per_row: int | None = None,
    ) -> dict[float, Tensor]:
        imgs = data.val.images[:rows]
        maps = data.val.maps[:rows]
        shown = im.colourise(maps, self.num_classes)
        gt = im.quantized(imgs, self.bits)
        return {
            t: self._conditional_grid(
                model, device, t, shown, gt, imgs, maps, per_row or GRID_SAMPLES
            )
            for t in temperatures
        }


TASKS: dict[str, type[Task]] = {
    "generation": Generation,
    "super_resolution": SuperResolution,
    "translation": Translation,
}


def make_task(spec: FlowSpec, recipe: Recipe) -> Task:
    return TASKS[recipe.task](spec, recipe)
