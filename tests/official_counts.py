"""Parameter counts of the paper models' official code, reconstructed from their module
definitions: the oracles that tests/test_marflow.py, test_srflow.py, test_srflow_pretrain.py
and test_fullglow.py hold flowspec's counts to, and that bench/param_counts.py prints beside
them in docs/paper-models.md.

:func:`marflow_official` counts mARFlow's code (visinf/mar-scf), :func:`srflow_official`
SRFlow's (andreas128/SRFlow) and :func:`fullglow_official` Full-Glow's (MoeinSorkhei/glow2).
"""

from __future__ import annotations


def marflow_official(
    channels: int,
    hidden: int,
    levels: int = 3,
    steps: int = 4,
    blocks: int = 10,
    components: int = 32,
) -> int:
    """Parameters of the *flow* of mARFlow's official code (visinf/mar-scf, ``--coupling
    mixlogcdf``), counted from its module definitions; the ConvLSTM prior is counted by
    :func:`marflow_prior_official`.

    Per step: actnorm (2C), invertible 1x1 convolution (LU-decomposed, storing full C x C
    lower and upper matrices and log|s|: 2C^2 + C) and a Flow++ mixture-logistic
    coupling whose network (on C/2 channels) is a weight-normalised 3x3 input conv, ``blocks``
    gated residual blocks (concat-ELU gated 3x3 conv, 1x1 gate, two layer norms, gated
    multi-head self-attention) and a 3x3 output conv to ``C/2 (2 + 3 components)`` channels.
    Weight normalisation adds one gain per output channel.
    """

    def wn_conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + cout + cout  # weight, bias, weight-norm gain

    c, h = channels, hidden
    block = (
        wn_conv(2 * h, h, 3)
        + wn_conv(2 * h, 2 * h, 1)
        + 2 * h  # gated conv, norm
        + 3 * h * h
        + 3 * h  # attention in-projection (no bias) and its gain
        + 2 * h * h
        + 2 * h
        + 2 * h  # attention gate and its gain
        + 2 * h
    )  # second layer norm
    total = 0
    for level in range(levels):
        c *= 4
        half = c // 2
        net = (
            wn_conv(half, h, 3)
            + blocks * block
            + wn_conv(h, half * (2 + 3 * components), 3)
            + 2 * half
        )  # weight-normalised rescale of the scale
        total += steps * (2 * c + 2 * c * c + c + net)
        if level < levels - 1:
            c //= 2
    return total


