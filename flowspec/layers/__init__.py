"""flowspec's built-in vocabulary: one file per layer kind, net, encoder and prior.

Each file holds a kind's torch-free declaration (registered with :func:`flowspec.kind` and
friends, exactly as a plugin does): its arguments, shape rule, issues and parameter count,
and its module by import path, ``"flowspec.nn.<same file>:Class"``, a plain torch file.
Files whose name starts with ``_`` hold shared helpers only, and :mod:`.base` forwards the
old import path of ``FlowLayer``.

Importing this package imports none of them: :data:`BUILT_IN` tells the registries which
file declares each key (:meth:`flowspec.registry.Registry.defer`), and a file is imported
when one of its keys is first used, so that ``flowspec check`` builds only the declarations
a spec uses (their pydantic models are most of the cost of importing flowspec). A test
keeps the table and the files' own keys the same (``tests/test_registry.py``).
"""

from __future__ import annotations

from flowspec.kinds import REGISTRIES

#: registry -> key -> the file of this package that declares it
BUILT_IN: dict[str, dict[str, str]] = {
    "kind": {
        "actnorm": "actnorm",
        "attention.imap": "imap",
        "attention.isdp": "isdp",
        "cglow_actnorm": "cglow_actnorm",
        "cglow_invconv": "cglow_invconv",
        "cond_actnorm": "cond_actnorm",
        "cond_invconv": "cond_invconv",
        "coupling.additive": "coupling",
        "coupling.affine": "coupling",
        "coupling.cglow": "cglow_coupling",
        "coupling.cond_affine": "cond_coupling",
        "coupling.mixture": "mixture",
        "coupling.spline": "spline",
        "coupling.srflow": "srflow_coupling",
        "injector": "injector",
        "invconv": "invconv",
        "logit": "logit",
        "permute": "permute",
        "residual": "residual",
        "split": "split",
        "squeeze": "reshape",
    },
    "net": {
        "flowpp": "flowpp_net",
        "glow": "nets",
        "glow_actnorm": "glow_actnorm_net",
        "resnet": "nets",
    },
    "encoder": {
        "convnet": "encoders",
        "embedding": "encoders",
        "palette": "encoders",
        "rrdb": "encoders",
        "srflow": "srflow_encoder",
    },
    "prior": {
        "convlstm": "convlstm_prior",
        "gaussian": "prior",
        "logistic": "logistic_prior",
    },
}

for _registry, _keys in BUILT_IN.items():
    for _key, _file in _keys.items():
        REGISTRIES[_registry].defer(_key, f"{__name__}.{_file}")
