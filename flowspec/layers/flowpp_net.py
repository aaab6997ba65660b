"""Flow++'s coupling network (``net=flowpp(blocks=10, heads=4, dropout=0.0)``).

The network of Flow++ (Ho et al. 2019, section 3.3) as mARFlow's official code builds it
(visinf/mar-scf ``flow_modules/mixlogcdf_nn.py``, ``NN``): a weight-normalised 3x3 input
convolution, ``blocks`` gated residual blocks and a weight-normalised 3x3 output
convolution. A block is

    ``x = LN(x + GatedConv(x))``,  ``x = LN(x + GatedAttn(x))``

where ``GatedConv`` is concat-ELU, a 3x3 convolution (2h -> h), concat-ELU, dropout and a
1x1 convolution (2h -> 2h) followed by a gated linear unit ``a * sigmoid(b)``
(PixelCNN++); ``GatedAttn`` is Transformer multi-head self-attention over all ``H W``
positions of one sample, with sinusoidal position encodings added to its input, a
bias-free projection to keys, values and queries, and the same gated linear unit on a
1x1 projection (2h outputs). ``LN`` is layer normalisation over channels at every pixel.
Every convolution and projection is weight-normalised (``w = g v / ||v||``, one gain ``g``
per output channel).

Differences from the official code, none of which changes a parameter count: the output
convolution starts at zero (its gains ``g`` are zero) so the coupling starts at its neutral
point, where the official one starts random; when ``heads`` does not divide ``hidden`` the
heads get widths differing by at most one (the official code requires divisibility); the
per-channel ``tanh`` rescale of the official ``NN`` belongs to the coupling here
(``coupling mixture scale=tanh``). Conditioning reaches the network as extra input
channels (concatenated by the coupling), not through the official ``aux`` convolution.
Everything works per sample (layer norm, not batch norm), so the coupling's Jacobian is
per sample.
"""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import Args, NetKind, net


def wn_params(cin: int, cout: int, k: int, bias: bool = True) -> int:
    """Parameters of a weight-normalised k x k convolution: direction, gain, bias."""
    return cin * cout * k * k + cout + (cout if bias else 0)


def block_params(hidden: int, attention: bool = True) -> int:
    """Parameters of one gated residual block of width ``hidden``."""
    h = hidden
    n = wn_params(2 * h, h, 3) + wn_params(2 * h, 2 * h, 1) + 2 * h  # gated conv, norm
    if attention:  # in-projection (no bias), gate, second norm
        n += wn_params(h, 3 * h, 1, bias=False) + wn_params(h, 2 * h, 1) + 2 * h
    return n


class FlowppArgs(Args):
    blocks: int = Field(10, ge=0, le=64, description="gated residual blocks")
    heads: int = Field(
        4,
        ge=1,
        le=64,
        description="attention heads per block (widths "
        "differ by one when they do not divide hidden)",
    )
    dropout: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="dropout in the gated "
        "convolutions (channels) and attention weights, while training",
    )
    attention: bool = Field(True, description="gated self-attention in every block")


@net
class FlowppNetKind(NetKind):
    key = "flowpp"
    Args = FlowppArgs
    doc = (
        "Flow++'s network: weight-normalised convs, gated residual blocks (concat-ELU, "
        "gated conv, layer norm) with gated multi-head self-attention, zero-started output"
    )
    module = "flowspec.nn.flowpp_net:FlowppNet"

    @classmethod
    def params(
        cls,
        cin: int,
        cout: int,
        hidden: int,
        blocks: int = 10,
        heads: int = 4,
        dropout: float = 0.0,
        attention: bool = True,
    ) -> int:
        return (
            wn_params(cin, hidden, 3)
            + blocks * block_params(hidden, attention)
            + wn_params(hidden, cout, 3)
        )
