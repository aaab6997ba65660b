"""Speed and memory of flowspec's compiled models against a hand-written PyTorch Glow.

    python bench/speed.py                 # the documented run (2-3 minutes on 2 cores)
    python bench/speed.py --quick         # fewer repeats, for a smoke test
    python bench/speed.py --compile       # also torch.compile (inductor: minutes per model)

For the Glow backbone of ``specs/glow_mnist.flow`` at levels-steps-hidden 3-4-96 and
3-2-48 (1x32x32, batch 32) it builds ``bench/reference_glow.py`` with the same parameter
count (asserted) and, after copying flowspec's weights into it, the same outputs (asserted),
then measures in one process, interleaved:

* training step: forward, ``-log_prob`` in bits/dim, backward, Adamax step; images/s;
* sampling: ``sample(32, temperature=0.7)`` (the inverse), images/s;
* peak memory of one training step above what is allocated before it (parameters and
  optimiser state): on CUDA ``torch.cuda.max_memory_allocated``; on CPU the allocator's
  own allocation and free events recorded by ``torch.profiler`` (``profile_memory=True``),
  whose running sum is the bytes held by tensors at each moment (``resource``'s RSS is
  process-wide and never goes down, tracemalloc does not see torch's allocator);

for the reference, the compiled model (plain, and with its options), and the same spec with
iMap or iSDP inserted after every coupling (the paper's pos-4), to give the overhead of the
attention layers. Every variant of a group runs ``--steps`` steps in turn, the order rotating
between the ``--repeats`` rounds, and keeps the fastest of its steps in each round (a step
that another process interrupted is discarded); a time is the median over rounds, and a
ratio the median over rounds of the per-round ratio, so slow drift of a shared machine
cancels. On CPU with one torch thread the clock is the process's CPU time, which does not
count waiting for a core (``--clock wall`` for wall time). Writes its section of
``docs/performance.md``.

The allocator (``--allocator``, Linux with glibc): a ``flowspec train`` process reaches its
first step with glibc's adaptive ``mmap`` threshold raised by its data loading, and then
takes no page faults per step; a bench process, which loads no data, would get a fresh
``mmap`` (and its page faults, in kernel time) for most activations of every step, a cost
and a noise that training never sees. So by default (``train``) the bench sets the same
state with ``mallopt`` before building anything; ``default`` keeps glibc's defaults. The
minor page faults and kernel time per training step are printed with the results.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime as dt
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from reference_glow import Glow, from_spec

import flowspec

BATCH = 32
SPEC = ROOT / "specs" / "glow_mnist.flow"
#: The backbone with attention after every coupling; imports resolve next to glow_mnist.flow.
ATTENTION = """flowspec 0.1
import "glow_mnist.flow" as glow

flow glow_imap extends glow.glow_mnist {
  insert attention imap after coupling
}

flow glow_isdp(heads = 5) extends glow.glow_mnist {
  insert attention isdp heads=heads patches=4 after coupling
}

flow glow_actnorm extends glow.glow_mnist {
  insert actnorm after coupling
}

