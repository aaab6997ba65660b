"""The resolved FlowSpec IR: plain, JSON-serialisable data.

Everything after ``resolve`` sees only these models. Every node keeps the span of the
source that produced it and, where it came out of a block or an insert rule, the trace
of instantiations, so that any later error can point back at the `.flow` text.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import Span

IR_VERSION = "0.1"
Scalar = int | float | bool | str | None
#: an argument's value; a dict only for the arguments of a registry entry written as a
#: call (``net=flowpp(blocks=4)`` is ``net: "flowpp"``, ``net_args: {"blocks": 4}``)
Value = Scalar | dict[str, Scalar]
ShapeT = tuple[int, int, int]
#: a layer's place in its flow: (level, step, k-th layer written there); see FlowSpec.positions
Position = tuple[int | None, int | None, int]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Origin(_Model):
    """One step of the instantiation trace: "in block `x`, instantiated at 20:3"."""

    text: str
    span: Span


class LayerIR(_Model):
    path: str = Field(description="stable name, e.g. level2.step07.coupling")
    kind: str = Field(description="registry key, e.g. coupling.affine")
    args: dict[str, Value] = Field(description="every argument, defaults filled in")
    span: Span
    arg_spans: dict[str, Span] = Field(default_factory=dict)
    trace: list[Origin] = Field(default_factory=list)
    level: int | None = None
    step: int | None = None
    inserted: bool = False
    in_shape: ShapeT | None = None
    out_shape: ShapeT | None = None


class EncoderIR(_Model):
    kind: str
    args: dict[str, Value]


class ConditionIR(_Model):
    """A declared condition. ``image`` is fed as is, ``labels`` (a per-pixel class map) and
    ``class`` (one integer label per sample, ``shape = (N, 1, 1)``) one-hot, to the encoder."""

    name: str
    type: Literal["image", "labels", "class"]
    shape: ShapeT = Field(
        description="CxHxW; for labels and class C is the number of classes (class: Nx1x1)"
    )
    encoder: EncoderIR
    span: Span
    flow: FlowSpec | None = Field(
        None,
        description="encoder=flow(NAME): the condition's own flow (checked IR), whose "
        "layer outputs condition the layers of the same path; its likelihood joins the loss",
    )

    def declared(self) -> str:
        """The type and size as written: ``image 3x20x20``, ``labels 8x64x64``, ``class 10``."""
        size = self.shape[0] if self.type == "class" else "x".join(map(str, self.shape))
        return f"{self.type} {size}"


class PriorIR(_Model):
    kind: str = Field("gaussian", description="registry key of the prior, e.g. gaussian")
    learned: bool = False
    on: str | None = None
    args: dict[str, Value] = Field(
        default_factory=dict, description="the prior's other arguments, defaults filled in"
    )
    span: Span | None = None

    def all_args(self) -> dict[str, Value]:
        """Every argument of the prior's kind (``learned`` and ``on`` included)."""
        return {**self.args, "learned": self.learned, "on": self.on}


class LatentIR(_Model):
    name: str = Field(description="z1 ... zL, in the order the flow emits them")
    shape: ShapeT
    source: str = Field(description="path of the split that emits it, or 'prior'")


class Setting(_Model):
    """One line of `train { }`: `optimizer adamax lr=8e-4`."""

    value: Value = None
    # a list of numbers only here: `schedule step milestones=[0.5, 0.75]`
    options: dict[str, Value | list[Scalar]] = Field(default_factory=dict)
    span: Span


