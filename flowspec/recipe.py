"""The `train { }` recipe: which settings exist and what values they take (public API).

Each line is ``NAME [VALUE] [key=value ...]``. The recipe is the default for
``flowspec train``; command-line flags override it. One schema says it all:
:class:`RecipeSpec` (every setting of a run, its type, default and range, the train-block
line or option and the flag that set it), and the registries of the names a setting takes
(:data:`TASKS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`, :data:`AUGMENTATIONS`,
:data:`DEQUANTIZERS`; data sets in
:mod:`flowspec.datasets`). :func:`validate_settings` checks each line alone and
:func:`check_recipe` what a line asks of the model (an encoder to pretrain or freeze); the
runtime validates a run's recipe and generates its flags from the same schema
(:func:`range_error`, :func:`flag_fields`), and supplies the implementations.

This module is the public door; the code lives in two internal modules:
:mod:`flowspec.recipe_schema` (the registries, :class:`RecipeSpec`, the field facts and
range checks, the rule of each line) and :mod:`flowspec.recipe_check` (checking the lines:
:func:`validate_settings`, :func:`parse_line`, the milestones, :func:`check_recipe`).
"""

from __future__ import annotations

from .recipe_check import (
    check_recipe,
    milestone_steps,
    milestones_error,
    parse_line,
    validate_settings,
)
from .recipe_schema import (
    AUGMENTATIONS,
    DEQUANTIZERS,
    OPTIMIZERS,
    REGISTRY_FIELDS,
    SCHEDULES,
    SETTINGS,
    TASKS,
    Above,
    Choice,
    RecipeSpec,
    Rule,
    bound_phrase,
    field_info,
    flag_fields,
    range_error,
    registry_error,
)

__all__ = [
    "AUGMENTATIONS",
    "DEQUANTIZERS",
    "OPTIMIZERS",
    "REGISTRY_FIELDS",
    "SCHEDULES",
    "SETTINGS",
    "TASKS",
    "Above",
    "Choice",
    "RecipeSpec",
    "Rule",
    "bound_phrase",
    "check_recipe",
    "field_info",
    "flag_fields",
    "milestone_steps",
    "milestones_error",
    "parse_line",
    "range_error",
    "registry_error",
    "validate_settings",
]
