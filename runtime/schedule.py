"""The learning rate of each step: the warm-up, then the recipe's ``schedule``.

The names and options are the compiler's (:data:`flowspec.recipe.SCHEDULES`); the curves
are here. The rate of step ``s`` (0-based) is ``lr * factor(s)``, a pure function of the
step, so a ``LambdaLR`` over it resumes exactly: its state is the step count alone.

After ``warmup`` steps (``lr * (s + 1) / warmup`` before them), with ``p = (s - warmup) /
(steps - warmup)`` the share of the remaining run done:

- ``constant``: 1;
- ``cosine``: ``(1 + cos(pi p)) / 2``, from 1 down towards 0 (the last step's rate is small
  but not 0);
- ``linear``: ``1 - p``;
- ``step``: ``gamma ** k``, ``k`` the number of milestones ``m <= s``, a milestone
  being a step count (``m`` steps: the rate changes from step ``m + 1``, 1-based, on) or a
  fraction ``f`` of the run (``floor(f * steps)``, as SRFlow's ``lr_steps_rel`` with
  PyTorch's ``MultiStepLR``). Milestones count from the first step, warm-up included.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

from flowspec.recipe import SCHEDULES, milestone_steps

from .errors import RunError

__all__ = ["factor"]


def factor(recipe: Any) -> Callable[[int], float]:
    """The multiplier of ``lr`` at step ``s`` (0-based) under ``recipe``'s warm-up and
    schedule."""
    warm, steps, name = recipe.warmup, recipe.steps, recipe.schedule
    opts = recipe.schedule_options or {}
    if name not in SCHEDULES:
        raise RunError(f"unknown schedule `{name}`; schedules: {', '.join(SCHEDULES)}")
    at = milestone_steps(list(opts.get("milestones", [])), steps)
    gamma = float(opts.get("gamma", 0.5))
    span = max(1, steps - warm)

    def after_warmup(s: int) -> float:
        p = min(1.0, max(0.0, (s - warm) / span))
        if name == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if name == "linear":
            return 1.0 - p
        if name == "step":
            return gamma ** bisect.bisect_right(at, s) if at else 1.0
        return 1.0

    def f(s: int) -> float:
        ramp = min(1.0, (s + 1) / warm) if warm else 1.0
        return ramp * after_warmup(s)

    return f
