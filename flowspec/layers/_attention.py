r"""What iMap and iSDP share: the three forms, their arguments, the 3-D mask.

Both layers split the entries of a ``(C, H, W)`` sample with the 3-D checkerboard
``M[c, h, w] = (c + h + w) % 2`` (``mask=complement`` uses ``1 - M``): the entries with
``M = 1`` ("masked") are only rescaled or kept, and they alone drive the attention weights
that act on the others ("free", ``M = 0``). In the ordering (masked, free) the Jacobian is
block lower-triangular, so its determinant is the product of the two diagonal blocks'
determinants. That is the whole argument for exactness; the paper's pseudo-code replaces the
free block's determinant by closed forms (``C/2`` per position for iMap, ``p (p//2) c`` times
one ``slogdet`` for iSDP) that are only right in special cases. Here both are computed from
the actual mask. The three forms below keep the masks, and with them the argument.

``form=`` (both layers):

* ``identity`` (the default): identity plus a bounded attention branch times a free gain;
  every parameter starts at 0, where the layer *is* the identity, so inserting attention
  into a backbone does not change the model it starts from. iMap: the free entries are
  scaled by ``exp(gamma + b tanh(.))``, the masked ones by ``exp(s_c)``; iSDP:
  ``A = g (I + beta S)``, ``g = exp(gamma)``, ``beta = b tanh(theta)``, ``b < 1``.
* ``paper``: the paper's literal parameterisation (sigmoid scales for iMap,
  ``softmax + (1 + delta + softplus(theta)) I`` for iSDP). Its initialisation is far from
  the identity (iSDP multiplies the free half by about 1.7 plus a softmax mixing), which
  costs about a bit per dimension early in training (docs/results.md).
* ``residual``: the bounded form for deep stacks (the paper's appendix H asks for residual
  learning): every factor is identity plus a branch bounded by ``b = RESIDUAL_BOUND``, no
  free gain, so one layer's inverse amplifies rounding errors by at most ``e^b`` (iMap) or
  ``1 / (1 - b)`` (iSDP). W003 recommends it for deep stacks.

How the forms are stored. ``residual=`` is the older spelling and stays valid:
``residual=true`` is ``form=residual`` and ``residual=false`` is ``form=paper`` (what it
meant before ``form`` existed). The IR keeps only ``residual``, as a three-state value
(``null``: identity, ``false``: paper, ``true``: residual): an IR or a checkpoint written
before ``form`` existed holds ``residual: false`` / ``true`` and so describes exactly the
model it was trained with, with the same digest, while a spec that omits both arguments
(today's identity form) gets ``residual: null`` and so a different digest: a checkpoint of
the paper form never loads silently into an identity-form model. ``form`` is read back
with :func:`form_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, ValidationInfo
from pydantic_core import PydanticCustomError

from flowspec.kinds import LayerKind

FORMS = ("identity", "paper", "residual")
Form = Literal["identity", "paper", "residual"]
#: The stored three-state ``residual`` of each form, and back.
_STORED = {"identity": None, "paper": False, "residual": True}
_FORM = {None: "identity", False: "paper", True: "residual"}

#: ``b`` of the residual forms: iMap scales are ``exp(b tanh(.))`` in ``[e^-b, e^b]``; iSDP is
#: ``A = I + beta S`` with ``|beta| = b |tanh(theta)| < b`` and ``S`` the row-stochastic softmax.
RESIDUAL_BOUND = 0.5
#: ``b`` of iSDP's identity form: ``A = g (I + beta S)``, ``|beta| < b``. Below 1, so the
#: blocks ``I + beta S[U, U]`` are invertible for every parameter value (see isdp.py); close
#: to 1, so the branch can mix almost as strongly as the paper's form (whose
#: ``S + (1.01 + softplus) I`` is ``g (I + beta S)`` with ``0 < beta < 1 / 1.01``).
BETA_BOUND = 0.9
#: ``b`` of iMap's identity form: the attention weights are ``exp(gamma + b tanh(.))``, so
#: the input-dependent part moves a free entry by at most a factor ``e^b`` around the gain.
GATE_BOUND = 1.0


#: What an IR written before an argument existed meant by its absence: before ``residual``
#: existed every attention layer had the paper's form. (``runtime.checkpoint`` fills absent
#: arguments with ``Args()`` defaults, which for ``residual`` is now the identity form; it
#: should prefer these.)
LEGACY_DEFAULTS = {"residual": False}


def form_of(args: Mapping[str, Any] | Any) -> str:
    """The form of an iMap / iSDP argument set: an IR ``dict`` (``residual`` three-state;
    absent only in an IR from before it existed: the paper's form) or an Args instance."""
    if isinstance(args, Mapping):
        form = args.get("form")
        if form is not None:
            return form
        return _FORM[args.get("residual", LEGACY_DEFAULTS["residual"])]
    return args.form if args.form is not None else _FORM[args.residual]


def form_field() -> Any:
    return Field(
        None,
        exclude=True,
        description=(
            "identity (default): starts as the identity, A = g (I + beta S); paper: the paper's "
            "parameterisation; residual: bounded, for deep stacks (see docs/language.md)"
        ),
    )


def residual_field() -> Any:
    return Field(
        None,
        validate_default=True,
        description=("older spelling of form=: true is form=residual, false is form=paper"),
    )


def check_residual(value: bool | None, info: ValidationInfo) -> bool | None:
    """The stored three-state ``residual`` from ``form`` and ``residual`` (a field validator
    of ``residual``, which follows ``form``): both given must agree."""
    form = info.data.get("form")
    if form is None:
        return value
    stored = _STORED[form]
    if "form" in info.data and value is not None and value is not stored:
        raise PydanticCustomError(
            "literal_error",
            "residual= contradicts form=",
            {
                "expected": f"no residual= with form={form} (residual=true is form=residual, "
                "residual=false is form=paper)"
            },
        )
    return stored


def mask_arg(args: Mapping[str, Any]) -> bool:
    """``True`` for ``mask=complement``, ``False`` for ``mask=checkerboard``."""
    mask = args["mask"]
    if mask not in ("checkerboard", "complement"):
        raise ValueError(f"unknown attention mask {mask!r}; expected 'checkerboard'/'complement'")
    return mask == "complement"


def module_form(args: Mapping[str, Any]) -> str:
    """:func:`form_of` for a module's argument dict, with the value checked."""
    value = args.get("residual")
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"attention residual must be true or false, got {value!r}")
    form = form_of(args)
    if form not in FORMS:
        raise ValueError(f"unknown attention form {form!r}; expected one of {', '.join(FORMS)}")
    return form


def shown_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments as written: ``form=...`` rather than the IR's three-state ``residual``."""
    out = {k: v for k, v in args.items() if k not in ("residual", "form")}
    out["form"] = form_of(args)
    return out


class AttentionKind(LayerKind):
    """What the declarations of iMap and iSDP share: the forms (the IR keeps ``residual``
    three-state; tables show ``form=``), the deep-stack remedy of warning W003, and the
    rule of warning W004."""

    stack_remedy = "residual"
    stack_remedy_hint = "form=residual"
    legacy_defaults = LEGACY_DEFAULTS  # absent from an old IR: the paper's form

    @classmethod
    def shown_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        return shown_args(args)

    @classmethod
    def alone_after(cls, shape: Any, args: Any, alone: list[list[bool]]) -> list[list[bool]]:
        # The free entries of the 3-D checkerboard ((c + h + w) odd is masked) become
        # functions of other entries; the masked ones are only rescaled (W004).
        free = 0 if args.mask == "checkerboard" else 1
        return [
            [a and (ch + p) % 2 != free for p, a in enumerate(row)] for ch, row in enumerate(alone)
        ]
