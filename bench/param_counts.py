"""Parameter counts of the paper's models as flowspec builds them, against the paper's column.

    python bench/param_counts.py            # print the table, update docs/paper-models.md
    python bench/param_counts.py --check    # exit 1 if docs/paper-models.md is out of date

Counts come from the layer registry (``flowspec.kinds.count_params``: analytic, no torch;
``tests/test_paper_specs.py`` checks them against the built torch modules). The paper's
column is headed "Parameters (MB)"; docs/paper-models.md explains why it is read here as
millions of parameters, using :func:`marflow_official`, a count of mARFlow's official code
(visinf/mar-scf) reconstructed from its module definitions, and :func:`srflow_official`,
the same for SRFlow's (andreas128/SRFlow), and :func:`fullglow_official` for Full-Glow's
(MoeinSorkhei/glow2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowspec.api import load
from flowspec.kinds import count_params

ROOT = Path(__file__).resolve().parents[1]

#: (table, paper's method, levels-steps[-channels], spec file, flow, paper's number as printed)
ROWS: list[tuple[str, str, str, str, str, str | None]] = [
    ("2", "Glow", "3-32-512", "glow_mnist.flow", "glow_mnist", None),
    ("2", "mARFlow", "3-4-96", "attnflow_mnist.flow", "marflow_mnist", "46.01"),
    ("2", "AttnFlow-iMap", "3-4-96", "attnflow_mnist.flow", "attnflow_imap_mnist", "46.03"),
    ("2", "AttnFlow-iSDP", "3-4-96", "attnflow_mnist.flow", "attnflow_isdp_mnist", "46.25"),
    ("2", "AttnFlow-iMap", "3-2-96", "attnflow_mnist.flow", "attnflow_imap_mnist_3_2_96",
     "23.78"),
    ("2", "AttnFlow-iSDP", "3-2-96", "attnflow_mnist.flow", "attnflow_isdp_mnist_3_2_96",
     "23.89"),
    ("2", "AttnFlow-iMap", "3-2-48", "attnflow_mnist.flow", "attnflow_imap_mnist_3_2_48",
     "8.94"),
    ("2", "AttnFlow-iSDP", "3-2-48", "attnflow_mnist.flow", "attnflow_isdp_mnist_3_2_48",
     "9.05"),
    ("3", "Glow", "3-32-512", "attnflow_cifar10.flow", "glow_cifar10", None),
    ("3", "mARFlow", "3-4-96", "attnflow_cifar10.flow", "marflow_cifar10", "46.01"),
    ("3", "mARFlow", "3-4-256", "attnflow_cifar10.flow", "marflow_cifar10_3_4_256", "252.77"),
    ("3", "AttnFlow-iMap", "3-4-96", "attnflow_cifar10.flow", "attnflow_imap_cifar10", "46.03"),
    ("3", "AttnFlow-iSDP", "3-4-96", "attnflow_cifar10.flow", "attnflow_isdp_cifar10", "46.25"),
    ("3", "AttnFlow-iMap", "3-4-256", "attnflow_cifar10.flow", "attnflow_imap_cifar10_3_4_256",
     "252.79"),
    ("3", "AttnFlow-iSDP", "3-4-256", "attnflow_cifar10.flow", "attnflow_isdp_cifar10_3_4_256",
     "253.01"),
    ("4", "SRFlow", "1-1", "srflow_celeba.flow", "srflow_1_1", "6.622"),
    ("4", "SRFlow", "2-8", "srflow_celeba.flow", "srflow_2_8", "13.25"),
    ("4", "cAttnFlow-iMap", "1-1", "srflow_celeba.flow", "cattnflow_imap_sr_1_1", "6.623"),
    ("4", "cAttnFlow-iSDP", "1-1", "srflow_celeba.flow", "cattnflow_isdp_sr_1_1", "6.630"),
    ("4", "cAttnFlow-iMap", "2-8", "srflow_celeba.flow", "cattnflow_imap_sr", "13.30"),
    ("4", "cAttnFlow-iSDP", "2-8", "srflow_celeba.flow", "cattnflow_isdp_sr", "13.93"),
    ("5", "Full-Glow", "4-16", "fullglow_cityscapes.flow", "fullglow", "155.33"),
    ("5", "cAttnFlow-iMap", "2-8", "fullglow_cityscapes.flow", "cattnflow_imap_cityscapes",
     "34.68"),
    ("5", "cAttnFlow-iSDP", "2-8", "fullglow_cityscapes.flow", "cattnflow_isdp_cityscapes",
     "34.70"),
]
BEGIN, END = "<!-- params:begin -->", "<!-- params:end -->"


def count(file: str, flow: str) -> tuple[int, int, int]:
    """(total, condition encoders, attention layers) of one flow of ``specs/FILE``."""
    spec = load(ROOT / "specs" / file, flow)
    per = count_params(spec)
    enc = sum(n for k, n in per.items() if k.startswith("encoder:"))
    attn = sum(per[layer.path] for layer in spec.layers if layer.kind.startswith("attention"))
    return sum(per.values()), enc, attn


def marflow_official(channels: int, hidden: int, levels: int = 3, steps: int = 4,
                     blocks: int = 10, components: int = 32) -> int:
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
    block = (wn_conv(2 * h, h, 3) + wn_conv(2 * h, 2 * h, 1) + 2 * h  # gated conv, norm
             + 3 * h * h + 3 * h  # attention in-projection (no bias) and its gain
             + 2 * h * h + 2 * h + 2 * h  # attention gate and its gain
             + 2 * h)  # second layer norm
    total = 0
    for level in range(levels):
        c *= 4
        half = c // 2
        net = (wn_conv(half, h, 3) + blocks * block + wn_conv(h, half * (2 + 3 * components), 3)
               + 2 * half)  # weight-normalised rescale of the scale
        total += steps * (2 * c + 2 * c * c + c + net)
        if level < levels - 1:
            c //= 2
    return total


def marflow_prior_official(channels: int, size: int = 32, levels: int = 3, hidden: int = 32,
                           layers: int = 3) -> int:
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
        kept = channels * 2 ** level  # the half the flow keeps at this level's split
        total += (_conv(1 if top else 5, hidden, k)
                  + layers * (2 * 4 * hidden * hidden * k * k + 2 * 4 * hidden)
                  + _conv(hidden, 2, 3))
        if not top:
            total += _conv(kept, 32, 5) + _conv(32, 4, 5)
    return total


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def srflow_official(levels: int, steps: int, *, scale: int = 8, nf: int = 64, nb: int = 8,
                    gc: int = 32, stack: int = 4, hidden: int = 64, transitions: int = 2,
                    channels: int = 3) -> dict[str, int]:
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
    used_enc = _conv(channels, nf, 3) + nb * 3 * dense + _conv(nf, nf, 3) \
        + (doublings - 1) * _conv(nf, nf, 3)
    # the last upconv, HRconv, conv_last; FlowUpsamplerNet.f
    sr_head = _conv(nf, nf, 3) + _conv(nf, nf, 3) + _conv(nf, channels, 3)
    unused = _conv(rrdb_in, 2 * 3 * 64 // 4, 3)

    def net(cin: int, cout: int) -> int:  # CondAffineSeparatedAndCond.F
        return (_conv(cin, hidden, 3, False) + 2 * hidden + _conv(hidden, hidden, 1, False)
                + 2 * hidden + _conv(hidden, cout, 3) + cout)

    flow, c = 0, channels
    for level in range(1, levels + 1):
        c *= 4
        flow += transitions * (2 * c + c * c)
        flow += steps * (2 * c + c * c + net(rrdb_in, 2 * c)
                         + net(c // 2 + rrdb_in, 2 * (c - c // 2)))
        if level < levels - 1:
            keep = c - c // 2
            flow += _conv(keep, 2 * (c // 2), 3) + 2 * (c // 2)
            c = keep
    return {"encoder": used_enc, "sr_head": sr_head, "flow": flow, "unused": unused,
            "total": used_enc + sr_head + flow + unused}


def table() -> str:
    lines = [("| table | paper's model | L-K[-C] | flow (`specs/`) | paper \"MB\" "
              "| ours: M params | ours: MB (float32) | ours / paper | of which encoder "
              "| of which attention |"),
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for tab, method, size, file, flow, paper in ROWS:
        n, enc, attn = count(file, flow)
        ratio = f"{n / 1e6 / float(paper):.2f}" if paper else "—"
        lines.append(
            f"| {tab} | {method} | {size} | `{file}` `{flow}` | "
            f"{paper if paper is not None else '–'} | {n / 1e6:.3f} | {4 * n / 1e6:.2f} | "
            f"{ratio} | {enc / 1e6:.3f} | {attn / 1e6:.4f} |")
    return "\n".join(lines)


def official() -> str:
    lines = [("| mARFlow L-K-C | official code: flow | + ConvLSTM prior | = total, M "
              "| paper's column | paper / official | ours (`marflow_cifar10`) "
              "| ours / official |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (k, h, paper) in ((4, 96, 46.01), (4, 256, 252.77), (2, 96, 23.78), (2, 48, 8.94)):
        flow, prior = marflow_official(3, h, steps=k), marflow_prior_official(3)
        n = flow + prior
        spec = load(ROOT / "specs" / "attnflow_cifar10.flow", "marflow_cifar10",
                    {"K": k, "hidden": h})
        ours = sum(count_params(spec).values())
        lines.append(f"| 3-{k}-{h} | {flow:,} | {prior:,} | {n / 1e6:.3f} | {paper} | "
                     f"{paper * 1e6 / n:.4f} | {ours:,} | {ours / n:.5f} |")
    return "\n".join(lines)


def srflow_rows() -> str:
    lines = [("| SRFlow L-K | official code, all modules | paper's column | of which the RRDB's "
              "SR head (pretraining) | of which never used (`f`) | official code, used "
              "| ours (`srflow_celeba.flow`) | ours / used | ours / paper |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (levels, steps, paper, flow) in ((1, 1, "6.622", "srflow_1_1"),
                                         (2, 8, "13.25", "srflow_2_8")):
        n = srflow_official(levels, steps)
        used = n["total"] - n["unused"]
        ours = count("srflow_celeba.flow", flow)[0]
        lines.append(f"| {levels}-{steps} | {n['total']:,} | {paper} | {n['sr_head']:,} | "
                     f"{n['unused']:,} | {used:,} | {ours:,} | {ours / used:.4f} | "
                     f"{ours / 1e6 / float(paper):.4f} |")
    return "\n".join(lines)


def fullglow_official(levels: int = 4, steps: int = 16, *, size: tuple[int, int] = (256, 256),
                      channels: int = 3, hidden: int = 512, cond_hidden: int = 128,
                      lu: bool = True) -> dict[str, int]:
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
        vector = (_conv(c, 8, 1) + _conv(8, 4, 3) + _conv(4, 2, 3)
                  + 2 * (h - 4) * (w - 4) * 32 + 32 + 32 * 64 + 64 + 64 * 48 + 48)

        def coupling(c: int, extra: int) -> int:  # AffineCoupling.net, ZeroInitConv2d's scale
            return (_conv(c // 2 + extra, hidden, 3) + _conv(hidden, hidden, 1)
                    + _conv(hidden, c, 3) + c)

        left += steps * (2 * c + w_out + coupling(c, 0))
        right += steps * (vector + 48 * 2 * c + 2 * c + vector + 48 * w_out + w_out
                          + _conv(c, cond_hidden, 3) + _conv(cond_hidden, c, 3) + coupling(c, c))
        prior = _conv(c, 2 * c, 3) + 2 * c if level == levels else _conv(c // 2, c, 3) + c
        left, right = left + prior, right + prior
        c //= 1 if level == levels else 2
    return {"label_flow": left, "image_flow": right, "total": left + right}


def fullglow_rows() -> str:
    lines = [("| Full-Glow L-K | official code: label-map flow | image flow | total "
              "| paper's column | ours (`fullglow_cityscapes.flow`) | ours / official "
              "| ours / paper |"), "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for levels, steps, paper, flow in ((4, 16, "155.33", "fullglow"),
                                       (2, 8, "34.68", "cattnflow_imap_cityscapes")):
        n = fullglow_official(levels, steps)
        ours, _, attn = count("fullglow_cityscapes.flow", flow)
        ours -= attn  # the backbone alone
        lines.append(f"| {levels}-{steps} | {n['label_flow']:,} | {n['image_flow']:,} | "
                     f"{n['total']:,} | {paper} | {ours:,} | {ours / n['total']:.4f} | "
                     f"{ours / 1e6 / float(paper):.4f} |")
    return "\n".join(lines)


def render() -> str:
    return (f"{BEGIN}\nGenerated by `python bench/param_counts.py`.\n\n{table()}\n\n"
            f"{official()}\n\n{srflow_rows()}\n\n{fullglow_rows()}\n{END}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--doc", default="docs/paper-models.md")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when the doc's generated block is out of date")
    a = p.parse_args(argv)
    block = render()
    print(block)
    doc = ROOT / a.doc
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        new = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        new = (text.rstrip("\n") + "\n\n" if text else "") + block + "\n"
    if a.check:
        if new != text:
            print(f"{a.doc} is out of date: run python bench/param_counts.py", file=sys.stderr)
            return 1
        return 0
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
