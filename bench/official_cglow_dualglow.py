"""Parameter counts of glow2's C-Glow and Dual-Glow (MoeinSorkhei/glow2), reconstructed from
their module definitions, against flowspec's `cglow_v1`, `cglow_v2` and `dualglow`
(specs/fullglow_cityscapes.flow).

    python bench/official_cglow_dualglow.py

C-Glow (``src/models/c_glow``, PyTorch; configurations in ``interface_c_glow.py``):
``c_glow_v2`` (3 levels x 8 steps, condition widths 52 / 26, coupling 104) and ``c_glow_v3``
(``n_block`` x ``n_flow`` from the command line; 4 x 16 for the paper, condition widths 20 /
10, coupling 512). Dual-Glow (``src/models/dual_glow``, TensorFlow, the authors' 3-D code run
on images as volumes of depth 1).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

#: interface_c_glow.py: (levels, steps, x_hidden_channels, x_hidden_size, y_hidden_channels)
CGLOW = {"c_glow_v2": (3, 8, 52, 26, 104), "c_glow_v3": (4, 16, 20, 10, 512)}


def _conv(cin: int, cout: int, k: int, bias: bool = True) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def cglow_official(
    levels: int, steps: int, xc: int, xs: int, yh: int, size: int = 256
) -> dict[str, int]:
    """Parameters of glow2's ``CondGlowModel`` by module (3-channel condition and target at
    ``size`` x ``size``).

    Per step at a level with ``C`` channels and side ``s = size / 2^l`` (l from 1):
    ``CondActNorm`` and ``Cond1x1Conv`` each own a condition network: three stride-2
    ``Conv2dResize`` (2x2 kernels, 3 -> xc -> xc -> xc, size/8 left), flattened, then
    linear layers to ``xs``, ``xs`` and ``2C`` (actnorm) or ``C^2`` (the whole matrix).
    ``CondAffineCoupling``: a 3x3 conv of the condition to 16 channels, a ``Conv2dResize``
    from ``size`` to ``s`` (kernel and stride ``2^l``) to ``C/2`` channels, a 3x3 conv
    ``C/2 -> C/2``; then Glow's net on ``[condition, x1]`` (``C`` channels): 3x3 conv without
    bias + actnorm, 1x1 conv without bias + actnorm, zero 3x3 conv to ``C`` with ``logs`` and
    ``newbias``. ``Split2d``: a 3x3 conv ``C/2 -> C``. The top's ``new_mean``/``new_logs``
    are parameters although ``learn_top`` is False (never used).
    """
    out = {"cond_actnorm": 0, "cond_invconv": 0, "coupling": 0, "split": 0, "top": 0}
    resize = _conv(3, xc, 2) + 2 * _conv(xc, xc, 2)
    flat = xc * (size // 8) ** 2
    c, s = 3, size
    for level in range(1, levels + 1):
        c, s = 4 * c, s // 2
        for _ in range(steps):
            mlp = flat * xs + xs + xs * xs + xs
            out["cond_actnorm"] += resize + mlp + xs * 2 * c + 2 * c
            out["cond_invconv"] += resize + mlp + xs * c * c + c * c
            half = c // 2
            out["coupling"] += (
                _conv(3, 16, 3)
                + _conv(16, half, 2**level)
                + _conv(half, half, 3)
                + _conv(c, yh, 3, bias=False)
                + 2 * yh
                + _conv(yh, yh, 1, bias=False)
                + 2 * yh
                + _conv(yh, c, 3)
                + 2 * c
            )
        if level < levels:
            out["split"] += _conv(c // 2, c, 3)
            c //= 2
    out["top"] = 2 * c * s * s
    return out


def dualglow_official(
    levels: int = 4, steps: int = 16, width: int = 512, size: int = 256
) -> dict[str, int]:
    """Parameters of glow2's Dual-Glow (``hps``: ``n_l = 1``, invconv, affine coupling,
    ``learntop``) by part; ``*_dead`` are the weights that only ever multiply zeros.

    The code is 3-D: every 3x3 convolution is 3x3x3 over a volume of depth 1, edge-padded
    (an extra input channel that is 1 on the padding). Of its ``27 (n + 1) m`` weights, the
    ``18 n m`` of the data channels in the two off-centre depth slices see only zero padding;
    the pad channel's 27 m all see ones. ``condFun``'s 5x5x5 convolution (zero padding) has
    100 of every 125 weights off-centre.
    """
    out = {
        "steps": 0,
        "steps_dead": 0,
        "split_priors": 0,
        "split_priors_dead": 0,
        "top_priors": 0,
        "top_priors_dead": 0,
    }
    c = 3 * 4
    for level in range(levels):
        for _ in range(steps):
            half = c // 2
            out["steps"] += 2 * (2 * c + c * c)  # actnorm + invconv, both flows
            net = (
                27 * (half + 1) * width
                + 2 * width
                + width * width
                + 2 * width
                + 27 * (width + 1) * c
                + 2 * c
            )
            out["steps"] += 2 * net
            out["steps_dead"] += 2 * (18 * half * width + 18 * width * c)
        if level < levels - 1:  # the target's split prior; the source's is N(0, I)
            half = c // 2
            out["split_priors"] += 125 * half * half
            out["split_priors_dead"] += 100 * half * half
            c = 4 * half
    n = c  # top latent channels; both tops learn a conv of zeros (+ pad), the target's
    top = 27 * (2 * n + 1) * 2 * n + 2 * 2 * n  # adds condFun on the source's top latent
    out["top_priors"] = 2 * top + 125 * n * n
    out["top_priors_dead"] = 2 * 18 * 2 * n * 2 * n + 100 * n * n
    return out


def main() -> None:
    from param_counts import count

    for (name, cfg), flow in zip(CGLOW.items(), ("cglow_v1", "cglow_v2")):
        parts = cglow_official(*cfg)
        total = sum(parts.values())
        ours = count("fullglow_cityscapes.flow", flow)[0]
        print(
            f"{name} {cfg[0]}-{cfg[1]}: {total:,} {parts}; ours ({flow}) {ours:,} "
            f"({ours / total:.4f})"
        )
    parts = dualglow_official()
    total = sum(v for k, v in parts.items() if not k.endswith("_dead"))
    dead = sum(v for k, v in parts.items() if k.endswith("_dead"))
    ours = count("fullglow_cityscapes.flow", "dualglow")[0]
    print(
        f"dualglow 4-16: official {total:,}, of which never touch data {dead:,}; "
        f"live {total - dead:,}; ours {ours:,} ({ours / (total - dead):.4f} of live)"
    )


if __name__ == "__main__":
    main()
