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

import math
from typing import Any

import torch
from torch import Tensor

from flowspec import condflow
from flowspec.ir import ConditionIR, FlowSpec

from . import classcond as cc
from . import images as im
from . import srprotocol as sr
from .data import DataError, prepare
from .errors import RunError
from .metrics import bits_per_dim
from .recipe import Recipe
from .streams import generator, stream_seed
from .task_base import (
    GRID_EXAMPLES,
    GRID_SAMPLES,
    SAMPLE_TEMPERATURES,
    VAL_CHUNK,
    Task,
    TaskData,
    fmt_shape,
    to_device,
)

SR_TEMPERATURES_EVAL = tuple(round(0.1 * k, 1) for k in range(1, 10))  # 0.1 ... 0.9
SR_TEMPERATURES_TRAIN = (0.1, 0.5, 0.9)


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
                    f"{fmt_shape(self.spec.input)}, condition `{c.name}` {fmt_shape(c.shape)}"
                    "; give `task super_resolution scale=S`"
                )
            scale = h // lh
        if h % scale or w % scale:
            raise RunError(f"scale={scale} does not divide the input {fmt_shape(self.spec.input)}")
        want = (self.spec.input[0], h // scale, w // scale)
        if tuple(c.shape) != want:
            raise RunError(
                f"task `super_resolution scale={scale}` downscales the "
                f"{fmt_shape(self.spec.input)} input to {fmt_shape(want)}, but condition "
                f"`{c.name}` is declared {fmt_shape(c.shape)} "
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
                f"condition `{c.name}` is {fmt_shape(c.shape[1:])} but the input is "
                f"{fmt_shape(self.spec.input[1:])}; translation pairs each pixel with "
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
