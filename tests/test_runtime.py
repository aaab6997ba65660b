"""End-to-end tests of the runtime: train, evaluate and sample for the three tasks on real
built-in data, bit-for-bit resume after SIGKILL, atomic checkpoints, 2-process DDP on
gloo, non-finite losses and the errors that must come before any training step.

Models are tiny (a handful of layers, hidden=8) so the whole file runs in well under three
minutes on two CPU cores; the numbers they reach are not the point, the plumbing is.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import runtime
from runtime import RunError
from runtime import checkpoint as ckpt
from runtime.batches import BatchStream
from runtime.images import LABEL_BAND, grid_size
from runtime.metrics import LN2, bits_per_dim

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "specs" / "demo.flow"
TINY_GEN = {"K": 1, "hidden": 8}

TINY = """flowspec 0.1
flow tiny_sr(K = 1, hidden = 8) {
  input 1 x 24 x 24
  condition lr: image 1 x 6 x 6 encoder=rrdb(blocks=1, features=8)
  prior gaussian learned on=lr
  level {
    squeeze
    step x K {
      actnorm; invconv; injector on=lr hidden=hidden; coupling affine on=lr hidden=hidden
    }
    split prior=learned on=lr
  }
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine on=lr hidden=hidden }
  }
  train {
    task super_resolution scale=4
    data faces resize=true
    bits 8
    batch 8
    optimizer adam lr=3e-3 clip=50.0
    steps 40
  }
}

