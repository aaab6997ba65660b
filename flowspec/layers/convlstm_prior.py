"""mAR-SCF's channel-autoregressive ConvLSTM prior (``prior convlstm``, ``split prior=convlstm``).

mARFlow (Bhattacharyya et al., "Normalizing Flows with Multi-Scale Autoregressive Priors",
CVPR 2020; official code visinf/mar-scf ``mar_prior/corr_prior.py``) models every latent
that a level factors out, and the final one, channel by channel: channel ``t`` of a latent
``z`` (C x H x W) is Gaussian with a mean and log-scale map computed by a convolutional LSTM
that has read channels ``0 .. t-1``, and, for a split latent, features of the half that the
flow keeps at that split (the "previous levels" it is conditioned on):

    ``z_t ~ N(mu_t, diag(e^{2 l_t}))``,  ``(mu_t, l_t) = out(LSTM(embed([z_{t-1}, ctx])))``

with ``z_{-1} = 0``, ``ctx = conv5x5(ReLU(conv5x5(kept)))`` (4 channels; absent for the
final latent), ``embed`` a k x k convolution to the LSTM's width, ``layers`` stacked
ConvLSTM cells (k x k convolutions of dilation ``dilation``, same padding) and ``out`` a
3x3 convolution to ``(mu_t, l_t)``.

In flowspec latents are standardised: this module maps ``z`` to
``eps_t = (z_t - mu_t) e^{-l_t}``. Since ``mu_t, l_t`` depend only on ``z_{<t}`` (and the
kept half), the Jacobian ``d eps / d z`` is triangular with diagonal ``e^{-l_t}``, so
``logdet = -sum l`` exactly, and ``log N(eps; 0, I) + logdet`` is exactly mARFlow's
``log p(z)``. The inverse (sampling) is sequential over channels:
``z_t = eps_t e^{l_t} + mu_t`` with ``mu_t, l_t`` from the channels already decoded.

Differences from the official code: ``out`` starts at zero (the prior starts as N(0, I)),
and the context network's width is the LSTM's (``hidden``; the official code fixes both at
32). Dropout on the prior's inputs is off, as in the official model (``dp_rate=0``).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field, field_validator

from flowspec.kinds import Args, PriorKind, conv_params, prior

#: Channels of the context features computed from the kept half (mAR-SCF's ``z1_embd``).
CONTEXT_FEATURES = 4


def channel_ar_params(context: int | None, hidden: int, layers: int, kernel: int) -> int:
    """Parameters of :class:`ChannelAR` (``context``: channels of the conditioning map)."""
    n = 0
    if context:
        n += conv_params(context, hidden, 5) + conv_params(hidden, CONTEXT_FEATURES, 5)
    n += conv_params(1 + (CONTEXT_FEATURES if context else 0), hidden, kernel)
    n += layers * 2 * conv_params(hidden, 4 * hidden, kernel)  # input and hidden convs
    return n + conv_params(hidden, 2, 3)


def odd_kernel(v: int) -> int:
    """Kernels of the ConvLSTM and its embedding are odd (same padding)."""
    if v % 2 == 0:
        raise ValueError(f"kernel must be odd (same padding), got {v}")
    return v


class ConvLSTMArgs(Args):
    hidden: int = Field(32, ge=1, le=1024, description="channels of the ConvLSTM")
    layers: int = Field(3, ge=1, le=16, description="stacked ConvLSTM cells")
    kernel: int = Field(3, ge=1, le=9, description="kernel of the embedding and the cells (odd)")
    dilation: int = Field(1, ge=1, le=8, description="dilation of the cells' convolutions")

    _odd = field_validator("kernel")(odd_kernel)


@prior
class ConvLSTMPriorKind(PriorKind):
    key = "convlstm"
    Args = ConvLSTMArgs
    doc = (
        "mAR-SCF's channel-autoregressive prior: each channel Gaussian given the previous "
        "ones through a ConvLSTM; exact density, sequential sampling"
    )
    module = "flowspec.nn.convlstm_prior:ConvLSTMPrior"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        return channel_ar_params(None, a["hidden"], a["layers"], a["kernel"])
