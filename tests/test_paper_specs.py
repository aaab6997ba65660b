"""The paper's models as shipped specs: every flow trains, and parameter counts are exact.

* Every flow of every ``specs/*.flow`` trains a few steps at reduced size through
  ``runtime.train`` on real built-in data: its own data when the spec names a built-in
  set, else a built-in stand-in of the same task (``photos`` for CIFAR-10, ``faces`` for
  CelebA, ``fashion-seg`` for Cityscapes). The loss stays finite and the run folder holds
  its summary.
* The analytic parameter count of every layer kind and condition encoder
  (``flowspec.kinds``: no torch) equals the built torch module's, over several shapes and
  arguments; and so does the whole-model count of every shipped flow.
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import typing
from pathlib import Path

import pytest
import torch
from numerics import encoder_modules, layer_modules
from pydantic import ValidationError

import flowspec
import runtime
from flowspec.api import analyze
from flowspec.kinds import ENCODERS, KINDS, NETS, PRIORS, Issue, count_params

ENCODER_MODULES = encoder_modules()
MODULES = layer_modules()

ROOT = Path(__file__).resolve().parents[1]

#: The same architectures, small: one step per level, narrow networks, 16x16 inputs.
SMALL = {
    "L": 2,
    "K": 1,
    "hidden": 8,
    "components": 2,
    "size": 16,
    "scale": 4,
    "height": 16,
    "width": 16,
    "features": 8,
    "blocks": 1,
}
#: Data for specs whose data set is not shipped (the loader needs a local copy): a built-in
#: stand-in of the same task, shaped to the small input; plus the overrides that fit it.
STAND_IN = {
    "cifar10": ("photos pad=0 resize=true limit=256", {}),
    "images": ("faces resize=true", {"channels": 1}),  # CelebA -> the bundled LFW faces
    "cityscapes": ("fashion-seg resize=true channels=3 pad=0 limit=256", {"classes": 11}),
}
#: Few, small steps and a small validation: this file must stay well under 90 s.
TINY = {"steps": 2, "batch": 4, "val_images": 8, "sr_images": 2, "warmup": 0}


def _flows() -> list[tuple[str, str]]:
    out = []
    for path in sorted(glob.glob(str(ROOT / "specs" / "*.flow"))):
        specs, diags = analyze(path, all_flows=True)
        assert not [d for d in diags if d.severity == "error"], path
        out += [(path, s.name) for s in specs]
    return out


FLOWS = _flows()
IDS = [f"{Path(p).stem}:{n}" for p, n in FLOWS]
#: flows that model another flow's condition (encoder=flow(NAME)): trained through it
CONDITION_FLOWS = {
    c.flow.name for p, n in FLOWS for c in flowspec.load(p, n).conditions if c.flow is not None
}


def small_overrides(path: str, name: str) -> tuple[dict, str | None]:
    """(overrides, data) that train ``name`` small on built-in data."""
    full = flowspec.load(path, name)
    over = {k: v for k, v in SMALL.items() if k in full.params}
    data_line = full.train.get("data")
    data = None
    if data_line is not None and str(data_line.value) in STAND_IN:
        data, extra = STAND_IN[str(data_line.value)]
        over.update({k: v for k, v in extra.items() if k in full.params})
    elif data_line is not None and flowspec.load(path, name, over).input != full.input:
        data = f"{data_line.value} resize=true limit=256"  # its own set, scaled down
    return over, data


def test_the_paper_tables_are_all_there() -> None:
    names = {n for _, n in FLOWS}
    table2 = {
        "glow_mnist",
        "marflow_mnist",
        "attnflow_imap_mnist",
        "attnflow_isdp_mnist",
        "attnflow_imap_mnist_3_2_96",
        "attnflow_isdp_mnist_3_2_96",
        "attnflow_imap_mnist_3_2_48",
        "attnflow_isdp_mnist_3_2_48",
    }
    table3 = {
        "glow_cifar10",
        "marflow_cifar10",
        "marflow_cifar10_3_4_256",
        "attnflow_imap_cifar10",
        "attnflow_isdp_cifar10",
        "attnflow_imap_cifar10_3_4_256",
        "attnflow_isdp_cifar10_3_4_256",
    }
    table4 = {
        "srflow_1_1",
        "srflow_2_8",
        "cattnflow_imap_sr_1_1",
        "cattnflow_isdp_sr_1_1",
        "cattnflow_imap_sr",
        "cattnflow_isdp_sr",
    }
    table5 = {
        "fullglow",
        "cattnflow_imap_cityscapes",
        "cattnflow_isdp_cityscapes",
        "cglow_v1",
        "cglow_v2",
        "dualglow",
    }
    assert table2 | table3 | table4 | table5 | {"position_imap", "heads_isdp"} <= names


@pytest.mark.parametrize(
    "pos,where",
    [
        (1, ("attention", "actnorm")),
        (2, ("actnorm", "attention")),
        (3, ("invconv", "attention")),
        (4, ("coupling", "attention")),
    ],
)
def test_position_ablation_puts_imap_where_the_paper_says(pos: int, where: tuple) -> None:
    spec = flowspec.load(ROOT / "specs/ablations.flow", "position_imap", {"pos": pos, "K": 1})
    steps: dict[tuple, list[str]] = {}
    for layer in spec.layers:
        if layer.step is not None:
            steps.setdefault((layer.level, layer.step), []).append(layer.kind.split(".")[0])
    assert len(steps) == 3
    for kinds in steps.values():
        assert kinds.count("attention") == 1
        i = kinds.index(where[0])
        assert kinds[i + 1] == where[1], kinds
    attn = [layer for layer in spec.layers if layer.kind == "attention.imap"]
    assert len(attn) == 3 and all(layer.inserted for layer in attn)


@pytest.mark.parametrize("heads", [1, 3, 5, 7])
def test_heads_ablation(heads: int) -> None:
    spec = flowspec.load(ROOT / "specs/ablations.flow", "heads_isdp", {"heads": heads})
    attn = [layer for layer in spec.layers if layer.kind == "attention.isdp"]
    assert len(attn) == 12 and {layer.args["heads"] for layer in attn} == {heads}


def test_cifar_flows_are_the_mnist_flows_with_three_channels() -> None:
    for mnist, cifar in (
        ("marflow_mnist", "marflow_cifar10"),
        ("attnflow_isdp_mnist", "attnflow_isdp_cifar10"),
    ):
        a = flowspec.load(ROOT / "specs/attnflow_mnist.flow", mnist, {"channels": 3})
        b = flowspec.load(ROOT / "specs/attnflow_cifar10.flow", cifar)
        assert a.digest() == b.digest()
        assert b.train["data"].value == "cifar10"


@pytest.mark.parametrize("path,name", FLOWS, ids=IDS)
def test_every_flow_trains_a_few_steps(path: str, name: str, tmp_path: Path) -> None:
    if name in CONDITION_FLOWS and "data" not in flowspec.load(path, name).train:
        pytest.skip(
            "a condition's flow without data of its own: trained by the flows it conditions"
        )
    over, data = small_overrides(path, name)
    out = tmp_path / "run"
    torch.set_num_threads(1)
    pretrain = {"pretrain_steps": 2} if "pretrain" in flowspec.load(path, name).train else {}
    result = runtime.train(
        path,
        flow=name,
        overrides=over,
        data=data,
        out=out,
        device="cpu",
        seed=0,
        progress=False,
        **TINY,
        **pretrain,
    )
    assert out.is_dir() and (out / "summary.json").is_file()
    losses = [
        json.loads(line)["loss"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("kind") == "train"
    ]
    assert len(losses) == TINY["steps"] and all(math.isfinite(v) for v in losses)
    assert result.val_bpd is not None and math.isfinite(result.val_bpd)
    assert result.summary["parameters"] == sum(count_params(result.model.spec).values())


# ---- analytic parameter counts ------------------------------------------------------------
SHAPES = [(4, 8, 8), (6, 4, 4), (3, 4, 6), (16, 2, 2)]
SMALL_INTS = {
    "hidden": [3, 7],
    "components": [1, 3],
    "heads": [1, 2],
    "patches": [1, 4],
    "factor": [2],
}


def _variants(kind) -> list[dict]:
    """Defaults, then each argument varied alone over a few values (a one-at-a-time design)."""
    fields = kind.Args.model_fields
    out = [{}]
    for name, f in fields.items():
        if name == "on":
            continue
        ann = f.annotation
        if typing.get_origin(ann) is typing.Literal:
            values = list(typing.get_args(ann))
        elif ann is bool:
            values = [True, False]
        elif name == "net":
            values = sorted(NETS)
        else:
            values = SMALL_INTS.get(name, [])
        out += [{name: v} for v in values]
    return out


#: layer kinds and priors (as ``prior.KEY``): both count parameters from (shape, args, cond)
COUNTED = {**KINDS, **{f"prior.{key}": p for key, p in PRIORS.items()}}


def _cases():
    for key, kind in sorted(COUNTED.items()):
        conds = {"never": [None], "optional": [None, 5], "required": [5]}[kind.conditional]
        for shape, variant, cond in itertools.product(SHAPES, _variants(kind), conds):
            args = kind.Args(**variant)
            if key in KINDS and (
                isinstance(kind.out_shape(shape, args), Issue) or kind.issues(shape, args)
            ):
                continue
            yield key, shape, args.model_dump(), cond


CASES = list(_cases())


def test_every_kind_has_count_cases() -> None:
    assert {key for key, *_ in CASES} == set(COUNTED)


@pytest.mark.parametrize("key", sorted(COUNTED))
def test_analytic_count_equals_the_torch_module(key: str) -> None:
    cases = [c for c in CASES if c[0] == key]
    for _, shape, args, cond in cases:
        if key.startswith("prior."):
            args = {**args, "on": "c" if cond else None}
        module = MODULES[key](shape, args, cond)
        real = sum(p.numel() for p in module.parameters())
        assert COUNTED[key].params(shape, args, cond) == real, (shape, args, cond)


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_analytic_encoder_count(name: str) -> None:
    for shape, blocks, features in itertools.product(
        [(3, 8, 8), (11, 4, 4)], [1, 2], [3, 4, 8, 64, 80]
    ):
        fields = ENCODERS[name].Args.model_fields  # e.g. embedding takes no blocks
        given = {"blocks": blocks, "features": features}
        try:
            args = (
                ENCODERS[name].Args(**{k: v for k, v in given.items() if k in fields}).model_dump()
            )
        except ValidationError:  # a width the encoder does not take (palette: 3 only)
            continue
        module = ENCODER_MODULES[name](shape, args)
        real = sum(p.numel() for p in module.parameters())
        assert ENCODERS[name].params(shape, args) == real, (shape, args)


@pytest.mark.parametrize("path,name", FLOWS, ids=IDS)
def test_whole_model_count_equals_the_compiled_model(path: str, name: str) -> None:
    over, _ = small_overrides(path, name)
    spec = flowspec.load(path, name, over)
    model = flowspec.compile(spec, device="cpu")
    assert sum(count_params(spec).values()) == sum(p.numel() for p in model.parameters())


def test_full_size_count_of_a_paper_model() -> None:
    spec = flowspec.load(ROOT / "specs/attnflow_mnist.flow", "attnflow_isdp_mnist_3_2_48")
    model = flowspec.compile(spec, device="cpu")
    n = sum(p.numel() for p in model.parameters())
    assert sum(count_params(spec).values()) == n > 1_000_000


def test_check_prints_the_parameter_count(cli) -> None:
    rc, out, _ = cli(
        "check", ROOT / "specs/attnflow_mnist.flow", "--flow", "attnflow_imap_mnist_3_2_48"
    )
    spec = flowspec.load(ROOT / "specs/attnflow_mnist.flow", "attnflow_imap_mnist_3_2_48")
    n = sum(count_params(spec).values())
    assert rc == 0 and f"parameters {n:,} ({n / 1e6:.3f} M; {4 * n / 1e6:.2f} MB" in out
