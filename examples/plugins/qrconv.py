"""A flowspec plugin: the QR-parameterised invertible 1x1 convolution.

Hoogeboom, van den Berg and Welling, "Emerging Convolutions for Generative Normalizing
Flows" (ICML 2019), section 3.3: instead of Glow's LU form, write the 1x1 convolution as

    W = Q (U + diag(exp(s)))

with Q orthogonal (a product of K Householder reflections I - 2 v v^T / |v|^2), U strictly
upper triangular and s a vector of log-scales. W is invertible for every parameter value,
|det W| = exp(sum s) because |det Q| = 1, so an H x W image has log|det J| = H W sum(s), and
the inverse is a transpose and one triangular solve.

This file is the kind's declaration and imports no torch, so ``flowspec check`` stays fast;
its torch module is in ``qrconv_nn.py``, named below by import path. Use it with
``flowspec check SPEC --plugin qrconv`` (this folder on PYTHONPATH) and write
``qrconv reflections=4`` in a spec wherever ``invconv`` could go.
"""

from __future__ import annotations

from pydantic import Field

import flowspec


class QRConvArgs(flowspec.Args):
    reflections: int = Field(4, ge=1, le=64, description="Householder reflections in Q")


@flowspec.kind
class QRConv(flowspec.LayerKind):
    key = "qrconv"
    Args = QRConvArgs
    doc = "invertible 1x1 convolution W = Q (U + diag(exp s)), Q from Householder reflections"
    module = "qrconv_nn:QRConvModule"  # imported only when a model is built

    @classmethod
    def params(cls, shape, args, cond_channels):
        c = shape[0]
        reflections = args["reflections"] if isinstance(args, dict) else args.reflections
        return reflections * c + c * c + c  # reflection vectors, U (stored full), s
