"""The checks of scripts/gpu_check.py, one per process (``gpu_check.py --step NAME``).

Each prints what it measured and returns 0 when the check passed, 1 when it failed.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from numerics import SMALL  # the shipped flows' reduced sizes, as the suite builds them

#: the device under test: cuda, or cpu when gpu_check.py --rehearse stands it in
DEV = os.environ.get("GPU_CHECK_DEVICE", "cuda")
TOL = 1e-4  # relative, float32 with TF32 off: CUDA and CPU kernels reassociate sums
DEMO_TOL = 0.05  # bits/dim after a short fp32 run on each device
BF16_TOL = 0.15  # the same for bf16 autocast on the device against fp32 on the CPU


def _tf32_off() -> None:
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        matmul.fp32_precision = "ieee"
        torch.backends.cudnn.conv.fp32_precision = "ieee"
    else:
        matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1.0))


def parity(root: Path) -> int:
    import flowspec
    from flowspec.numerics import perturb_, random_cond

    _tf32_off()
    worst, bad = 0.0, []
    for name, spec in _small_flows(root):
        gen = torch.Generator().manual_seed(7)
        cpu = flowspec.compile(spec, device="cpu", seed=0)
        x = torch.rand((4, *spec.input), generator=gen) - 0.5
        cond = random_cond(spec, 4, gen)
        cpu.train()
        with torch.no_grad():
            cpu(x, cond)
        perturb_(cpu, 0.05, gen)
        gpu = flowspec.compile(spec, device=DEV, seed=0)
        gpu.load_state_dict(cpu.state_dict())
        on = {k: v.to(DEV) for k, v in cond.items()} if cond else None
        diffs = {}
        for model, c, xx, key in ((cpu, cond, x, "cpu"), (gpu, on, x.to(DEV), "cuda")):
            model.eval()
            zs, logdet = model(xx, c)
            logp = model.latent_logp(zs) + logdet
            (-logp.mean()).backward()
            with torch.no_grad():
                back = model.inverse([z.detach() for z in zs], c)
            diffs[key] = (logp, logdet, back, [p.grad for p in model.parameters()])
        (lp, ld, bk, gr), (lp2, ld2, bk2, gr2) = diffs["cpu"], diffs["cuda"]
        err = max(
            _rel(lp2, lp),
            _rel(ld2, ld),
            _rel(bk2, bk),
            max((_rel(g2, g) for g, g2 in zip(gr, gr2) if g is not None), default=0.0),
        )
        worst = max(worst, err)
        print(f"{name}: largest relative difference {err:.2e}")
        if not err <= TOL:
            bad.append(name)
    print(
        f"parity: worst {worst:.2e} (tolerance {TOL:g}); "
        f"{'failed: ' + ', '.join(bad) if bad else 'all flows agree'}"
    )
    return 1 if bad else 0


def _small_flows(root: Path) -> list[tuple[str, object]]:
    """(``file:flow``, spec at reduced size) for every flow of every shipped spec."""
    import flowspec
    from flowspec.api import analyze

    out = []
    for path in sorted(glob.glob(str(root / "specs" / "*.flow"))):
        specs, _ = analyze(path, all_flows=True)
        for full in specs:
            spec = flowspec.load(
                path, full.name, {k: v for k, v in SMALL.items() if k in full.params}
            )
            out.append((f"{Path(path).name}:{full.name}", spec))
    return out


def verify_kinds(root: Path) -> int:
    """``flowspec verify`` in float64 on the device, for a set of shipped flows that together
    use every layer kind and prior they use at all (the first flow that adds one)."""
    from flowspec.verify import verify

    seen: set[str] = set()
    bad, n = [], 0
    for name, spec in _small_flows(root):
        kinds = {layer.kind for layer in spec.layers} | {f"prior.{spec.prior.kind}"}
        if kinds <= seen:
            continue
        seen |= kinds
        n += 1
        report = verify(spec, device=DEV, model=False)
        failed = [c for c in report.checks if not c.ok]
        print(
            f"{name}: {len(report.checks)} rows on {DEV}, "
            f"{'all exact' if not failed else f'{len(failed)} failed'}"
        )
        for c in failed:
            print(f"   {c.path} ({c.kind}): {c.error}")
        if failed:
            bad.append(name)
    print(
        f"verify_kinds: {n} flows covering {len(seen)} kinds and priors on {DEV}; "
        f"{'failed: ' + ', '.join(bad) if bad else 'all exact'}"
    )
    return 1 if bad else 0


def demo(root: Path) -> int:
    """Short runs of specs/demo.flow (size 8) on ``digits``: fp32 and bf16 autocast on the
    device against fp32 on the CPU; sample grids written; the inverse's error under the
    trainer's warning threshold."""
    import runtime
    from runtime.recipe import RECON_WARN

    work = Path(os.environ.get("GPU_CHECK_WORK", "gpu_check_runs"))
    runs = {
        "cpu fp32": ("cpu", None),
        f"{DEV} fp32": (DEV, None),
        f"{DEV} bf16": (DEV, torch.bfloat16),
    }
    bpd, bad = {}, []
    for label, (device, autocast) in runs.items():
        out = work / label.replace(" ", "-")
        r = runtime.train(
            root / "specs" / "demo.flow",
            overrides={"K": 2, "hidden": 32, "size": 8},
            data="digits",
            steps=60,
            batch=32,
            device=device,
            progress=False,
            out=out,
            val_every=60,
            sample_every=60,
            checkpoint_every=60,
            val_images=256,
            build_options={"autocast": autocast} if autocast else None,
        )
        bpd[label] = r.val_bpd
        final = r.summary.get("final_val", {})
        grids = sorted(p.name for p in out.glob("samples_*.png"))
        rel = final.get("recon_rel")
        print(
            f"{label}: held-out bits/dim {r.val_bpd:.4f}, reconstruction error {rel}, "
            f"{len(grids)} sample grids"
        )
        if not grids:
            bad.append(f"{label}: no sample grid")
        if rel is None or not rel <= RECON_WARN:
            bad.append(f"{label}: reconstruction error {rel} (threshold {RECON_WARN})")
    for label, tol in ((f"{DEV} fp32", DEMO_TOL), (f"{DEV} bf16", BF16_TOL)):
        diff = abs(bpd[label] - bpd["cpu fp32"])
        print(f"{label} vs cpu fp32: difference {diff:.4f} bits/dim (tolerance {tol})")
        if not diff <= tol:
            bad.append(f"{label}: {diff:.4f} bits/dim from the CPU run")
    print(f"demo: {'failed: ' + '; '.join(bad) if bad else 'all runs agree'}")
    return 1 if bad else 0