flow glow_invconv extends glow.glow_mnist {
  insert invconv after coupling
}
"""
#: For scale: what one more plain layer after every coupling costs (rows ``+actnorm``,
#: ``+invconv``), the floor any inserted layer pays per call at these sizes.
CALIBRATION = {"flowspec +actnorm": "glow_actnorm", "flowspec +invconv": "glow_invconv"}
SIZES = {"3-4-96": {"L": 3, "K": 4, "hidden": 96}, "3-2-48": {"L": 3, "K": 2, "hidden": 48}}
#: ``cpu``: CPU time of this process (``time.process_time``): with one torch thread it is the
#: compute time, and does not count waiting for a core on a shared machine; ``wall``.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
#: glibc ``mallopt`` parameters, and the values a ``flowspec train`` process ends up with:
#: its data loading frees blocks above the adaptive threshold, which raises the threshold
#: towards its maximum, 32 MiB on 64-bit systems, and the trim threshold with it.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
TRAIN_ALLOCATOR = {_M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20}
TARGETS = {
    "step": 1.0,
    "step_options": 0.9,
    "imap": 1.05,
    "isdp": 1.15,
    "memory": 1.0,
    "check": 0.3,
}


def set_allocator(mode: str) -> str:
    """``train``: glibc's malloc as a training process finds it (see the module docstring);
    ``default``: unchanged. Returns what was done, for the report."""
    if mode == "default":
        return "glibc defaults"
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    if libc is None or not hasattr(libc, "mallopt") or platform.system() != "Linux":
        return "unchanged (no glibc mallopt here)"
    refused = [k for k, v in TRAIN_ALLOCATOR.items() if libc.mallopt(k, v) != 1]
    if refused:
        return f"partly set (mallopt refused parameter(s) {refused})"
    return (
        "glibc mallopt as a training process has it (mmap threshold 32 MiB, trim threshold 64 MiB)"
    )


def page_faults(step: Callable[[], None], n: int = 5) -> tuple[float, float]:
    """Minor page faults of this process, and its kernel (system) time in ms, per call of
    ``step``."""
    step()
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(n):
        step()
    after = resource.getrusage(resource.RUSAGE_SELF)
    return ((after.ru_minflt - before.ru_minflt) / n, (after.ru_stime - before.ru_stime) * 1e3 / n)


# ------------------------------------------------------------------ models and equivalence
def copy_into_reference(ref: Glow, model: torch.nn.Module) -> None:
    """Give the reference flowspec's weights: same parameter order and shapes by design."""
    ps, qs = list(ref.parameters()), list(model.parameters())
    assert len(ps) == len(qs), (len(ps), len(qs))
    with torch.no_grad():
        for p, q in zip(ps, qs):
            assert p.shape == q.shape, (p.shape, q.shape)
            p.copy_(q)
        convs = [m for m in ref.modules() if hasattr(m, "perm")]
        invconvs = [m for m in model.layers if hasattr(m, "perm")]
        for a, b in zip(convs, invconvs, strict=True):
            a.perm.copy_(b.perm)
            a.sign.copy_(b.sign)
    for m in ref.modules():
        if hasattr(m, "initialized"):
            m.initialized = True


def build_pair(size: str, device: torch.device, x: torch.Tensor):
    spec = flowspec.load(SPEC, overrides=SIZES[size])
    model = flowspec.compile(spec, device=device, seed=0)
    ref = from_spec(spec).to(device)
    n_ref = sum(p.numel() for p in ref.parameters())
    n_fs = sum(p.numel() for p in model.parameters())
    assert n_ref == n_fs, f"parameter counts differ: reference {n_ref}, flowspec {n_fs}"
    model.train()
    with torch.no_grad():
        model(x)  # actnorm's data-dependent init
    copy_into_reference(ref, model)
    model.eval()
    ref.eval()
    with torch.no_grad():
        (za, la), (zb, lb) = ref(x), model(x)
        err = max(float((a - b).abs().max()) for a, b in zip(za + [la], zb + [lb]))
        scale = float(lb.abs().max())
    assert err <= 1e-4 * max(1.0, scale), f"reference and flowspec differ by {err}"
    return spec, model, ref, n_fs


def variant(spec, base: torch.nn.Module, device: torch.device, **options) -> torch.nn.Module:
    """The compiled model of ``spec`` with ``options``, holding ``base``'s weights."""
    model = flowspec.compile(spec, device=device, seed=0, **options)
    model.load_state_dict(base.state_dict())
    return model


def attention_model(name: str, size: str, device: torch.device, x: torch.Tensor):
    spec = flowspec.loads(
        ATTENTION,
        flow=name,
        overrides=SIZES[size],
        filename=str(ROOT / "specs" / "_bench_attention.flow"),
    )
    model = flowspec.compile(spec, device=device, seed=0)
    model.train()
    with torch.no_grad():
        model(x)
    return model


# ------------------------------------------------------------------ measurements
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: torch.nn.Module) -> Callable[[torch.Tensor], None]:
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4, foreach=True)  # as runtime.trainer

    def step(x: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        bpd = -model.log_prob(x).mean() / (x[0].numel() * math.log(2.0))
        bpd.backward()
        opt.step()

    return step


def peak_memory(
    step: Callable[[torch.Tensor], None], x: torch.Tensor, device: torch.device
) -> int:
    """Peak bytes allocated during one ``step(x)`` above the bytes allocated before it."""
    step(x)  # steady state: optimiser state exists
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step(x)
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(x)
    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type().name == "CPU"
    )
    held = peak = 0
    for _, nbytes in events:
        held += nbytes
        peak = max(peak, held)
    return peak


