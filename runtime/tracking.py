"""Experiment tracking: TensorBoard event files in the run folder (``train --tensorboard``).

metrics.jsonl stays the run's record; TensorBoard is a view of the same numbers for those
who watch curves live (``tensorboard --logdir runs/``). What goes in, under ``RUN/tensorboard/``:

* scalars ``train/loss``, ``train/bpd``, ``train/lr``, ``train/grad_norm``,
  ``train/images_per_s`` each step, and ``val/<metric>`` at each validation (super-resolution
  also ``val/<metric>/t<T>`` per temperature);
* images ``samples/t<T>``: the sample grids, each time they are drawn;
* the diagram: ``model/diagram`` as an image (Graphviz's PNG) and ``model/dot`` as text.

On ``--resume`` the writer purges the events after the checkpoint's step, as metrics.jsonl
drops its records, so the curves show one run. The ``tensorboard`` package is an optional
extra (``pip install 'flowspec[track]'``); :class:`Tracker` itself does nothing, so the
trainer calls it unconditionally.
"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path
from typing import Any

from torch import Tensor

from .errors import RunError

TRAIN_SCALARS = ("loss", "bpd", "lr", "grad_norm", "images_per_s")


class Tracker:
    """No tracking: every call is a no-op."""

    def train(self, step: int, record: dict[str, Any]) -> None:
        """Scalars of one optimisation step."""

    def val(self, step: int, metrics: dict[str, Any]) -> None:
        """The numbers of one validation."""

    def samples(self, step: int, grids: dict[float, Tensor]) -> None:
        """uint8 ``(C, H, W)`` sample grids by temperature."""

    def diagram(self, spec: Any) -> None:
        """The model's diagram."""

    def close(self) -> None:
        """Flush and close."""


class TensorBoard(Tracker):
    """Writes TensorBoard event files into ``folder``."""

    def __init__(self, folder: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise RunError(
                "--tensorboard needs the tensorboard package: pip install "
                "'flowspec[track]' (or pip install tensorboard)"
            ) from e
        self.folder = folder
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def train(self, step: int, record: dict[str, Any]) -> None:
        for key in TRAIN_SCALARS:
            if _number(record.get(key)):
                self.writer.add_scalar(f"train/{key}", record[key], step)

    def val(self, step: int, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if _number(value):
                self.writer.add_scalar(f"val/{key}", value, step)
        for t, row in (metrics.get("per_temperature") or {}).items():
            for key, value in row.items():
                if _number(value):
                    self.writer.add_scalar(f"val/{key}/t{t}", value, step)
        self.writer.flush()

    def samples(self, step: int, grids: dict[float, Tensor]) -> None:
        for t, img in grids.items():
            self.writer.add_image(f"samples/t{t:g}", img.cpu().numpy(), step, dataformats="CHW")
        self.writer.flush()

    def diagram(self, spec: Any) -> None:
        try:
            from flowspec import to_dot

            dot = to_dot(spec)
            self.writer.add_text("model/dot", "```\n" + dot.source + "\n```", 0)
            png = dot.pipe(format="png")
        except Exception as e:  # noqa: BLE001 - a diagram never stops a run
            print(
                f"flowspec: warning: no diagram in TensorBoard ({type(e).__name__}: {e})",
                file=sys.stderr,
            )
            return
        import numpy as np
        from PIL import Image

        with Image.open(io.BytesIO(png)) as picture:
            rgb = np.asarray(picture.convert("RGB"))
        self.writer.add_image("model/diagram", rgb, 0, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def open_tracker(out: Path, enabled: bool, purge_step: int | None) -> Tracker:
    """A :class:`TensorBoard` writing to ``out/tensorboard`` when ``enabled``, else a no-op."""
    return TensorBoard(out / "tensorboard", purge_step) if enabled else Tracker()
