"""The .flow language of docs/language.md, asserted on the resolved IR: the layer registry,
every kind and prior spelt out with its arguments, right and wrong.
"""

from __future__ import annotations

import json
import re
import typing

import pytest
from flowtext import ir, t

from flowspec.api import analyze
from flowspec.ir import FlowSpec
from flowspec.kinds import KINDS, PRIORS

#: layer kinds and priors (as ``prior.KEY``): the vocabulary a flow statement can name
ALL = {**KINDS, **{f"prior.{key}": p for key, p in PRIORS.items()}}


# ---- the layer registry --------------------------------------------------------------------
COND = "  condition c: image 3x4x4 encoder=convnet(blocks=1, features=4)"

# a non-default value for every argument of the kinds registered today; kinds registered
# later are covered by test_every_kind_accepts_its_arguments_spelled_out
EXAMPLES: dict[str, str] = {
    "actnorm": "",
    "invconv": "lu=false",
    "permute": "mode=reverse",
    "coupling.affine": "hidden=16 net=resnet mask=checkerboard flip=true on=c",
    "coupling.additive": "hidden=8 net=glow mask=checkerboard on=c",
    "coupling.mixture": "hidden=12 components=3 net=resnet flip=true on=c",
    "injector": "on=c hidden=5",
    "coupling.srflow": "on=c hidden=12 net=glow inject=false scale=bounded",
    "attention.imap": "act=sigmoid mask=complement",
    "attention.isdp": "heads=2 patches=16 mask=complement",
    "squeeze": "factor=4",
    "split": "prior=fixed on=c",
    "prior.gaussian": "learned on=c",
    "coupling.spline": "hidden=16 bins=4 net=resnet mask=checkerboard flip=true on=c",
    "logit": "",  # alpha= is a float, which this table's parser does not read back
    "prior.logistic": "learned on=c",
    "cond_actnorm": "on=c",
    "cond_invconv": "lu=false on=c",
    "coupling.cond_affine": "hidden=16 cond_hidden=8 on=c",
}


def _literal(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v if v.isidentifier() else json.dumps(v)
    return repr(v)


def _kind_flow(key: str, kwargs: str) -> str:
    kind = ALL[key]
    if key.startswith("prior."):
        return t(
            "flow f {",
            "  input 4x8x8",
            COND,
            f"  prior {key[6:]} {kwargs}",
            "  coupling affine on=c",
            "}",
        )
    words = " ".join(w for w in (kind.head, kind.variant, kwargs) if w)
    return t("flow f {", "  input 4x8x8", COND, "  coupling affine on=c", f"  {words}", "}")


def _layer_of(spec: FlowSpec, key: str):
    return next(layer for layer in spec.layers if layer.kind == key and layer.path != "coupling")


@pytest.mark.parametrize("key", sorted(EXAMPLES))
def test_layer_kind_with_keyword_arguments(key):
    if key not in ALL:
        pytest.skip(f"{key} is no longer registered")
    spec = ir(_kind_flow(key, EXAMPLES[key]))
    kind = ALL[key]
    if key.startswith("prior."):
        assert (spec.prior.learned, spec.prior.on) == (True, "c")
        return
    layer = _layer_of(spec, key)
    given = {}
    for part in EXAMPLES[key].split():
        name, value = part.split("=")
        given[name] = {"true": True, "false": False}.get(value, value)
        if value.isdigit():
            given[name] = int(value)
    expected = {**kind.Args().model_dump(), **given}
    assert layer.args == expected
    assert layer.in_shape == (4, 8, 8)
    assert layer.out_shape is not None


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_accepts_its_arguments_spelled_out(key):
    """Every argument of every registered kind, written out with its default value."""
    kind = ALL[key]
    defaults = kind.Args().model_dump()
    parts = []
    for name, value in defaults.items():
        extra = kind.Args.model_fields[name].json_schema_extra or {}
        if "args_of" in extra:  # written as a call of its registry field: net=glow()
            defaults[name] = {}
            continue
        if name == "on":
            value = "c" if kind.conditional != "never" else None
        if value is not None:
            parts.append(f"{name}={_literal(value)}")
    spec = ir(_kind_flow(key, " ".join(parts)))
    if key.startswith("prior."):
        assert spec.prior.on == ("c" if kind.conditional != "never" else None)
        return
    layer = _layer_of(spec, key)
    expected = dict(defaults)
    if "on" in expected:
        expected["on"] = "c" if kind.conditional != "never" else None
    assert layer.args == expected
    assert re.sub(r"_\d+$", "", layer.path.split(".")[-1]) == kind.head


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_rejects_an_unknown_argument(key):
    _, diags = analyze("k.flow", text=_kind_flow(key, "bogus_arg=1"))
    codes = [d.code for d in diags if d.severity == "error"]
    assert codes == ["E105"], diags


@pytest.mark.parametrize("key", sorted(ALL))
def test_every_kind_rejects_a_wrong_type_for_each_argument(key):
    kind = ALL[key]
    for name, info in kind.Args.model_fields.items():
        ann = info.annotation
        bad = (
            '"text"'
            if ann in (int, bool, float) or typing.get_origin(ann) is typing.Literal
            else "3"
        )
        _, diags = analyze("k.flow", text=_kind_flow(key, f"{name}={bad}"))
        codes = [d.code for d in diags if d.severity == "error"]
        assert codes and codes[0] in ("E121", "E122"), (name, diags)


def test_registry_kinds_have_one_head_and_variant_each():
    seen = set()
    for key, kind in KINDS.items():
        assert key == (kind.head if kind.variant is None else f"{kind.head}.{kind.variant}")
        assert (kind.head, kind.variant) not in seen
        seen.add((kind.head, kind.variant))


def test_coupling_defaults_to_affine():
    spec = ir(t("flow f {", "  input 4x8x8", "  coupling hidden=4", "}"))
    assert spec.layers[0].kind == "coupling.affine"
