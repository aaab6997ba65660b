"""Class conditioning: `condition y: class N`, one integer label per sample.

The language (resolve, errors, fmt), the embedding encoder, the model's checks of the labels,
exact log-determinants with random labels, and specs/glow_class.flow: its log-likelihood
depends on the label, it trains on mnist5k, and `sample` draws one grid row per class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numerics import jacobian_logdet, max_abs_diff, perturb_, random_cond
from PIL import Image

import flowspec
import runtime
from flowspec.fmt import format_text
from flowspec.kinds import ENCODERS, count_params
from runtime import RunError
from runtime import images as im
from runtime.api import load_checkpoint
from runtime.images import grid_size
from runtime.streams import generator, stream_seed

ROOT = Path(__file__).resolve().parents[1]
GLOW_CLASS = ROOT / "specs" / "glow_class.flow"
TINY = {"L": 2, "K": 1, "hidden": 8}

FLOW = """flowspec 0.1
flow f(n = 3) {{
  input 2x4x4
  {cond}
  prior gaussian learned on=y
  squeeze
  actnorm
  injector on=y hidden=4
  coupling affine on=y hidden=4
  coupling mixture on=y hidden=4 components=2
  split prior=learned on=y
}}
"""


def spec_with(cond: str = "condition y: class n", **over):
    return flowspec.loads(FLOW.format(cond=cond), overrides=over or None)


def errors_of(cond: str) -> list:
    _, diags = flowspec.analyze("x.flow", text=FLOW.format(cond=cond))
    return [d for d in diags if d.severity == "error"]


# ---- language ---------------------------------------------------------------------------
def test_class_condition_resolves_to_n_by_1_by_1_with_an_embedding():
    c = spec_with(n=7).condition("y")
    assert (c.type, tuple(c.shape)) == ("class", (7, 1, 1))
    assert (c.encoder.kind, c.encoder.args) == ("embedding", {"features": 32})
    assert c.declared() == "class 7"
    c = spec_with("condition y: class (n + 2) encoder=embedding(features=5)").condition("y")
    assert tuple(c.shape) == (5, 1, 1) and c.encoder.args == {"features": 5}
    # any encoder takes the one-hot N x 1 x 1 map
    assert (
        spec_with("condition y: class 4 encoder=convnet(blocks=1, features=3)")
        .condition("y")
        .encoder.kind
        == "convnet"
    )


@pytest.mark.parametrize(
    ("cond", "code", "words"),
    [
        ("condition y: class 3x1x1", "E006", "number of classes"),
        ("condition y: class 1", "E122", "at least 2"),
        ("condition y: image 3", "E006", "3 dimensions"),
        ("condition y: clas 3", "E104", "class"),
        ("condition y: class 3 encoder=embedding(blocks=2)", "E105", "blocks"),
    ],
)
def test_class_condition_errors(cond, code, words):
    errs = errors_of(cond)
    assert errs and errs[0].code == code, errs
    assert words in str(errs[0]) + str(errs[0].help or "")


def test_fmt_round_trips_a_class_condition():
    text = FLOW.format(cond="condition y:   class  n encoder=embedding(features=4)")
    once = format_text(text, "x.flow")
    assert "condition y: class n encoder=embedding(features=4)" in once
    assert format_text(once, "x.flow") == once


def test_graph_and_diagram_show_the_class_condition(tmp_path):
    spec = spec_with()
    g = flowspec.graph(spec)
    assert g.nodes["cond:y"]["ctype"] == "class"
    assert g.nodes["encoder:y"]["out_shape"] == (32, 1, 1)
    assert g.edges["encoder:y", "prior"]["shape"] == (32, 2, 2)
    out = flowspec.render(spec, tmp_path / "m.svg")
    assert "class 3 one" in Path(out).read_text()


# ---- the embedding encoder --------------------------------------------------------------
def test_embedding_is_a_lookup_table_with_an_analytic_count():
    kind = ENCODERS["embedding"]
    enc = kind.module_class()((5, 1, 1), {"features": 3})
    assert (
        kind.params((5, 1, 1), {"features": 3}) == 15 == sum(p.numel() for p in enc.parameters())
    )
    one_hot = torch.nn.functional.one_hot(torch.tensor([4, 0]), 5).float().view(2, 5, 1, 1)
    out = enc(one_hot)
    assert out.shape == (2, 3, 1, 1)
    assert torch.equal(out[:, :, 0, 0], enc.weight.T[[4, 0]])
    # per pixel on label maps
    assert enc(torch.rand(2, 5, 3, 4)).shape == (2, 3, 3, 4)


# ---- the model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def perturbed():
    spec = spec_with()
    gen = torch.Generator().manual_seed(0)
    model = flowspec.compile(spec, device="cpu", seed=0).double()
    x = torch.rand((4, *spec.input), generator=gen, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        model(x, random_cond(spec, 4, gen))
    perturb_(model, 0.05, gen)
    return spec, model.eval(), x


def test_exact_logdet_and_inverse_with_random_labels(perturbed):
    spec, model, x = perturbed
    cond = random_cond(spec, 4, torch.Generator().manual_seed(3))
    assert cond["y"].dtype == torch.long and cond["y"].shape == (4,)

    def fn(xb, yb):
        zs, _ = model(xb, {"y": yb})
        return torch.cat([z.flatten(1) for z in zs], 1)

    with torch.no_grad():
        zs, logdet = model(x, cond)
        back, inv = model.inverse(zs, cond, return_logdet=True)
    want, _ = jacobian_logdet(fn, x, cond["y"])
    assert max_abs_diff(logdet, want) < 1e-8
    assert max_abs_diff(back, x) < 1e-10 and max_abs_diff(inv, -logdet) < 1e-8
    assert sum(count_params(spec).values()) == sum(p.numel() for p in model.parameters())


def test_log_prob_depends_on_the_label(perturbed):
    _, model, x = perturbed
    with torch.no_grad():
        per_class = torch.stack([model.log_prob(x, {"y": torch.full((4,), k)}) for k in range(3)])
    assert (per_class.max(0).values - per_class.min(0).values).min() > 1e-3
    # an int (or 0-d tensor, or list) stands for the whole batch
    with torch.no_grad():
        assert torch.equal(model.log_prob(x, {"y": 2}), per_class[2])
        assert torch.equal(model.log_prob(x, {"y": [2, 2, 2, 2]}), per_class[2])


@pytest.mark.parametrize(
    ("cond", "words"),
    [
        (None, "y (class 3: (4,) class ids)"),
        ({"z": torch.zeros(4, dtype=torch.long)}, "missing condition `y` (class 3"),
        ({"y": torch.tensor([0, 1, 3, 0])}, "takes class ids 0..2, got 3"),
        ({"y": torch.tensor([0, -1, 2, 0])}, "takes class ids 0..2, got -1"),
        ({"y": torch.zeros(4)}, "integer class ids"),
        ({"y": torch.zeros(4, 1, dtype=torch.long)}, "shape (4,), got (4, 1)"),
        ({"y": torch.zeros(3, dtype=torch.long)}, "shape (4,), got (3,)"),
        ({"y": "three"}, "tensor of class ids, got str"),
    ],
)
def test_bad_labels_are_value_errors_naming_the_condition(perturbed, cond, words):
    _, model, x = perturbed
    with pytest.raises(ValueError) as e:
        model.log_prob(x, cond)
    assert words in str(e.value)


def test_sample_takes_labels(perturbed):
    _, model, _ = perturbed
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = model.sample(3, 0.5, cond={"y": torch.tensor([0, 1, 2])}, generator=g1)
    b = model.sample(3, 0.5, cond={"y": torch.tensor([0, 1, 1])}, generator=g2)
    assert a.shape == (3, 2, 4, 4)
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2], b[2])
    with pytest.raises(ValueError, match="class ids 0..2, got 5"):
        model.sample(2, cond={"y": 5})


# ---- glow_class on mnist5k ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("glow_class") / "run"
    result = runtime.train(
        GLOW_CLASS,
        overrides=TINY,
        out=out,
        steps=4,
        batch=8,
        lr=3e-3,
        val_every=4,
        sample_every=4,
        checkpoint_every=4,
        val_images=40,
        device="cpu",
        progress=False,
    )
    return out, result


def png(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(path)).copy())


def test_glow_class_trains_and_draws_one_row_per_class(trained):
    out, result = trained
    assert result.val_bpd is not None and 0 < result.val_bpd < 16
    grid = out / "samples_step000004_t0.7.png"
    assert Image.open(grid).size[::-1] == grid_size(80, 8, 32, 32)
    # the grid's row k is the model's samples of class k (same noise stream)
    model, _ = load_checkpoint(out / "checkpoint.pt", device="cpu")
    g = generator(stream_seed(0, "grid", 0.7))
    labels = torch.arange(10).repeat_interleave(8)
    x = model.sample(80, 0.7, {"y": labels}, generator=g)
    assert torch.equal(png(grid), im.make_grid(im.to_uint8(x, 8), ncol=8)[0])


def test_glow_class_log_prob_depends_on_the_label(trained):
    out, _ = trained
    model, _ = load_checkpoint(out / "checkpoint.pt", device="cpu")
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        lp = torch.stack([model.log_prob(x, {"y": torch.full((2,), k)}) for k in range(10)])
    assert lp.std(0).min() > 0


def test_sample_cli_picks_classes(trained, cli, tmp_path):
    out, _ = trained
    ck = out / "checkpoint.pt"
    rc, _, err = cli(
        "sample",
        GLOW_CLASS,
        "--checkpoint",
        ck,
        "--class",
        "3",
        "--n",
        "6",
        "-o",
        tmp_path / "three.png",
        "--device",
        "cpu",
    )
    assert rc == 0, err
    model, _ = load_checkpoint(ck, device="cpu")
    x = model.sample(6, 0.7, {"y": 3}, generator=generator(0))
    assert torch.equal(png(tmp_path / "three.png"), im.make_grid(im.to_uint8(x, 8), ncol=3)[0])
    rc, _, err = cli(
        "sample",
        GLOW_CLASS,
        "--checkpoint",
        ck,
        "--class",
        "1,7",
        "--n",
        "8",
        "-o",
        tmp_path / "rows.png",
        "--device",
        "cpu",
    )
    assert rc == 0 and Image.open(tmp_path / "rows.png").size[::-1] == grid_size(8, 4, 32, 32)
    rc, _, err = cli(
        "sample",
        GLOW_CLASS,
        "--checkpoint",
        ck,
        "--n",
        "20",
        "-o",
        tmp_path / "all.png",
        "--device",
        "cpu",
    )
    assert rc == 0 and Image.open(tmp_path / "all.png").size[::-1] == grid_size(20, 2, 32, 32)
    for bad, words in (("10", "classes 0..9; got 10"), ("x", "class ids like 3")):
        rc, _, err = cli(
            "sample",
            GLOW_CLASS,
            "--checkpoint",
            ck,
            "--class",
            bad,
            "-o",
            tmp_path / "bad.png",
            "--device",
            "cpu",
        )
        assert rc == 1 and words in err and "Traceback" not in err


def test_data_without_labels_is_a_clear_error(cli, tmp_path):
    with pytest.raises(RunError, match="has no class labels"):
        runtime.train(
            GLOW_CLASS,
            overrides={**TINY, "channels": 3},
            data="photos pad=0",
            out=tmp_path / "a",
            steps=1,
            device="cpu",
            progress=False,
        )
    with pytest.raises(RunError, match="declares 5; declare `class 10`"):
        runtime.train(
            GLOW_CLASS,
            overrides={**TINY, "classes": 5},
            data="digits pad=12",
            out=tmp_path / "b",
            steps=1,
            device="cpu",
            progress=False,
        )
    rc, _, err = cli(
        "train",
        GLOW_CLASS,
        "--set",
        "L=2",
        "--set",
        "K=1",
        "--set",
        "hidden=8",
        "--set",
        "channels=3",
        "--data",
        "photos pad=0",
        "--steps",
        "1",
        "--out",
        tmp_path / "c",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert rc == 1 and "has no class labels" in err and "Traceback" not in err


def test_class_option_on_an_unconditional_flow_is_an_error(tmp_path):
    demo = ROOT / "specs" / "demo.flow"
    out = tmp_path / "demo"
    runtime.train(
        demo,
        overrides={"K": 1, "hidden": 4},
        out=out,
        steps=1,
        batch=4,
        val_images=8,
        device="cpu",
        progress=False,
    )
    with pytest.raises(RunError, match="no class condition"):
        runtime.sample(
            demo, out / "checkpoint.pt", classes=3, output=tmp_path / "g.png", device="cpu"
        )
