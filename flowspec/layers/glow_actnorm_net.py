"""``net=glow_actnorm``: Glow's coupling network as Glow's and SRFlow's code build it.

The ``glow`` net is the usual simplification (convolutions with biases). The official code
(openai/glow ``f()``; andreas128/SRFlow ``CondAffineSeparatedAndCond.F``) instead gives the
two hidden convolutions no bias and follows each by an actnorm with data-dependent
initialisation, and scales the zero-initialised output convolution by ``exp(3 logs)`` with a
learned per-channel ``logs`` (``Conv2dZeros``, starting at 0).
"""

from __future__ import annotations

from flowspec.kinds import NetKind, net

#: ``Conv2dZeros``'s ``logscale_factor``: the output is multiplied by ``exp(3 logs)``.
LOGSCALE_FACTOR = 3.0


@net
class GlowActNormNetKind(NetKind):
    key = "glow_actnorm"
    doc = (
        "Glow's network as Glow's and SRFlow's code have it: bias-free conv3x3 and conv1x1, "
        "each followed by a data-initialised actnorm, ReLUs, zero conv3x3 scaled by "
        "exp(3 logs)"
    )
    module = "flowspec.nn.glow_actnorm_net:GlowActNormNet"

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int) -> int:
        return (
            9 * cin * hidden
            + 2 * hidden
            + hidden * hidden
            + 2 * hidden
            + 9 * hidden * cout
            + cout
            + cout
        )