def marflow_prior_official(
    channels: int, size: int = 32, levels: int = 3, hidden: int = 32, layers: int = 3
) -> int:
    """Parameters of mAR-SCF's multi-scale ConvLSTM prior in mARFlow's official code
    (``ChannelPriorMultiScale(..., num_layers=3, hidden_size=32)``), from its module
    definitions. Per level a ``ConvSeqEncoder``: an embedding convolution (k x k; 5 inputs,
    the previous channel and 4 context features, or 1 input at the top), ``layers``
    ConvLSTM cells (``w_ih``, ``w_hh``: 4h x h x k x k each, two biases of 4h) and a 3x3
    output convolution to (mean, log-scale); below the top also the context network of the
    kept half (conv5x5 to 32, ReLU, conv5x5 to 4). Kernels: 5, 5, then 3.
    """
    kernels = [5, 5] + [3] * max(levels - 2, 0)
    total = 0
    for level in range(1, levels + 1):
        k = kernels[level - 1]
        top = level == levels
        kept = channels * 2**level  # the half the flow keeps at this level's split
        total += (
            _conv(1 if top else 5, hidden, k)
            + layers * (2 * 4 * hidden * hidden * k * k + 2 * 4 * hidden)
            + _conv(hidden, 2, 3)
        )
        if not top:
            total += _conv(kept, 32, 5) + _conv(32, 4, 5)
    return total


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def srflow_official(
    levels: int,
    steps: int,
    *,
    scale: int = 8,
    nf: int = 64,
    nb: int = 8,
    gc: int = 32,
    stack: int = 4,
    hidden: int = 64,
    transitions: int = 2,
    channels: int = 3,
) -> dict[str, int]:
    """Parameters of SRFlow's official code (andreas128/SRFlow, ``SRFlowNet`` with
    ``confs/SRFlow_CelebA_8X.yml`` at other L and K), counted from its module definitions,
    split into what its flow uses, the RRDB's SR head and what is never used.

    * ``RRDBNet``: ``conv_first``, ``nb`` RRDBs (3 residual dense blocks of 5 biased 3x3
      convs, growth ``gc``), ``trunk_conv``, one ``upconv`` per doubling up to ``scale``,
      ``HRconv`` and ``conv_last``. The flow reads ``fea_up1 .. fea_up{scale/2}``; the last
      ``upconv``, ``HRconv`` and ``conv_last`` make the RRDB's own SR output (``sr_head``),
      used only when it is pretrained alone as an SR network (L1 loss) before the flow.
    * ``FlowUpsamplerNet``: per level a squeeze, ``transitions`` FlowSteps without coupling
      (actnorm 2C, ``InvertibleConv1x1`` C^2, not LU), K FlowSteps with
      ``CondAffineSeparatedAndCond`` (``fFeatures``: 320 -> 2C, ``fAffine``: C//2 + 320 ->
      2(C - C//2), each ``Conv2d`` 3x3 + actnorm, ``Conv2d`` 1x1 + actnorm, ``Conv2dZeros``
      3x3 with a log-scale per output), and a ``Split2d`` (``Conv2dZeros`` of the kept half)
      on the levels below ``L - 1`` only (``correct_splits`` off). Its conv ``f``
      (320 -> 96, 3x3) is built but never called (``unused``).
    """
    rrdb_in = (stack + 1) * nf
    dense = sum(_conv(nf + i * gc, gc if i < 4 else nf, 3) for i in range(5))
    doublings = scale.bit_length() - 1
    used_enc = (
        _conv(channels, nf, 3)
        + nb * 3 * dense
        + _conv(nf, nf, 3)
        + (doublings - 1) * _conv(nf, nf, 3)
    )
    # the last upconv, HRconv, conv_last; FlowUpsamplerNet.f
    sr_head = _conv(nf, nf, 3) + _conv(nf, nf, 3) + _conv(nf, channels, 3)
    unused = _conv(rrdb_in, 2 * 3 * 64 // 4, 3)

    def net(cin: int, cout: int) -> int:  # CondAffineSeparatedAndCond.F
        return (
            _conv(cin, hidden, 3, False)
            + 2 * hidden
            + _conv(hidden, hidden, 1, False)
            + 2 * hidden
            + _conv(hidden, cout, 3)
            + cout
        )

    flow, c = 0, channels
    for level in range(1, levels + 1):
        c *= 4
        flow += transitions * (2 * c + c * c)
        flow += steps * (
            2 * c + c * c + net(rrdb_in, 2 * c) + net(c // 2 + rrdb_in, 2 * (c - c // 2))
        )
        if level < levels - 1:
            keep = c - c // 2
            flow += _conv(keep, 2 * (c // 2), 3) + 2 * (c // 2)
            c = keep
    return {
        "encoder": used_enc,
        "sr_head": sr_head,
        "flow": flow,
        "unused": unused,
        "total": used_enc + sr_head + flow + unused,
    }


def fullglow_official(
    levels: int = 4,
    steps: int = 16,
    *,
    size: tuple[int, int] = (256, 256),
    channels: int = 3,
    hidden: int = 512,
    cond_hidden: int = 128,
    lu: bool = True,
) -> dict[str, int]:
    """Parameters of Full-Glow's official code (MoeinSorkhei/glow2, ``TwoGlows`` of a model
    named "improved", ``--do_lu``, ``n_block`` = levels, ``n_flow`` = steps), counted from
    its module definitions, split into the label-map flow (``left_glow``) and the image flow
    (``right_glow``). Both take ``channels x size`` inputs (the colour-coded label map and the
    photo), so the left activation that conditions a right step has the step's C x H x W.

    * Per level: a squeeze (C -> 4C, H/2, W/2), ``steps`` ``Flow`` modules, then a ``Block``
      prior ``ZeroInitConv2d`` (3x3 conv with bias and a per-channel scale): C/2 -> C after
      a split, C -> 2C on the last level.
    * Left ``Flow``: ``ActNorm`` (2C), ``InvConv1x1LU`` (L, U: C^2 each, log s: C; without
      ``lu`` a C x C matrix), ``AffineCoupling`` (3x3 conv C/2 -> 512, 1x1 512 -> 512,
      ``ZeroInitConv2d`` 512 -> C).
    * Right ``Flow``: ``ActNormConditional`` and the conditional ``InvConv1x1LU``, each a
      ``ConvNet`` (1x1 conv C -> 8, unpadded 3x3 convs 8 -> 4 -> 2) and a ``LinearNet``
      (2 (H-4)(W-4) -> 32 -> 64 -> 48 -> 2C, resp. 2C^2 + C with ``lu``, C^2 without); the
      ``AffineCoupling`` with ``CouplingCondNet`` (3x3 convs C -> 128 -> C) on a 3x3 conv
      input of C/2 + C channels.
    """
    c, (h, w) = channels, size
    left = right = 0
    for level in range(1, levels + 1):
        c, h, w = 4 * c, h // 2, w // 2
        w_out = 2 * c * c + c if lu else c * c
        vector = (
            _conv(c, 8, 1)
            + _conv(8, 4, 3)
            + _conv(4, 2, 3)
            + 2 * (h - 4) * (w - 4) * 32
            + 32
            + 32 * 64
            + 64
            + 64 * 48
            + 48
        )

        def coupling(c: int, extra: int) -> int:  # AffineCoupling.net, ZeroInitConv2d's scale
            return (
                _conv(c // 2 + extra, hidden, 3)
                + _conv(hidden, hidden, 1)
                + _conv(hidden, c, 3)
                + c
            )

        left += steps * (2 * c + w_out + coupling(c, 0))
        right += steps * (
            vector
            + 48 * 2 * c
            + 2 * c
            + vector
            + 48 * w_out
            + w_out
            + _conv(c, cond_hidden, 3)
            + _conv(cond_hidden, c, 3)
            + coupling(c, c)
        )
        prior = _conv(c, 2 * c, 3) + 2 * c if level == levels else _conv(c // 2, c, 3) + c
        left, right = left + prior, right + prior
        c //= 1 if level == levels else 2
    return {"label_flow": left, "image_flow": right, "total": left + right}
