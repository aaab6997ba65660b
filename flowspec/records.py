"""The layers of a FlowModel, built from the IR's layer list: one record and one module each.

A FlowModel keeps its spec's layers in the IR's order: each module in an ``nn.ModuleList``
(so the ``state_dict`` names its parameters ``layers.i.*``) and, beside it, a
:class:`LayerRecord` of what the forward and inverse loops need to know of the layer: its
path and span (to name it in an error), its condition and where that condition's features
come from, and whether it emits a latent.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .errors import FlowError, Span
from .ir import FlowSpec, LayerIR, Position
from .kinds import KINDS


class FlowRuntimeError(FlowError, RuntimeError):
    """An error inside a layer, re-raised with the layer's path and its .flow span."""

    def __init__(self, path: str, span: Span | None, message: str):
        where = f" ({span.file}:{span.line}:{span.column})" if span else ""
        super().__init__(f"in layer `{path}`{where}: {message}")
        self.path = path
        self.span = span


@dataclass(frozen=True)
class LayerRecord:
    """One layer of a FlowModel as its loops read it (its module is ``layers[i]``)."""

    path: str
    span: Span
    kind: str
    #: the condition it takes (``on=``), or None
    on: str | None
    #: where it stands (:meth:`FlowSpec.positions`): a flow that models another flow's
    #: condition hands on its output from there. None: added by an insert rule
    position: Position | None
    #: the position in the condition's own flow whose output it takes (None: its condition,
    #: if any, has an encoder)
    tap: Position | None
    #: its kind's ``emits_latent``: forward returns ``(y, z, logdet)``, inverse takes ``z``
    emits_latent: bool
    #: H×W at which it receives its condition's features (its kind's ``cond_hw``)
    cond_hw: tuple[int, int]

    def error(self, e: Exception) -> FlowRuntimeError:
        """``e``, raised inside the layer, as an error that names the layer."""
        return FlowRuntimeError(self.path, self.span, f"{type(e).__name__}: {e}")


def layer_records(spec: FlowSpec) -> list[LayerRecord]:
    """One record per layer of a checked spec, in order."""
    positions = spec.positions()
    flows = {c.name for c in spec.conditions if c.flow is not None}
    out = []
    for layer in spec.layers:
        on = layer.args.get("on")
        position = positions.get(layer.path)
        kind = KINDS[layer.kind]
        out.append(
            LayerRecord(
                layer.path,
                layer.span,
                layer.kind,
                on,
                position,
                position if on in flows else None,
                kind.emits_latent,
                kind.cond_hw(tuple(layer.in_shape), layer.args),
            )
        )
    return out


def layer_modules(spec: FlowSpec) -> nn.ModuleList:
    """The module of every layer of a checked spec, in order (built in that order, so that
    their initial parameters are a function of the RNG's state alone)."""
    return nn.ModuleList(
        KINDS[layer.kind].module_class()(
            tuple(layer.in_shape), dict(layer.args), cond_width(spec, layer.args.get("on"), layer)
        )
        for layer in spec.layers
    )


def cond_width(spec: FlowSpec, on: str | None, layer: LayerIR | None = None) -> int | None:
    """Channels of condition ``on``'s features at ``layer`` (None: the prior); None when
    there is no condition."""
    return spec.cond_width(on, layer) if on else None
