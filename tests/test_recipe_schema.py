"""One recipe schema: the train block, the flags of `flowspec train`, the runtime's Recipe
and docs/language.md all come from :class:`flowspec.recipe.RecipeSpec` and the registries
of :mod:`flowspec.recipe` and :mod:`flowspec.datasets`."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import pytest

from flowspec.cli import build_parser
from flowspec.datasets import BUILTIN
from flowspec.recipe import (
    OPTIMIZERS,
    REGISTRY_FIELDS,
    SETTINGS,
    TASKS,
    RecipeSpec,
    field_info,
    flag_fields,
    range_error,
)
from runtime.recipe import Recipe

ROOT = Path(__file__).resolve().parents[1]


def _train_parser():
    return build_parser()._subparsers._group_actions[0].choices["train"]


def test_every_field_is_set_by_the_train_block_or_a_flag() -> None:
    for name in RecipeSpec.model_fields:
        info = field_info(name)
        assert info["flag"] or info["line"] or name == "sr_images", name
        if info["line"]:
            assert info["line"] in SETTINGS, name
            if info["option"]:
                assert info["option"] in SETTINGS[info["line"]].options, name


def test_the_flags_are_the_schemas() -> None:
    options = {a.dest: a for a in _train_parser()._actions}
    for name in flag_fields():
        assert "--" + name.replace("_", "-") in options[name].option_strings
        if f"{name}_options" in RecipeSpec.model_fields:  # a whole line, checked as one
            for entry in REGISTRY_FIELDS[name]:
                with contextlib.suppress(argparse.ArgumentTypeError):  # `step` needs options
                    assert options[name].type(entry) == entry
            with pytest.raises(argparse.ArgumentTypeError):
                options[name].type("nonesuch")
        elif name in REGISTRY_FIELDS:
            assert tuple(options[name].choices) == tuple(REGISTRY_FIELDS[name])


def test_the_docs_table_is_the_schemas() -> None:
    text = (ROOT / "docs" / "language.md").read_text()
    for name in SETTINGS:
        assert f"| `{name}` |" in text
    for name in flag_fields():
        assert f"`--{name.replace('_', '-')}`" in text
    for table in REGISTRY_FIELDS.values():
        for entry in table:
            assert entry in text


def test_the_runtime_recipe_is_the_schema() -> None:
    assert issubclass(Recipe, RecipeSpec) and set(Recipe.model_fields) == set(
        RecipeSpec.model_fields
    )


def test_implementations_cover_the_registries() -> None:
    from runtime.data.builtin import _BUILDERS
    from runtime.tasks import TASKS as TASK_CLASSES

    assert set(TASK_CLASSES) == set(TASKS)
    assert set(_BUILDERS) == set(BUILTIN)
    from flowspec.importing import import_object

    for entry in OPTIMIZERS.values():
        assert callable(import_object(entry.implementation))


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--bits", "9", "must be between 1 and 8, got 9"),
        ("--lr", "0", "must be positive, got 0"),
        ("--warmup", "-1", "must not be negative, got -1"),
        ("--steps", "x", "expected an integer, got `x`"),
    ],
)
def test_a_flag_out_of_range_is_a_usage_error(cli, flag: str, value: str, message: str) -> None:
    rc, _, err = cli("train", "specs/demo.flow", flag, value)
    assert rc == 2 and f"argument {flag}: {message}" in err


def test_the_train_block_and_the_flags_share_ranges() -> None:
    assert range_error("bits", 9) == "must be between 1 and 8, got 9"
    assert SETTINGS["optimizer"].options["lr"][1].bound == 0.0  # positive, as --lr
    assert SETTINGS["freeze"].options["fraction"][1:] == (0.0, 1.0)
