"""The one-shot check for a machine with a CUDA GPU (scripts/gpu_check.sh runs it).

    python scripts/gpu_check.py [--budget SECONDS] [--wheels DIR]

First the missing pure and binary packages are installed from a wheel folder made beforehand
by scripts/gpu_wheels.sh (the GPU machine has no network), into a temporary folder. Then a
preflight: torch and CUDA versions, TF32 flags, every dependency importable. Without a GPU
(no ``nvidia-smi``, and torch sees none) there is nothing to check: it says so and exits 0.
A GPU that ``nvidia-smi`` lists (or an ``nvidia-smi`` that fails) while torch sees none, or a
missing dependency, is a wrong environment: exit 2 at once.

Then the checks, each in its own process with its own timeout, all within ``--budget``
(default 300 s), going on past a failed one:

* ``parity``: every flow of every shipped spec at reduced size, the same weights on CUDA and
  CPU with TF32 off: log_prob, log-determinants, inverse and gradients agree.
* ``verify``: ``flowspec verify`` in float64 on CUDA for shipped flows that together use
  every layer kind and prior.
* ``sync``: training steps under ``torch.cuda.set_sync_debug_mode("error")``.
* ``demo``: short runs of specs/demo.flow on ``digits`` in fp32 and bf16 autocast on CUDA
  against fp32 on the CPU: held-out bits/dim within tolerance, sample grids written, the
  inverse's error under the trainer's warning threshold.
* ``ddp_resume``: under ``--deterministic``, DDP in a process group of one (NCCL) equals a
  plain run, and a resumed run equals a straight one, bit for bit.
* ``speed``: bench/speed.py --quick on CUDA (training and sampling images/s at 3-2-48 and
  3-4-96 against the hand-written reference, eager); ``compile``: the same with
  torch.compile at 3-2-48, last.

With ``--rehearse`` (a machine without a GPU) the wheel folder is installed and every step
runs with the CPU standing in for CUDA, ten times each step's time: it proves the script,
its wheels and its steps work before GPU time is spent, not that CUDA agrees.

Exit 0 when every check passed, 1 when one failed. Only ``results.json`` and
``gpu_check.log`` are written, into ``$OUT`` when it is set (else a temporary folder, named at
the end); runs go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Import name -> the distribution that provides it (installed from the wheel folder).
DEPENDENCIES = {
    "lark": "lark",
    "pydantic": "pydantic",
    "graphviz": "graphviz",
    "mlxtend": "mlxtend",
    "networkx": "networkx",
    "numpy": "numpy",
    "PIL": "pillow",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "tqdm": "tqdm",
    "einops": "einops",
}
#: (name, the most seconds it may take); each also stops where the budget ends
STEPS = [
    ("parity", 50),
    ("verify", 40),
    ("sync", 30),
    ("demo", 50),
    ("ddp_resume", 40),
    ("speed", 60),
    ("compile", 60),
]


class Log:
    def __init__(self, path: Path) -> None:
        self.file = path.open("w")

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        self.file.write(msg + "\n")
        self.file.flush()


def nvidia_smi() -> str:
    """``none`` (no nvidia-smi), ``gpu`` (it lists one), ``empty`` or ``failed``."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return "none"
    try:
        p = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "failed"
    if p.returncode != 0:
        return "failed"
    return "gpu" if any(ln.startswith("GPU ") for ln in p.stdout.splitlines()) else "empty"


def install(wheels: Path, site: Path, log: Log) -> list[str]:
    """Install the dependencies that do not import, from the wheel folder; what is still
    missing afterwards."""
    missing = _missing(site)
    if missing and wheels.is_dir():
        # every wheel of the folder, without resolving dependencies: the folder holds
        # exactly what the machine lacks (scripts/gpu_wheels.sh), and pip could not reach
        # an index for anything else
        files = sorted(str(w) for w in wheels.glob("*.whl"))
        log(f"installing {len(files)} wheels from {wheels} (missing: {', '.join(missing)})")
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-index",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
                str(site),
                *files,
            ],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if p.returncode:
            log(f"pip install failed: {(p.stderr.strip().splitlines() or [''])[-1]}")
        missing = _missing(site)
    return missing


def _env(site: Path) -> dict[str, str]:
    paths = [str(ROOT), str(site), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def _missing(site: Path) -> list[str]:
    code = (
        "import importlib.util, sys; print(' '.join(m for m in sys.argv[1:] "
        "if importlib.util.find_spec(m) is None))"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, *DEPENDENCIES],
        capture_output=True,
        text=True,
        env=_env(site),
        timeout=60,
    )
    return p.stdout.split()


