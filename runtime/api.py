"""The runtime's Python entry points: :func:`train`, :func:`evaluate`, :func:`sample`.

    result  = runtime.train("specs/demo.flow", out="runs/demo", steps=400)
    metrics = runtime.evaluate("specs/demo.flow", "runs/demo/checkpoint.pt")
    path    = runtime.sample("specs/demo.flow", "runs/demo/checkpoint.pt", n=64,
                             temperature=0.7, output="grid.png")

Every failure the user can fix raises :class:`runtime.RunError` before any training step;
spec errors raise :class:`flowspec.FlowSpecError` as everywhere else. A checkpoint is only
loaded into the model it was trained with (same IR digest; ``strict=False`` relaxes this to
"the parameters that still fit"), and spec warnings (e.g. W003, deep attention stacks) are
printed on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from flowspec import codes
from flowspec.ir import FlowSpec

from . import checkpoint as ckpt
from . import dequantize, determinism, finite, soundness
from . import ema as ema_
from .distributed import resolve_device
from .errors import RunError
from .recipe import RECON_WARN, Recipe, resolve_recipe, set_data
from .reconstruction import recon_batch, reconstruction
from .trainer import RunResult, Trainer, _warn

SpecLike = str | os.PathLike | FlowSpec


def _load_spec(
    spec: SpecLike, flow: str | None, overrides: dict[str, Any] | None
) -> tuple[FlowSpec, dict[str, Any]]:
    from flowspec import analyze
    from flowspec.errors import raise_if_errors

    if isinstance(spec, FlowSpec):
        return spec, {"spec_file": spec.file, "overrides": dict(spec.params)}
    if not Path(spec).is_file():
        raise RunError(f"no spec file {spec}")
    specs, diags = analyze(spec, flow, overrides)
    raise_if_errors(diags)
    for d in diags:  # warnings only, after raise_if_errors
        print(d.render(), file=sys.stderr)
    warnings = [
        {
            "code": d.code,
            "message": d.message,
            "where": f"{d.span.file}:{d.span.line}:{d.span.column}" if d.span else None,
        }
        for d in diags
    ]
    return specs[0], {
        "spec_file": str(spec),
        "overrides": dict(overrides or {}),
        "warnings": warnings,
    }


def train(
    spec: SpecLike,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    data: Any = None,
    val_data: Any = None,
    out: str | os.PathLike | None = None,
    steps: int | None = None,
    batch: int | None = None,
    device: str = "auto",
    resume: bool = False,
    seed: int | None = None,
    progress: bool = True,
    strict: bool = True,
    recon_warn: float | None = RECON_WARN,
    build_options: dict[str, Any] | None = None,
    tensorboard: bool = False,
    verify: bool = True,
    threads: int | None = None,
    **recipe: Any,
) -> RunResult:
    """Train a flow on its task; the spec's ``train { }`` block is the default recipe.

    Args:
        spec: a ``.flow`` path (with ``flow`` and ``overrides`` as for
            :func:`flowspec.load`) or a loaded :class:`flowspec.FlowSpec`.
        data: a built-in name or a path, optionally with options: ``"faces resize=true"``;
            or a map-style torch ``Dataset`` or a tensor of images, which replaces the spec's
            data line (:mod:`runtime.userdata` says what its items may be).
        val_data: with a Dataset ``data``, the held-out one (default: every tenth item).
        out: the run folder (default ``runs/FLOW-YYYYmmdd-HHMMSS``).
        steps, batch, seed: override the recipe.
        device: ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
        resume: continue the run in ``out`` from its ``checkpoint.pt``, bit for bit.
        progress: show a tqdm progress bar.
        strict: with ``resume``, refuse a checkpoint of another model (naming what differs);
            ``False`` warns and loads the parameters that still fit.
        recon_warn: warn (stderr, and ``warnings`` in metrics.jsonl and summary.json) when a
            validation finds ``max|x - inverse(forward(x))| / max|x|`` above this; ``None``
            or 0 turns the warning off (the error is logged either way).
        build_options: keyword arguments of :func:`flowspec.compile` that change speed and
            memory, not the function: ``channels_last``, ``compile``, ``checkpoint``,
            ``autocast``.
        tensorboard: also write TensorBoard event files (scalars, sample grids, the
            diagram) to ``out/tensorboard`` (:mod:`runtime.tracking`).
        verify: before step 1, verify every layer whose kind or net a plugin defines (and a
            plugin prior) as ``flowspec verify`` does, and refuse an inexact one
            (:mod:`runtime.soundness`); ``False`` trains anyway, warns, and records
            ``"verified": false`` in ``summary.json``.
        threads: CPU threads for torch (``--threads``; default: torch's choice).
        **recipe: any other :class:`runtime.recipe.Recipe` field: ``lr``, ``warmup``,
            ``clip``, ``weight_decay``, ``optimizer``, ``bits``, ``val_every``,
            ``sample_every``, ``checkpoint_every``, ``val_images``, ``sr_images``,
            ``data_options`` (a dict merged into the data line's options), ``task``, ``scale``,
            ``pretrain_steps``, ``pretrain_lr``, ``freeze_fraction`` (``pretrain encoder`` and
            ``freeze encoder``: :mod:`runtime.pretrain`), ``deterministic``
            (:mod:`runtime.determinism`; before CUDA has started in this process).

    Returns:
        a :class:`runtime.trainer.RunResult` (run folder, final held-out bits/dim, the
        summary written to ``summary.json`` and the trained model).
    """
    if threads is not None:
        if threads < 1:
            raise RunError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    from . import userdata

    own = userdata.is_dataset(data)
    if val_data is not None and not own:
        raise RunError(
            "val_data goes with data=Dataset (or a tensor); a named data set "
            "brings its own validation split"
        )
    loaded, source = _load_spec(spec, flow, overrides)
    r = resolve_recipe(
        loaded, data=None if own else data, steps=steps, batch=batch, seed=seed, **recipe
    )
    supplied = None
    if own:
        r.data, r.data_options = userdata.describe(data), {}
        supplied = lambda task: userdata.task_data(task, data, val_data)  # noqa: E731
    with determinism.configured(r.deterministic, resolve_device(device)):  # before CUDA work
        verified = soundness.verify_vocabulary(
            loaded,
            verify=verify,
            command="train",
            warn=_warn,
            spec_file=source["spec_file"],
            overrides=source["overrides"],
        )
        return Trainer(
            loaded,
            r,
            out=out,
            device=device,
            resume=resume,
            progress=progress,
            source=source,
            recon_warn=recon_warn,
            strict=strict,
            build_options=build_options,
            tensorboard=tensorboard,
            verified=verified,
            threads=threads,
            supplied=supplied,
        ).run()


def _restore(
    spec: SpecLike | None,
    checkpoint: str | os.PathLike,
    flow: str | None,
    overrides: dict[str, Any] | None,
    device: str,
    strict: bool = True,
    ema: bool = True,
) -> tuple[Any, FlowSpec, Recipe, dict[str, Any]]:
    """The trained model of a checkpoint (eval mode), its spec and its recipe; ``ema``: its
    averaged weights when the run kept them (:mod:`runtime.ema`), else the raw ones.

    Without ``spec`` the model is rebuilt from the IR stored in the checkpoint; with one,
    ``flow`` and ``overrides`` default to those the run was trained with, and the spec must
    describe the same model (IR digest; ``strict=False``: a warning, and the parameters
    that still fit are loaded).
    """
    from flowspec import compile as build
    from flowspec.errors import FlowNameError

    from .distributed import resolve_device

    ck = ema_.weights(ckpt.load(checkpoint), ema)  # [ema hook] `ema` as the model
    soundness.check_checkpoint_plugins(ck, checkpoint, ckpt.stored_spec(ck))
    if spec is None:
        stored = ckpt.stored_spec(ck)
        if stored is None:
            raise RunError(
                f"the checkpoint {checkpoint} holds no readable model description "
                "(IR); pass the spec it was trained with"
            )
        loaded = stored
    else:
        named_by_checkpoint = flow is None and not isinstance(spec, FlowSpec)
        if not isinstance(spec, FlowSpec):
            flow = flow if flow is not None else ck.get("flow")
            overrides = overrides if overrides is not None else ck.get("overrides")
        try:
            loaded, _ = _load_spec(spec, flow, overrides)
        except FlowNameError as e:
            unknown = [d for d in e.diagnostics if d.code == codes.E_UNKNOWN_FLOW]
            if not (named_by_checkpoint and flow and unknown):
                raise
            flows = f" ({unknown[0].help})" if unknown[0].help else ""
            raise RunError(
                f"{spec} has no flow `{flow}`{flows}: that name comes from the "
                f"checkpoint {checkpoint}, whose run trained flow `{flow}`; pass "
                "--flow NAME to load it into another flow of the file"
            ) from None
    same = ckpt.check_spec(ck, loaded, checkpoint, strict=strict, warn=_warn)
    try:
        recipe = Recipe.from_json(ck["recipe"])
    except (KeyError, TypeError) as e:
        raise RunError(f"the checkpoint {checkpoint} holds no readable recipe ({e})") from e
    model = build(loaded, device=resolve_device(device), seed=0)
    dequantize.attach(model, recipe, tuple(loaded.input))  # q(u|x), when the run learnt one
    ckpt.load_model(model, ck, checkpoint, strict=same, warn=_warn)
    finite.check_parameters(model, checkpoint)
    model.eval()
    return model, loaded, recipe, ck


def evaluate(
    spec: SpecLike | None,
    checkpoint: str | os.PathLike,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    temperatures: list[float] | tuple[float, ...] | None = None,
    data: str | None = None,
    val_images: int | str | None = None,
    lpips: str | os.PathLike | None = None,
    device: str = "auto",
    out: str | os.PathLike | None = None,
    strict: bool = True,
    measure: str | list[str] | tuple[str, ...] = "bpd",
    features: str | os.PathLike | None = None,
    samples: int = 1000,
    temperature: float = 1.0,
    verify: bool = True,
    iw_samples: int | None = None,
    y_channel: bool = False,
    crop_border: int = 0,
    ema: bool = True,
) -> dict[str, Any]:
    """Held-out metrics of a checkpoint, written to ``eval.json`` beside it (or ``out``).

    The validation subset and its dequantisation noise are those of training (same
    recipe, same seed), so ``bpd`` reproduces the run's logged validation bits/dim.
    Super-resolution adds PSNR, SSIM and LR-PSNR averaged over ``temperatures``
    (default 0.1 ... 0.9, as in the paper), and LPIPS when ``lpips`` names a local
    file (else ``"unavailable"``). ``recon_error`` / ``recon_rel`` are
    ``max|x - inverse(forward(x))|`` (and over ``max|x|``) on the first validation images,
    as logged in training.

    ``measure`` (``"bpd,fid,kid,is"`` or a list) adds sample quality to those held-out
    numbers: FID, KID and IS of ``samples`` samples at ``temperature`` against as many
    validation images, on the feature network ``features`` (:mod:`runtime.quality`:
    ``None`` or ``"inception"`` looks for the Inception weights in the cache folder).
    ``lpips`` is torchvision's AlexNet checkpoint or a TorchScript LPIPS module
    (:mod:`runtime.perceptual`).

    ``val_images``: how many validation images (default: the run's ``val_images``), or
    ``"all"`` for the whole validation split. ``iw_samples`` K adds ``bpd_iw``, the
    importance-weighted bound over K dequantisation draws per image (under the run's learned
    ``q(u|x)`` with ``dequantize variational``; K = 1 is ``bpd``), as Flow++ and others report
    test likelihoods (:meth:`runtime.task_base.Task.val_bpd_iw`). ``y_channel`` and
    ``crop_border`` score super-resolution as BasicSR does (:mod:`runtime.srprotocol`); the
    bicubic baseline (``psnr_bicubic`` ...) is scored the same way.

    ``bpd_estimated`` and ``bpd_method`` say how ``bpd`` was computed: exactly, or as an
    unbiased estimate when layers estimate their log-dets (also said on stderr); such a flow
    refuses ``iw_samples`` (:func:`runtime.soundness.refuse_iw`).

    ``verify``: first verify the flow's plugin vocabulary as :func:`train` does; a held-out
    bits/dim below 0 is refused either way (:mod:`runtime.soundness`). ``ema``: evaluate
    the averaged weights of a run with ``ema`` (``False``: the raw ones); ``weights`` in
    the result says which.
    """
    from .distributed import resolve_device
    from .perceptual import load_lpips
    from .quality import load_features, sample_quality
    from .srprotocol import Protocol
    from .tasks import make_task

    wanted = _measures(measure)
    protocol = Protocol(y_channel=y_channel, crop_border=int(crop_border))
    whole = val_images == "all"
    if not (val_images is None or whole or (isinstance(val_images, int) and val_images >= 1)):
        raise RunError(f'val_images must be a count of at least 1 or "all", got {val_images!r}')
    if iw_samples is not None and (not isinstance(iw_samples, int) or iw_samples < 1):
        raise RunError(f"iw_samples must be a whole number of at least 1, got {iw_samples!r}")
    lp = load_lpips(lpips, resolve_device(device))  # files are checked before any model
    net = (
        load_features(features or "inception", resolve_device(device))
        if any(m != "bpd" for m in wanted)
        else None
    )

    model, loaded, r, ck = _restore(spec, checkpoint, flow, overrides, device, strict, ema)
    soundness.refuse_iw(loaded, iw_samples)
    estimated, method = soundness.bpd_method(loaded)
    if estimated:
        print(f"eval: the bits/dim of `{loaded.name}` is an {method}", file=sys.stderr)
    spec_file = ck.get("spec_file") if spec is None or isinstance(spec, FlowSpec) else str(spec)
    verified = soundness.verify_vocabulary(
        loaded,
        verify=verify,
        command="eval",
        warn=_warn,
        spec_file=spec_file,
        overrides=ck.get("overrides"),
    )
    from . import userdata

    own = userdata.is_dataset(data)
    if data is not None and not own:
        set_data(r, data)
    if val_images is not None and not whole:
        r.val_images = val_images
    elif whole and own:
        r.val_images = len(data)
    task = make_task(loaded, r)
    if own:  # all of it is held out: it is the data to evaluate
        r.data = userdata.describe(data)
        data_ = userdata.held_out(task, data)
    else:
        data_ = task.load(train=False, whole_val=whole)
    dev = resolve_device(device)
    extra: dict[str, Any] = {} if lp is None else {"lpips_net": lp.name}
    if net is not None:
        extra.update(
            sample_quality(
                model,
                loaded,
                r,
                tuple(m for m in wanted if m != "bpd"),
                features=net,
                samples=samples,
                temperature=temperature,
                device=dev,
            )
        )
    metrics = task.validate(
        model,
        data_,
        dev,
        full=True,
        temperatures=tuple(temperatures) if temperatures else None,
        lpips=lp,
        protocol=protocol,
    )
    if iw_samples is not None:
        metrics["bpd_iw"], _ = task.val_bpd_iw(model, data_.val, dev, iw_samples)
        metrics["iw_samples"] = iw_samples
    metrics.update(task.dequantization_metrics(model, data_, dev))
    batch = recon_batch(task, data_.val, r.seed, dev)
    finite.check_metrics(metrics, model, batch, checkpoint)
    soundness.check_bpd(
        metrics,
        what=f"evaluating {checkpoint}",
        verify_cmd=lambda: soundness.verify_command(loaded, spec_file, ck.get("overrides")),
        after=lambda: "no eval.json was written",
    )
    metrics.update(reconstruction(model, *batch).metrics())
    result = finite.json_safe(
        {
            "flow": loaded.name,
            "task": r.task,
            "checkpoint": str(checkpoint),
            "step": int(ck["step"]),
            "weights": ck["weights"],
            "data": r.data,
            "val_images": len(data_.val),
            **extra,
            **metrics,
            "bpd_estimated": estimated,
            "bpd_method": method,
            "verified": verified,
        }
    )
    folder = Path(out) if out is not None else Path(checkpoint).parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


def sample(
    spec: SpecLike | None,
    checkpoint: str | os.PathLike,
    *,
    n: int = 64,
    temperature: float = 0.7,
    cond: str | os.PathLike | None = None,
    output: str | os.PathLike = "grid.png",
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    ncol: int | None = None,
    strict: bool = True,
    classes: str | int | Sequence[int] | None = None,
    ema: bool = True,
) -> Path:
    """Draw ``n`` samples at ``temperature`` and save them as an image grid (PNG, JPEG,
    WebP, ... from the extension of ``output``).

    Class-conditional flows (``condition y: class N``) draw one row per class, or with
    ``classes`` (``--class``) ``n`` samples of one class (``3``) or rows of the listed
    classes (``"1,7"``); a run on class folders also takes their names (``"cat,dog"``) and
    labels the rows with them.

    Conditional flows need a condition: ``cond=None`` or ``"val"`` takes the first
    validation examples of the run's data and lays out rows of (condition, samples,
    ground truth), ``n`` samples spread over 8 rows; a path to an image file is used as
    the low-res input (super-resolution, the condition's exact size) or as a label map
    (translation: one channel of class ids), repeated for all ``n`` samples. ``ema``: the
    averaged weights of a run with ``ema`` (``False``: the raw ones).
    """
    from . import classcond as cc
    from . import images as im
    from .distributed import resolve_device
    from .streams import generator
    from .task_base import GRID_EXAMPLES
    from .tasks import make_task

    if n < 1:
        raise RunError(f"--n must be at least 1, got {n}")
    try:
        fmt = im.image_format(output)
    except ValueError as e:
        raise RunError(str(e)) from e
    model, loaded, r, ck = _restore(spec, checkpoint, flow, overrides, device, strict, ema)
    dev = resolve_device(device)
    task = make_task(loaded, r)
    names = ck.get("class_names")  # a run on class folders: --class NAME, named grid rows
    g = generator(seed, dev)
    with torch.no_grad(), finite.watch_samples(model, temperature, _warn) as checked:
        task.check_samples = checked
        if classes is not None and r.task != "generation":
            raise RunError(
                f"--class is for class-conditional generation flows (`condition "
                f"NAME: class N`); flow `{loaded.name}` is trained for {r.task}"
            )
        if r.task == "generation":
            if cond is not None:
                raise RunError(
                    f"flow `{loaded.name}` takes no --cond (it is for "
                    "super_resolution and translation; a class-conditional flow "
                    "takes --class)"
                )
            y, cols = cc.sample_labels(task.cond, n, classes, loaded.name, names)
            cd = None if y is None else {task.cond.name: y.to(dev)}
            x = checked(model.sample(n if y is None else len(y), temperature, cd, generator=g))
            grid = im.make_grid(im.to_uint8(x, r.bits), ncol=ncol or cols or _cols(len(x)))
            if cols is not None and names and ncol in (None, cols):  # one row per class
                grid = cc.name_rows(grid, names, y[::cols].tolist(), x.shape[-2])
        elif cond is None or str(cond) == "val":
            rows = min(GRID_EXAMPLES, n)
            data = task.load(train=False)
            grid = task.grids(
                model, data, dev, (temperature,), rows=rows, per_row=max(1, n // rows)
            )[temperature]
        else:
            c = _read_condition(task, loaded, cond)
            cd = {
                task.cond.name: (im.to_condition(c) if r.task == "super_resolution" else c)
                .repeat_interleave(n, 0)
                .to(dev)
            }
            x = checked(model.sample(n, temperature, cd, generator=g))
            grid = im.make_grid(
                im.to_rgb(im.to_uint8(x, r.bits))
                if r.task == "translation"
                else im.to_uint8(x, r.bits),
                ncol=ncol or _cols(n),
            )
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    return im.save_image(grid, out, fmt)


def _cols(n: int) -> int:
    import math

    return max(1, math.ceil(math.sqrt(n)))


def _read_condition(task: Any, spec: FlowSpec, path: str | os.PathLike) -> torch.Tensor:
    from . import images as im

    c = task.cond
    p = Path(path)
    if not p.is_file():
        raise RunError(f"--cond {p}: no such file (give an image file, or `val`)")
    try:
        t = im.read_image(p, c.shape[0]) if c.type == "image" else im.read_label_map(p)
    except (OSError, ValueError) as e:
        raise RunError(f"--cond {p}: {e}") from e
    want = tuple(c.shape) if c.type == "image" else tuple(c.shape[1:])
    if tuple(t.shape[1:]) != want:
        raise RunError(
            f"--cond {p} is {'x'.join(map(str, t.shape[1:]))} but condition "
            f"`{c.name}` is {'x'.join(map(str, want))}"
        )
    if c.type == "labels" and int(t.max()) >= c.shape[0]:
        raise RunError(
            f"--cond {p} holds class {int(t.max())}, but `{c.name}` has {c.shape[0]} classes"
        )
    return t


def _measures(measure: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"bpd,fid"`` -> ``["bpd", "fid"]``, refusing unknown names. ``bpd`` (with the task's
    other held-out numbers) is always computed; the list adds sample quality."""
    from .quality import QUALITY

    names = [
        m.strip().lower()
        for m in (measure.split(",") if isinstance(measure, str) else measure)
        if m.strip()
    ]
    unknown = [m for m in names if m != "bpd" and m not in QUALITY]
    if unknown:
        raise RunError(
            f"unknown metric `{unknown[0]}` in --metrics; known: bpd, {', '.join(QUALITY)}"
        )
    return names


@dataclass
class RunInfo:
    """What a checkpoint says about the run that wrote it (:func:`load_checkpoint`)."""

    path: Path
    spec: FlowSpec  # the resolved IR stored in the checkpoint
    recipe: Recipe
    step: int
    flow: str | None
    spec_file: str | None
    overrides: dict[str, Any]
    best_val_bpd: float | None
    class_names: list[str] | None = None  # a run on class folders: the name of each class id


def load_checkpoint(
    path: str | os.PathLike, *, device: str = "auto", ema: bool = True
) -> tuple[Any, RunInfo]:
    """The trained model of a checkpoint (eval mode) and its run, without the spec file.

        model, run = flowspec.load_checkpoint("runs/demo/checkpoint.pt")
        x = model.sample(16, temperature=0.7)
        run.spec.name, run.recipe.data, run.step

    The model is rebuilt from the IR the checkpoint stores; a checkpoint without one raises
    :class:`RunError`, as does any file that is not a flowspec checkpoint. A run with
    ``ema`` gives its averaged weights (``ema=False``: the raw ones).
    """
    model, spec, recipe, ck = _restore(None, path, None, None, device, ema=ema)
    return model, RunInfo(
        Path(path),
        spec,
        recipe,
        int(ck["step"]),
        ck.get("flow"),
        ck.get("spec_file"),
        dict(ck.get("overrides") or {}),
        ck.get("best_val_bpd"),
        ck.get("class_names"),
    )