flow tiny_seg(K = 1, hidden = 8) {
  input 1 x 32 x 32
  condition seg: labels 11 x 32 x 32 encoder=convnet(blocks=1, features=8)
  prior gaussian learned on=seg
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine on=seg hidden=hidden }
    split prior=learned on=seg
  }
  level {
    squeeze
    step x K { actnorm; invconv; coupling affine on=seg hidden=hidden }
  }
  train {
    task translation
    data fashion-seg pad=2
    bits 5
    batch 8
    optimizer adam lr=3e-3
    steps 40
  }
}
"""


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("specs") / "tiny.flow"
    path.write_text(TINY)
    return path


def records(out: Path, kind: str) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def assert_learns(out: Path, k: int = 5) -> None:
    losses = [r["loss"] for r in records(out, "train")]
    first, last = sum(losses[:k]) / k, sum(losses[-k:]) / k
    assert last < first - 0.05, f"loss did not decrease: {first:.4f} -> {last:.4f}"


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.height, im.width


def close(a: float, b: float, rel: float = 1e-6) -> bool:
    return abs(a - b) <= rel * abs(b)


# --------------------------------------------------------------------------- units


def test_bits_per_dim_counts_the_discretisation_term() -> None:
    # the uniform density on the unit cube (log p = 0) has exactly `bits` bits/dim: it
    # spreads each level's probability 2^-bits evenly over its bin
    assert torch.allclose(bits_per_dim(torch.zeros(3), dims=784, bits=5), torch.full((3,), 5.0))
    # a density twice as high everywhere saves one bit per image, 1/D per dim
    got = bits_per_dim(torch.tensor([784 * LN2]), dims=784, bits=8)
    assert math.isclose(float(got), 7.0, rel_tol=1e-6)


def test_data_order_is_a_function_of_seed_and_step() -> None:
    a, b = BatchStream(10, 4, seed=3), BatchStream(10, 4, seed=3)
    seen = torch.cat([a.indices(s) for s in range(5)])  # two full epochs
    assert sorted(seen[:10].tolist()) == list(range(10))
    assert sorted(seen[10:20].tolist()) == list(range(10))
    assert torch.equal(b.indices(4), a.indices(4))  # no history needed
    assert torch.equal(a.noise(7, (1, 2, 2)), b.noise(7, (1, 2, 2)))
    assert not torch.equal(BatchStream(10, 4, seed=4).indices(0), a.indices(0))


def test_atomic_write_failure_keeps_previous(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    ckpt.save_atomic({"format": ckpt.FORMAT, "model": {"w": torch.ones(3)}, "step": 1}, path)

    def torn(obj, f, *a, **k):  # half a file, then the process "dies"
        f.write(b"PK\x03\x04 torn")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torn)
    with pytest.raises(RunError, match="previous checkpoint"):
        ckpt.save_atomic({"format": ckpt.FORMAT, "model": {"w": torch.zeros(3)}, "step": 2}, path)
    monkeypatch.undo()

    def no_rename(src, dst):
        raise OSError("interrupted")

    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(RunError):
        ckpt.save_atomic({"format": ckpt.FORMAT, "model": {"w": torch.zeros(3)}, "step": 3}, path)
    monkeypatch.undo()
    ck = ckpt.load(path)
    assert ck["step"] == 1 and torch.equal(ck["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp left


# --------------------------------------------------------------------------- tasks


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("gen") / "run"
    result = runtime.train(
        DEMO,
        overrides=TINY_GEN,
        out=out,
        steps=60,
        batch=16,
        lr=5e-3,
        warmup=0,
        val_every=30,
        sample_every=60,
        checkpoint_every=30,
        val_images=128,
        progress=False,
    )
    return out, result


def test_generation_end_to_end(gen_run) -> None:
    out, result = gen_run
    assert_learns(out)
    for name in (
        "config.json",
        "recipe.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "best.pt",
        "curve.png",
        "summary.json",
    ):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["name"] == "demo" and config["params"]["K"] == 1
    for t in ("0.5", "0.7", "1"):
        assert png_size(out / f"samples_step000060_t{t}.png") == grid_size(64, 8, 32, 32)
    val = records(out, "val")
    assert [r["step"] for r in val] == [30, 60]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final_val_bpd"] == val[-1]["bpd"] == result.val_bpd
    assert 0 < result.val_bpd < 5  # 5-bit data: a model that learnt nothing scores 5
    ck = ckpt.load(out / "checkpoint.pt")
    assert (
        ck["step"] == 60
        and ck["digest"] == runtime.api._load_spec(DEMO, None, TINY_GEN)[0].digest()
    )


def test_evaluate_reproduces_logged_validation(gen_run) -> None:
    out, _ = gen_run
    logged = records(out, "val")[-1]["bpd"]
    m = runtime.evaluate(DEMO, out / "checkpoint.pt")  # flow and --set from the checkpoint
    assert close(m["bpd"], logged), (m["bpd"], logged)
    assert m["step"] == 60 and m["val_images"] == 128
    assert json.loads((out / "eval.json").read_text())["bpd"] == m["bpd"]
    # the IR stored in the checkpoint alone rebuilds the model
    assert close(runtime.evaluate(None, out / "checkpoint.pt")["bpd"], logged)


def test_sample_and_eval_cli(gen_run, tmp_path: Path) -> None:
    out, _ = gen_run
    grid = runtime.sample(
        DEMO, out / "checkpoint.pt", n=16, temperature=0.7, output=tmp_path / "grid.png"
    )
    assert png_size(grid) == grid_size(16, 4, 32, 32)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowspec.cli",
            "eval",
            str(DEMO),
            "--checkpoint",
            str(out / "checkpoint.pt"),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert close(json.loads(p.stdout)["bpd"], records(out, "val")[-1]["bpd"])
    assert (tmp_path / "eval.json").is_file()


def test_super_resolution_end_to_end(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "sr"
    result = runtime.train(
        tiny_spec,
        flow="tiny_sr",
        out=out,
        steps=40,
        val_every=20,
        sample_every=40,
        sr_images=4,
        progress=False,
    )
    assert_learns(out)
    val = records(out, "val")[-1]
    for key in ("bpd", "psnr", "ssim", "lr_psnr"):
        assert math.isfinite(val[key]), key
    # the final validation follows the paper's Table 4 (0.1 ... 0.9), the others 0.1, 0.5, 0.9
    assert val["lpips"] == "unavailable" and val["temperatures"] == [k / 10 for k in range(1, 10)]
    assert records(out, "val")[0]["temperatures"] == [0.1, 0.5, 0.9]
    assert 5 < val["psnr"] < 60 and -1 <= val["ssim"] <= 1 and val["lr_psnr"] > val["psnr"] - 5
    # rows: low-res input (nearest), 4 samples, high-res truth; a band naming the columns
    h, w = grid_size(48, 6, 24, 24)
    assert png_size(out / "samples_step000040_t0.7.png") == (h + LABEL_BAND, w)
    m = runtime.evaluate(tiny_spec, out / "checkpoint.pt", temperatures=[0.3, 0.8])
    assert close(m["bpd"], result.val_bpd)
    assert set(m["per_temperature"]) == {"0.3", "0.8"} and m["lpips"] == "unavailable"
    assert m["sr_images"] == 10  # the whole faces val split


def test_translation_end_to_end(tiny_spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "seg"
    result = runtime.train(
        tiny_spec,
        flow="tiny_seg",
        data="fashion-seg limit=800",
        out=out,
        steps=40,
        val_every=40,
        val_images=32,
        progress=False,
    )
    assert_learns(out)
    path = out / "samples_step000040_t0.7.png"
    assert png_size(path) == grid_size(48, 6, 32, 32)
    with Image.open(path) as im:
        assert im.mode == "RGB"  # colourised label maps next to the samples
    m = runtime.evaluate(tiny_spec, out / "checkpoint.pt")
    assert close(m["bpd"], result.val_bpd) and m["val_images"] == 32


# --------------------------------------------------------------------------- resume


def _train_cmd(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "flowspec.cli",
        "train",
        str(DEMO),
        "--set",
        "K=1",
        "--set",
        "hidden=8",
        "--steps",
        "80",
        "--batch",
        "8",
        "--lr",
        "3e-3",
        "--checkpoint-every",
        "4",
        "--val-every",
        "1000",
        "--sample-every",
        "1000",
        "--val-images",
        "64",
        "--no-progress",
        "--out",
        str(out),
        *extra,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def test_sigkill_then_resume_is_bit_for_bit(tmp_path: Path) -> None:
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    ref = subprocess.Popen(
        _train_cmd(reference),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    p = subprocess.Popen(
        _train_cmd(killed),
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    step = None
    while time.time() < deadline and p.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.exists():
            done = [json.loads(x) for x in metrics.read_text().splitlines() if '"checkpoint"' in x]
            if done and done[-1]["step"] >= 8:
                p.send_signal(signal.SIGKILL)
                step = done[-1]["step"]
                break
        time.sleep(0.01)
    p.wait(timeout=30)
    assert p.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert step is not None and step < 80
    resumed = subprocess.run(
        _train_cmd(killed, "--resume"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert ref.wait(timeout=180) == 0, ref.stderr.read().decode()
    a, b = ckpt.load(killed / "checkpoint.pt"), ckpt.load(reference / "checkpoint.pt")
    assert a["step"] == b["step"] == 80
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # the log of the killed run is that of one run: each step once, in order
    steps = [r["step"] for r in records(killed, "train")]
    assert steps == list(range(1, 81))
    assert json.loads((killed / "summary.json").read_text())["resumed_from"] >= step


def test_interrupted_checkpoint_write_in_a_run(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    kw = {
        "overrides": TINY_GEN,
        "out": out,
        "batch": 4,
        "checkpoint_every": 2,
        "val_every": 100,
        "sample_every": 100,
        "val_images": 8,
        "progress": False,
    }
    runtime.train(DEMO, steps=2, **kw)
    real_save = torch.save

    def dies_midway(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        if "checkpoint.pt" in f.name:  # best.pt goes through; checkpoint.pt is torn
            f.truncate(100)
            raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        runtime.train(DEMO, steps=4, resume=True, **kw)
    monkeypatch.undo()
    assert ckpt.load(out / "checkpoint.pt")["step"] == 2
    assert not list(out.glob(".*.tmp"))
    assert ckpt.load(out / "best.pt")["step"] == 4
    runtime.train(DEMO, steps=4, resume=True, **kw)  # and the run goes on from there
    assert ckpt.load(out / "checkpoint.pt")["step"] == 4
    with pytest.raises(RunError, match="belongs to another model"):
        runtime.train(DEMO, steps=6, resume=True, **{**kw, "overrides": {"K": 1, "hidden": 4}})
    with pytest.raises(RunError, match="already holds a run"):
        runtime.train(DEMO, steps=6, **kw)


# --------------------------------------------------------------------------- DDP


def _ddp_worker(rank: int, world: int, port: int, out: str, result_dir: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "GLOO_SOCKET_IFNAME": "lo",
        }
    )
    torch.set_num_threads(1)
    result = runtime.train(
        DEMO,
        overrides=TINY_GEN,
        out=out,
        steps=6,
        batch=8,
        device="cpu",
        val_every=6,
        sample_every=100,
        checkpoint_every=6,
        val_images=16,
        progress=False,
    )
    torch.save(
        {k: v.clone() for k, v in result.model.state_dict().items()},
        Path(result_dir) / f"rank{rank}.pt",
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_on_gloo(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    out = tmp_path / "ddp"
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(out), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["ranks_identical"] is True
    # the model trained: actnorm was initialised (once, consistently) and moved
    assert all(bool(v) for k, v in r0.items() if k.endswith("initialized"))
    ck = ckpt.load(out / "checkpoint.pt")
    assert all(torch.equal(ck["model"][k], r0[k]) for k in r0)


# --------------------------------------------------------------------------- failures


def test_non_finite_loss_names_the_layer_and_saves_nothing(tmp_path: Path, monkeypatch) -> None:
    import flowspec.build

    real_compile = flowspec.build.compile
    target = {}

    def poisoned(*a, **k):
        model = real_compile(*a, **k)
        i = next(i for i, p in enumerate(model.paths) if p.endswith("coupling"))
        target["path"] = model.paths[i]
        calls = {"n": 0}

        def hook(module, inputs, output):
            calls["n"] += 1
            if calls["n"] > 4:  # the init forward and three good steps, then NaN
                y, ld = output
                return y * float("nan"), ld
            return None

        model.layers[i].register_forward_hook(hook)
        return model

    monkeypatch.setattr(flowspec.build, "compile", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(RunError) as e:
        runtime.train(
            DEMO,
            overrides=TINY_GEN,
            out=out,
            steps=10,
            batch=4,
            checkpoint_every=2,
            val_every=100,
            sample_every=100,
            val_images=8,
            progress=False,
        )
    msg = str(e.value)
    assert f"layer `{target['path']}`" in msg and "step 4" in msg and ".flow:" in msg
    assert ckpt.load(out / "checkpoint.pt")["step"] == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"data": "/no/such/folder"}, "/no/such/folder"),
        ({"data": "mnist5k pad=0"}, r"1x28x28 after pad=0 but the spec's input is 1x32x32"),
        ({"task": "super_resolution"}, "declares no image condition"),
        ({"task": "translation"}, "declares no labels condition"),
        ({"batch": 0}, "batch must be at least 1"),
    ],
)
def test_errors_come_before_training(tmp_path: Path, kwargs: dict, match: str) -> None:
    out = tmp_path / "run"
    with pytest.raises(RunError, match=match):
        runtime.train(DEMO, overrides=TINY_GEN, out=out, steps=2, progress=False, **kwargs)
    assert not out.exists()


def test_task_needs_the_right_condition(tiny_spec: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="declares no labels condition"):
        runtime.train(tiny_spec, flow="tiny_sr", task="translation", out=tmp_path / "a")
    with pytest.raises(RunError, match="is conditional"):
        runtime.train(tiny_spec, flow="tiny_seg", task="generation", out=tmp_path / "b")
    with pytest.raises(RunError, match="has no label maps"):
        runtime.train(tiny_spec, flow="tiny_seg", data="mnist5k", out=tmp_path / "c")
    with pytest.raises(RunError, match=r"25x25 .* resize=True"):
        runtime.train(
            tiny_spec, flow="tiny_sr", data_options={"resize": False}, out=tmp_path / "d"
        )
    assert not list(tmp_path.iterdir())


def test_cli_error_exit_code_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "run"
    p = subprocess.run(
        _train_cmd(out, "--data", str(tmp_path / "missing")),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 1
    assert "Traceback" not in p.stderr and "missing" in p.stderr
    assert p.stderr.startswith("flowspec train: error:")
    assert not out.exists()
    # resuming a run that does not exist, and clobbering one that does
    p = subprocess.run(
        _train_cmd(out, "--resume"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert p.returncode == 1 and "nothing to resume" in p.stderr