def preflight(site: Path) -> dict:
    code = """import json, torch
m = torch.backends.cuda.matmul
info = {"torch": torch.__version__, "cuda": torch.version.cuda,
        "devices": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "matmul_tf32": getattr(m, "fp32_precision", None) or m.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision()}
if info["devices"]:
    p = torch.cuda.get_device_properties(0)
    info["gpu"] = f"{p.name}, {p.total_memory / 2**30:.0f} GiB"
print(json.dumps(info))"""
    try:
        p = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=_env(site),
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        return {"error": "importing torch took over 120 s"}
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["torch does not import"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--budget", type=float, default=300.0, help="seconds in all (default 300)")
    a.add_argument(
        "--wheels",
        type=Path,
        default=ROOT / "gpu_wheels",
        help="the folder of wheels made by scripts/gpu_wheels.sh",
    )
    a.add_argument(
        "--rehearse",
        action="store_true",
        help="on a machine without a GPU: install from the wheel folder and run "
        "every step with CPU standing in for CUDA (proves the script and its "
        "environment work, not that CUDA agrees)",
    )
    a.add_argument("--step", help=argparse.SUPPRESS)
    args = a.parse_args(argv)
    if args.step:
        from gpu_steps import run_step

        return run_step(args.step, ROOT)
    start = time.monotonic()
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else Path(tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "gpu_check.log")
    results: dict = {"steps": {}, "rehearsal": args.rehearse}

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    site = work / "site"

    def finish(code: int) -> int:
        shutil.rmtree(work, ignore_errors=True)
        results["exit"] = code
        results["seconds"] = round(time.monotonic() - start, 1)
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        log(f"gpu_check: exit {code}; results.json and gpu_check.log in {out}")
        return code

    smi = nvidia_smi()
    info = preflight(site)
    results["preflight"] = {"nvidia_smi": smi, **info}
    log(f"preflight: nvidia-smi {smi}; {json.dumps(info)}")
    if "error" in info:
        log(f"gpu_check: torch does not work here: {info['error']}")
        return finish(2)
    if not info["devices"] and not args.rehearse:
        if smi in ("gpu", "failed"):
            log(
                "gpu_check: nvidia-smi "
                + ("lists a GPU" if smi == "gpu" else "fails")
                + " but torch sees no CUDA device: the driver, the CUDA build of torch or "
                "CUDA_VISIBLE_DEVICES is wrong"
            )
            return finish(2)
        log("gpu_check: no GPU here (no nvidia-smi, torch sees no CUDA device); nothing to check")
        return finish(0)
    missing = install(args.wheels, site, log)
    results["preflight"]["missing"] = missing
    if missing:
        log(
            f"gpu_check: not importable: {', '.join(missing)} (make the wheel folder with "
            f"scripts/gpu_wheels.sh and bring it as {args.wheels})"
        )
        return finish(2)
    failed = False
    for name, limit in STEPS:
        left = args.budget - (time.monotonic() - start)
        # a rehearsal on the CPU runs the same work far slower: it proves the path, so it
        # gets ten times the time (give it a --budget to match)
        timeout = min(limit * (10 if args.rehearse else 1), left)
        if timeout < 10:
            results["steps"][name] = {"status": "skipped", "detail": "out of budget"}
            log(f"== {name}: skipped (budget)")
            continue
        log(f"== {name} (at most {timeout:.0f} s)")
        t0 = time.monotonic()
        cmd = [sys.executable, str(Path(__file__)), "--step", name]
        env = {
            **_env(site),
            "GPU_CHECK_WORK": str(work / name),
            "GPU_CHECK_DEVICE": "cpu" if args.rehearse else "cuda",
        }
        env["PYTHONPATH"] += os.pathsep + str(ROOT / "scripts")
        try:
            p = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
            )
            status = "passed" if p.returncode == 0 else "failed"
            text = p.stdout + p.stderr
        except subprocess.TimeoutExpired as e:
            status = "timeout"
            text = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        for line in text.strip().splitlines():
            log(f"   {line}")
        detail = (text.strip().splitlines() or [""])[-1][:300]
        results["steps"][name] = {
            "status": status,
            "seconds": round(time.monotonic() - t0, 1),
            "detail": detail,
        }
        log(f"   -> {status}")
        failed |= status in ("failed", "timeout")
    return finish(1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