class FlowSpec(_Model):
    ir_version: str = IR_VERSION
    name: str
    file: str
    params: dict[str, Value]
    input: ShapeT
    input_span: Span | None = None
    prior: PriorIR
    conditions: list[ConditionIR] = Field(default_factory=list)
    layers: list[LayerIR]
    latents: list[LatentIR] = Field(default_factory=list)
    expect_latent: ShapeT | None = None
    expect_span: Span | None = None
    train: dict[str, Setting] = Field(default_factory=dict)
    span: Span | None = None

    def condition(self, name: str) -> ConditionIR:
        return next(c for c in self.conditions if c.name == name)

    def layer(self, path: str) -> LayerIR:
        return next(layer for layer in self.layers if layer.path == path)

    def positions(self) -> dict[str, Position]:
        """Where each layer stands: ``(level, step, k)``, the k-th layer written in that step
        (or level, or outside both). Layers added by insert rules have none. A layer
        conditioned on a flow receives the output of that flow's layer at its position."""
        return self._index()[2]

    def _index(self) -> tuple[int, int, dict[str, Position], dict[Position, LayerIR]]:
        # computed once per layer list (check and count_params ask for every layer), kept
        # outside the fields as a cached_property would be: pydantic's ==, dumps and
        # validation ignore it, and a copy (whose list is another) computes its own
        key = (id(self.layers), len(self.layers))
        places = self.__dict__.get("_places")
        if places is not None and places[:2] == key:
            return places
        out: dict[str, Position] = {}
        at: dict[Position, LayerIR] = {}
        seen: dict[tuple[int | None, int | None], int] = {}
        for layer in self.layers:
            if layer.inserted:
                continue
            group = (layer.level, layer.step)
            position = (layer.level, layer.step, seen.get(group, 0))
            out[layer.path] = position
            at.setdefault(position, layer)
            seen[group] = seen.get(group, 0) + 1
        self.__dict__["_places"] = places = (*key, out, at)
        return places

    def tap_shape(self, position: Position | None) -> ShapeT | None:
        """C×H×W of the output of the layer at ``position`` (``None``: the final latent, what
        the prior sees; a split: the latent it factors out), or None when no layer stands
        there."""
        if position is None:
            return tuple(self.latents[-1].shape) if self.latents else None
        layer = self._index()[3].get(position)
        if layer is None:
            return None
        latent = next((z for z in self.latents if z.source == layer.path), None)
        if latent is not None:  # a split hands on the latent it factors out
            return tuple(latent.shape)
        return None if layer.out_shape is None else tuple(layer.out_shape)

    def cond_width(self, name: str, layer: LayerIR | None = None) -> int:
        """Channels of condition ``name``'s features at ``layer`` (``None``: the prior): the
        encoder's ``features``, or for a condition modelled by a flow the channels of that
        flow's layer output at the layer's position."""
        c = self.condition(name)
        if c.flow is None:
            from .kinds import encoder_channels

            return encoder_channels(c.encoder)
        position = None if layer is None else self.positions().get(layer.path)
        shape = c.flow.tap_shape(position)
        if shape is None:
            raise KeyError(f"flow `{c.flow.name}` has no layer at {position}")
        return shape[0]

    def digest(self) -> str:
        """Hash of what determines the model's parameters (not spans or the recipe)."""
        data = self.model_dump(mode="json", include={"input", "prior", "conditions", "layers"})
        for layer in data["layers"]:
            for key in ("span", "arg_spans", "trace"):
                layer.pop(key, None)
        for cond, c in zip(data["conditions"], self.conditions):
            cond.pop("span", None)
            if c.flow is not None:  # a condition's flow counts by its own digest
                cond["flow"] = c.flow.digest()
            else:
                cond.pop("flow", None)
        data["prior"].pop("span", None)
        if not data["prior"]["args"]:  # digests of specs from before priors took arguments
            data["prior"].pop("args")
        return hashlib.sha256(repr(data).encode()).hexdigest()[:16]


ConditionIR.model_rebuild()


def json_schema() -> dict:
    """The JSON Schema of :class:`FlowSpec` with FlowSpec itself at the root (a condition may
    hold a flow, so pydantic puts the recursive model in ``$defs`` behind a ``$ref``)."""
    schema = FlowSpec.model_json_schema()
    ref = schema.pop("$ref", None)
    if ref is None:
        return schema
    defs = schema.get("$defs", {})
    return {**defs[ref.rsplit("/", 1)[-1]], "$defs": defs}
