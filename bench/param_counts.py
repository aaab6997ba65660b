"""Parameter counts of the paper's models as flowspec builds them, against the paper's column.

    python bench/param_counts.py            # print the table, update docs/paper-models.md
    python bench/param_counts.py --check    # exit 1 if docs/paper-models.md is out of date

Counts come from the layer registry (``flowspec.kinds.count_params``: analytic, no torch;
``tests/test_paper_specs.py`` checks them against the built torch modules). The paper's
column is headed "Parameters (MB)"; docs/paper-models.md explains why it is read here as
millions of parameters, using the counts of the official code that tests/official_counts.py
reconstructs from its module definitions (mARFlow's, SRFlow's and Full-Glow's; the tests
hold flowspec's counts to the same functions).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flowspec.api import load
from flowspec.kinds import count_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from official_counts import (  # the oracles the tests use
    fullglow_official,
    marflow_official,
    marflow_prior_official,
    srflow_official,
)

ROOT = Path(__file__).resolve().parents[1]

#: (table, paper's method, levels-steps[-channels], spec file, flow, paper's number as printed)
ROWS: list[tuple[str, str, str, str, str, str | None]] = [
    ("2", "Glow", "3-32-512", "glow_mnist.flow", "glow_mnist", None),
    ("2", "mARFlow", "3-4-96", "attnflow_mnist.flow", "marflow_mnist", "46.01"),
    ("2", "AttnFlow-iMap", "3-4-96", "attnflow_mnist.flow", "attnflow_imap_mnist", "46.03"),
    ("2", "AttnFlow-iSDP", "3-4-96", "attnflow_mnist.flow", "attnflow_isdp_mnist", "46.25"),
    ("2", "AttnFlow-iMap", "3-2-96", "attnflow_mnist.flow", "attnflow_imap_mnist_3_2_96", "23.78"),
    ("2", "AttnFlow-iSDP", "3-2-96", "attnflow_mnist.flow", "attnflow_isdp_mnist_3_2_96", "23.89"),
    ("2", "AttnFlow-iMap", "3-2-48", "attnflow_mnist.flow", "attnflow_imap_mnist_3_2_48", "8.94"),
    ("2", "AttnFlow-iSDP", "3-2-48", "attnflow_mnist.flow", "attnflow_isdp_mnist_3_2_48", "9.05"),
    ("3", "Glow", "3-32-512", "attnflow_cifar10.flow", "glow_cifar10", None),
    ("3", "mARFlow", "3-4-96", "attnflow_cifar10.flow", "marflow_cifar10", "46.01"),
    ("3", "mARFlow", "3-4-256", "attnflow_cifar10.flow", "marflow_cifar10_3_4_256", "252.77"),
    ("3", "AttnFlow-iMap", "3-4-96", "attnflow_cifar10.flow", "attnflow_imap_cifar10", "46.03"),
    ("3", "AttnFlow-iSDP", "3-4-96", "attnflow_cifar10.flow", "attnflow_isdp_cifar10", "46.25"),
    (
        "3",
        "AttnFlow-iMap",
        "3-4-256",
        "attnflow_cifar10.flow",
        "attnflow_imap_cifar10_3_4_256",
        "252.79",
    ),
    (
        "3",
        "AttnFlow-iSDP",
        "3-4-256",
        "attnflow_cifar10.flow",
        "attnflow_isdp_cifar10_3_4_256",
        "253.01",
    ),
    ("4", "SRFlow", "1-1", "srflow_celeba.flow", "srflow_1_1", "6.622"),
    ("4", "SRFlow", "2-8", "srflow_celeba.flow", "srflow_2_8", "13.25"),
    ("4", "cAttnFlow-iMap", "1-1", "srflow_celeba.flow", "cattnflow_imap_sr_1_1", "6.623"),
    ("4", "cAttnFlow-iSDP", "1-1", "srflow_celeba.flow", "cattnflow_isdp_sr_1_1", "6.630"),
    ("4", "cAttnFlow-iMap", "2-8", "srflow_celeba.flow", "cattnflow_imap_sr", "13.30"),
    ("4", "cAttnFlow-iSDP", "2-8", "srflow_celeba.flow", "cattnflow_isdp_sr", "13.93"),
    ("5", "Full-Glow", "4-16", "fullglow_cityscapes.flow", "fullglow", "155.33"),
    (
        "5",
        "cAttnFlow-iMap",
        "2-8",
        "fullglow_cityscapes.flow",
        "cattnflow_imap_cityscapes",
        "34.68",
    ),
    (
        "5",
        "cAttnFlow-iSDP",
        "2-8",
        "fullglow_cityscapes.flow",
        "cattnflow_isdp_cityscapes",
        "34.70",
    ),
]
BEGIN, END = "<!-- params:begin -->", "<!-- params:end -->"


def count(file: str, flow: str) -> tuple[int, int, int]:
    """(total, condition encoders, attention layers) of one flow of ``specs/FILE``."""
    spec = load(ROOT / "specs" / file, flow)
    per = count_params(spec)
    enc = sum(n for k, n in per.items() if k.startswith("encoder:"))
    attn = sum(per[layer.path] for layer in spec.layers if layer.kind.startswith("attention"))
    return sum(per.values()), enc, attn


def table() -> str:
    lines = [
        (
            '| table | paper\'s model | L-K[-C] | flow (`specs/`) | paper "MB" '
            "| ours: M params | ours: MB (float32) | ours / paper | of which encoder "
            "| of which attention |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for tab, method, size, file, flow, paper in ROWS:
        n, enc, attn = count(file, flow)
        ratio = f"{n / 1e6 / float(paper):.2f}" if paper else "—"
        lines.append(
            f"| {tab} | {method} | {size} | `{file}` `{flow}` | "
            f"{paper if paper is not None else '–'} | {n / 1e6:.3f} | {4 * n / 1e6:.2f} | "
            f"{ratio} | {enc / 1e6:.3f} | {attn / 1e6:.4f} |"
        )
    return "\n".join(lines)


def official() -> str:
    lines = [
        (
            "| mARFlow L-K-C | official code: flow | + ConvLSTM prior | = total, M "
            "| paper's column | paper / official | ours (`marflow_cifar10`) "
            "| ours / official |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k, h, paper in ((4, 96, 46.01), (4, 256, 252.77), (2, 96, 23.78), (2, 48, 8.94)):
        flow, prior = marflow_official(3, h, steps=k), marflow_prior_official(3)
        n = flow + prior
        spec = load(
            ROOT / "specs" / "attnflow_cifar10.flow", "marflow_cifar10", {"K": k, "hidden": h}
        )
        ours = sum(count_params(spec).values())
        lines.append(
            f"| 3-{k}-{h} | {flow:,} | {prior:,} | {n / 1e6:.3f} | {paper} | "
            f"{paper * 1e6 / n:.4f} | {ours:,} | {ours / n:.5f} |"
        )
    return "\n".join(lines)


def srflow_rows() -> str:
    lines = [
        (
            "| SRFlow L-K | official code, all modules | paper's column | of which the RRDB's "
            "SR head (pretraining) | of which never used (`f`) | official code, used "
            "| ours (`srflow_celeba.flow`) | ours / used | ours / paper |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for levels, steps, paper, flow in (
        (1, 1, "6.622", "srflow_1_1"),
        (2, 8, "13.25", "srflow_2_8"),
    ):
        n = srflow_official(levels, steps)
        used = n["total"] - n["unused"]
        ours = count("srflow_celeba.flow", flow)[0]
        lines.append(
            f"| {levels}-{steps} | {n['total']:,} | {paper} | {n['sr_head']:,} | "
            f"{n['unused']:,} | {used:,} | {ours:,} | {ours / used:.4f} | "
            f"{ours / 1e6 / float(paper):.4f} |"
        )
    return "\n".join(lines)


def fullglow_rows() -> str:
    lines = [
        (
            "| Full-Glow L-K | official code: label-map flow | image flow | total "
            "| paper's column | ours (`fullglow_cityscapes.flow`) | ours / official "
            "| ours / paper |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for levels, steps, paper, flow in (
        (4, 16, "155.33", "fullglow"),
        (2, 8, "34.68", "cattnflow_imap_cityscapes"),
    ):
        n = fullglow_official(levels, steps)
        ours, _, attn = count("fullglow_cityscapes.flow", flow)
        ours -= attn  # the backbone alone
        lines.append(
            f"| {levels}-{steps} | {n['label_flow']:,} | {n['image_flow']:,} | "
            f"{n['total']:,} | {paper} | {ours:,} | {ours / n['total']:.4f} | "
            f"{ours / 1e6 / float(paper):.4f} |"
        )
    return "\n".join(lines)


def render() -> str:
    return (
        f"{BEGIN}\nGenerated by `python bench/param_counts.py`.\n\n{table()}\n\n"
        f"{official()}\n\n{srflow_rows()}\n\n{fullglow_rows()}\n{END}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--doc", default="docs/paper-models.md")
    p.add_argument(
        "--check", action="store_true", help="exit 1 when the doc's generated block is out of date"
    )
    a = p.parse_args(argv)
    block = render()
    print(block)
    doc = ROOT / a.doc
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        new = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
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