def interleaved(
    fns: dict[str, Callable[[], None]],
    repeats: int,
    steps: int,
    device: torch.device,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Per round, each function's fastest of ``steps`` calls, in a rotating order."""
    names = list(fns)
    for name in names:  # warm-up
        fns[name]()
    rounds: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            times = []
            for _ in range(steps):
                sync(device)
                t = clock()
                fns[name]()
                sync(device)
                times.append(clock() - t)
            rounds[name].append(min(times))
    return rounds


def ratio(rounds: dict[str, list[float]], a: str, b: str) -> float:
    return statistics.median(x / y for x, y in zip(rounds[a], rounds[b]))


def spread(rounds: dict[str, list[float]], a: str, b: str) -> str:
    """The interquartile range of the per-round ratios, as ``lo-hi`` (with fewer than four
    rounds, their range)."""
    r = [x / y for x, y in zip(rounds[a], rounds[b])]
    if len(r) < 4:
        return f"{min(r):.2f}-{max(r):.2f}"
    q = statistics.quantiles(r, n=4)
    return f"{q[0]:.2f}-{q[2]:.2f}"


# ------------------------------------------------------------------ the benchmark
def run_size(size: str, device: torch.device, args: argparse.Namespace) -> dict:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((BATCH, 1, 32, 32), generator=gen).to(device)
    spec, base, ref, n_params = build_pair(size, device, x)
    models: dict[str, torch.nn.Module] = {
        "reference": ref,
        "flowspec": base,
        "flowspec channels_last": variant(spec, base, device, channels_last=True),
        "flowspec checkpoint": variant(spec, base, device, checkpoint=True),
    }
    if args.compile:
        models["flowspec compile, channels_last"] = variant(
            spec, base, device, channels_last=True, compile=True
        )
    models["flowspec +iMap"] = attention_model("glow_imap", size, device, x)
    models["flowspec +iSDP"] = attention_model("glow_isdp", size, device, x)
    for name, flow in CALIBRATION.items():
        models[name] = attention_model(flow, size, device, x)
    for m in models.values():
        m.train()
    steps = {name: train_step(m) for name, m in models.items()}
    print(
        f"[{size}] {n_params:,} parameters (reference and flowspec); timing training steps ...",
        flush=True,
    )
    clock = CLOCKS[args.clock]
    train = interleaved(
        {n: (lambda s=s: s(x)) for n, s in steps.items()}, args.repeats, args.steps, device, clock
    )
    faults = {name: page_faults(lambda s=s: s(x)) for name, s in steps.items()}
    memory = {}
    for name, s in steps.items():
        memory[name] = peak_memory(s, x, device)
    for m in models.values():
        m.eval()
    print(f"[{size}] timing sampling ...", flush=True)
    sample_fns = {}
    for name, m in models.items():

        def fn(m: torch.nn.Module = m) -> None:
            with torch.no_grad():
                m.sample(BATCH, 0.7)

        sample_fns[name] = fn
    sample = interleaved(sample_fns, args.repeats, max(1, args.steps - 1), device, clock)
    return {
        "params": n_params,
        "train": train,
        "sample": sample,
        "memory": memory,
        "faults": faults,
    }


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _mark(value: float, target: float, iqr: str = "") -> str:
    within = f" [rounds' IQR {iqr}]" if iqr else ""
    return f"{value:.3f}x{within} {'(meets)' if value <= target else '(ABOVE target)'}"


def tables(results: dict[str, dict]) -> tuple[str, list[str]]:
    lines = [
        (
            "| backbone | variant | train step ms | train img/s | step time / ref (IQR) | "
            "sample img/s | sample time / ref | peak train MiB | memory / ref |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    status = []
    for size, r in results.items():
        tr, sa, mem = r["train"], r["sample"], r["memory"]
        for name in tr:
            t = statistics.median(tr[name])
            s = statistics.median(sa[name])
            lines.append(
                f"| {size} | {name} | {t * 1e3:.0f} | {BATCH / t:.0f} | "
                f"{ratio(tr, name, 'reference'):.2f}x ({spread(tr, name, 'reference')}) | "
                f"{BATCH / s:.0f} | "
                f"{ratio(sa, name, 'reference'):.2f}x | {mem[name] / 2**20:.1f} | "
                f"{mem[name] / mem['reference']:.2f}x |"
            )
        best = min(
            (n for n in tr if n.startswith("flowspec") and " +" not in n),
            key=lambda n: ratio(tr, n, "reference"),
        )
        plain, opts = ratio(tr, "flowspec", "reference"), ratio(tr, best, "reference")
        imap, isdp = (
            ratio(tr, "flowspec +iMap", "flowspec"),
            ratio(tr, "flowspec +iSDP", "flowspec"),
        )
        mem_plain = mem["flowspec"] / mem["reference"]
        mem_ckpt = mem["flowspec checkpoint"] / mem["reference"]
        status += [
            (
                f"- {size}: training step time, compiled backbone (no options) / reference: "
                f"{_mark(plain, TARGETS['step'], spread(tr, 'flowspec', 'reference'))} "
                f"(target <= {TARGETS['step']}x)"
            ),
            (
                f"- {size}: training step time, best options (`{best}`) / reference: "
                f"{_mark(opts, TARGETS['step_options'], spread(tr, best, 'reference'))} "
                f"(aim <= {TARGETS['step_options']}x)"
            ),
            (
                f"- {size}: iMap after every coupling, step time / backbone's: "
                f"{_mark(imap, TARGETS['imap'], spread(tr, 'flowspec +iMap', 'flowspec'))} "
                f"(target <= {TARGETS['imap']}x)"
            ),
            (
                f"- {size}: iSDP after every coupling, step time / backbone's: "
                f"{_mark(isdp, TARGETS['isdp'], spread(tr, 'flowspec +iSDP', 'flowspec'))} "
                f"(target <= {TARGETS['isdp']}x)"
            ),
            (
                f"- {size}: for scale, one more plain layer after every coupling, step time / "
                "backbone's: "
                + ", ".join(
                    f"{name.split('+')[1]} {ratio(tr, name, 'flowspec'):.3f}x "
                    f"[rounds' IQR {spread(tr, name, 'flowspec')}]"
                    for name in CALIBRATION
                )
            ),
            (
                f"- {size}: peak training memory / reference: {_mark(mem_plain, 1.0)} without "
                f"options, {mem_ckpt:.3f}x with checkpoint=True (target <= "
                f"{TARGETS['memory']}x)"
            ),
        ]
    return "\n".join(lines), status


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the text between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + ("\n\n" if text else "") + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on CPU (default 1: stable on a shared box)",
    )
    p.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--steps", type=int, default=3, help="timed calls per round (default 3)")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument(
        "--compile",
        action="store_true",
        help="also time torch.compile (inductor; minutes of compilation on CPU)",
    )
    p.add_argument("--quick", action="store_true", help="3 rounds of 2 steps")
    p.add_argument(
        "--clock",
        choices=list(CLOCKS),
        default=None,
        help="cpu (process CPU time; default on CPU) or wall (default on CUDA)",
    )
    p.add_argument(
        "--allocator",
        choices=["train", "default"],
        default="train",
        help="train: glibc's malloc as a flowspec train process has it (no page "
        "faults per step; default); default: glibc's defaults",
    )
    p.add_argument(
        "--section", default="speed", help="name of the docs section to rewrite (default speed)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "performance.md",
        help="markdown file whose `speed` section is rewritten ('-' for none)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = 3, 2
    device = torch.device(args.device)
    if args.clock is None:
        args.clock = "cpu" if device.type == "cpu" and args.threads == 1 else "wall"
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    allocator = set_allocator(args.allocator)
    start = time.perf_counter()
    results = {size: run_size(size, device, args) for size in args.sizes}
    table, status = tables(results)
    took = time.perf_counter() - start
    command = "python bench/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    body = "\n".join(
        [
            f"Command: `{command.strip()}` ({args.repeats} interleaved rounds of {args.steps} "
            f"timed training steps per variant, the fastest of each round kept; sampling "
            f"{max(1, args.steps - 1)} per round), {took / 60:.1f} min in all. Clock: "
            f"{args.clock} time"
            + (" (process CPU time, one torch thread)" if args.clock == "cpu" else "")
            + ".",
            f"Machine: {machine(device)}, device `{device}`. Allocator: {allocator}; minor page "
            "faults (kernel ms) per training step: "
            + "; ".join(
                f"{size}: "
                + ", ".join(f"{n} {f:.0f} ({ms:.1f})" for n, (f, ms) in r["faults"].items())
                for size, r in results.items()
            )
            + ".",
            f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
            "",
            table,
            "",
            "Where the targets stand (measured in this run):",
            "",
            *status,
        ]
    )
    print(body)
    if str(args.out) != "-":
        write_section(args.out, args.section, body)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