def sync(root: Path) -> int:
    # The trainer's step (forward, backward, clipping, update) on the model alone: the
    # trainer itself reads the loss on the host each step, for its log and its NaN check.
    import flowspec

    spec = flowspec.load(root / "specs" / "demo.flow", overrides={"K": 1, "hidden": 16})
    model = flowspec.compile(spec, device=DEV, seed=0)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4, foreach=True)
    x = torch.rand((16, *spec.input), device=DEV) - 0.5
    model.train()
    with torch.no_grad():
        model(x)  # actnorm's init: one sync by design
    try:
        if DEV == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            loss = -model.log_prob(x).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(model.parameters()), 50.0)
            opt.step()
    except RuntimeError as e:
        print(
            f"sync: a training step synchronises with the host: {(str(e).splitlines() or [''])[0]}"
        )
        return 1
    finally:
        if DEV == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    print("sync: 3 training steps (forward, backward, clipping, update) without a host sync")
    return 0


def _demo_run(root: Path, out: Path, **kw: object) -> object:
    import runtime

    base = {
        "overrides": {"K": 2, "hidden": 16, "size": 8},
        "data": "digits",
        "batch": 32,
        "device": DEV,
        "progress": False,
        "val_every": 1000,
        "sample_every": 1000,
        "checkpoint_every": 2,
        "val_images": 64,
        "deterministic": True,
    }
    return runtime.train(root / "specs" / "demo.flow", out=out, **{**base, **kw})


def _differences(a: dict, b: dict) -> list[str]:
    """The state_dict entries that are not bitwise equal, with their largest difference."""
    return [
        f"{k} ({float((a[k].double() - b[k].double()).abs().max()):.1e})"
        for k in a
        if not torch.equal(a[k], b[k])
    ]


def ddp_resume(root: Path) -> int:
    """Under --deterministic: a DDP run in a process group of one (NCCL on CUDA, gloo on the
    CPU) trains the same parameters as a plain run, bit for bit; and 4 steps straight equal
    2 steps, a resume and 2 more, bit for bit."""
    import torch.distributed as dist

    work = Path(os.environ.get("GPU_CHECK_WORK", "gpu_check_runs"))
    work.mkdir(parents=True, exist_ok=True)
    bad = []
    plain = _demo_run(root, work / "plain", steps=4)
    backend = "nccl" if DEV.startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=f"file://{work / 'store'}", rank=0, world_size=1)
    try:
        one = _demo_run(root, work / "ddp", steps=4)
    finally:
        dist.destroy_process_group()
    diff = _differences(plain.model.state_dict(), one.model.state_dict())
    said = "bitwise equal" if not diff else f"{len(diff)} tensors differ: " + ", ".join(diff[:5])
    print(f"ddp ({backend}, one process) vs plain, 4 steps: {said}")
    if diff or one.summary.get("world_size") != 1:
        bad.append("ddp")
    _demo_run(root, work / "cut", steps=2)
    cut = _demo_run(root, work / "cut", steps=4, resume=True)
    diff = _differences(plain.model.state_dict(), cut.model.state_dict())
    said = "bitwise equal" if not diff else f"{len(diff)} tensors differ: " + ", ".join(diff[:5])
    print(f"resume (2 + 2 steps) vs 4 straight: {said}")
    if diff:
        bad.append("resume")
    print(f"ddp_resume: {'failed: ' + ', '.join(bad) if bad else 'bit for bit'}")
    return 1 if bad else 0


def speed(root: Path) -> int:
    """Training and sampling images/s at 3-2-48 and 3-4-96, eager, against the hand-written
    reference in the same process (bench/speed.py; its table is printed, no file written)."""
    p = subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "speed.py"),
            "--device",
            DEV,
            "--quick",
            "--out",
            "-",
        ],
        cwd=root,
    )
    return p.returncode


def compiled(root: Path) -> int:
    """The same with torch.compile, at 3-2-48 only: last, under its own hard timeout."""
    p = subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "speed.py"),
            "--device",
            DEV,
            "--quick",
            "--compile",
            "--sizes",
            "3-2-48",
            "--out",
            "-",
        ],
        cwd=root,
    )
    return p.returncode


STEPS = {
    "parity": parity,
    "verify": verify_kinds,
    "demo": demo,
    "sync": sync,
    "ddp_resume": ddp_resume,
    "speed": speed,
    "compile": compiled,
}
STEP_NAMES = tuple(STEPS)


def run_step(name: str, root: Path) -> int:
    if name not in STEPS:
        print(f"unknown step {name}; steps: {', '.join(STEPS)}")
        return 1
    return STEPS[name](root)
