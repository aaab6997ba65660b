"""Checkpoints: written atomically, read with ``weights_only=True``, resumable bit for bit.

A checkpoint is a dict of tensors and plain Python values only (no pickled classes), so
``torch.load(..., weights_only=True)`` reads it and loading one can never run code:

* ``model``, ``optimizer``, ``scheduler``: the three ``state_dict()``\\ s. The model's
  holds each actnorm's ``initialized`` buffer, so a loaded model never re-initialises.
* ``rng``: torch CPU (and every CUDA device's), Python ``random`` and NumPy states, and
  the data stream's ``(seed, step)``: the data order and the dequantisation noise are
  pure functions of those two (:func:`runtime.streams.stream_seed`). A CUDA run adds
  ``cuda_ranks``: each process's generator on its own device, indexed by rank
  (:func:`runtime.distributed.cuda_rng_states`). A model whose layers keep generators of
  their own (residual blocks: term counts, Hutchinson vectors) adds ``layers``: per rank,
  each such layer's ``rng_state()`` by module name
  (:func:`runtime.distributed.layer_rng_states`); checkpoints from before it lack it.
* ``step`` (optimisation steps done), ``digest`` (the IR digest of the model it belongs
  to), ``recipe``, ``flow``, ``spec_file``, ``overrides``, ``best_val_bpd``.
* ``class_names`` (runs on class folders): the name of each class id, for ``sample
  --class NAME`` and the rows of sample grids.
* ``pretrain`` (runs with ``pretrain encoder``): the pretraining steps done and, until it
  is finished, its optimiser's state (:mod:`runtime.pretrain`); ``step`` is then 0.

Writing goes to a temporary file in the same folder, is flushed and fsync'ed, and only
then ``os.replace``\\ d over the old file (atomic on POSIX): a crash or a kill at any point
leaves either the old checkpoint or the new one, never a torn file.

Reading is defensive: an empty, truncated or corrupted file, a file that is not a PyTorch
checkpoint, and a pickle that holds anything but tensors and plain values (which
``weights_only=True`` refuses to unpickle, as doing so could run code) each give a
:class:`RunError` that says which. :func:`check_spec` compares the IR digest stored in a
checkpoint with the spec it is loaded into and names what differs.
"""

from __future__ import annotations

import os
import pickle
import random
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowspec.ir import FlowSpec

from .errors import RunError
from .finite import path_of_key

FORMAT = 1


def rng_state(
    data_seed: int,
    step: int,
    cuda_ranks: list[torch.Tensor] | None = None,
    layer_ranks: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    py = random.getstate()
    npy = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": {
            "version": int(py[0]),
            "state": torch.tensor(py[1], dtype=torch.int64),
            "gauss": py[2],
        },
        "numpy": {
            "kind": str(npy[0]),
            "keys": torch.from_numpy(npy[1].astype(np.int64)),
            "pos": int(npy[2]),
            "has_gauss": int(npy[3]),
            "cached": float(npy[4]),
        },
        "data": {"seed": int(data_seed), "step": int(step)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if cuda_ranks is not None:
        state["cuda_ranks"] = list(cuda_ranks)
    if layer_ranks is not None:
        state["layers"] = list(layer_ranks)
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def save_atomic(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save`` to ``path`` so that a reader never sees a partial file.

    Raises :class:`RunError` (after removing the temporary file) when the write fails;
    the previous file at ``path``, if any, is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise RunError(
            f"could not write the checkpoint {path}: {e}; the previous "
            "checkpoint (if any) is intact"
        ) from e
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    # make the rename itself durable; not every platform lets a folder be opened
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint (CPU tensors) with ``weights_only=True``.

    Raises :class:`RunError` saying what is wrong with a file that cannot be one.
    """
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for {path.absolute()})"
        raise RunError(f"no checkpoint at {path}{where}")
    if path.stat().st_size == 0:
        raise RunError(f"the checkpoint {path} is empty (0 bytes): its write never finished")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise RunError(_refused(path, e)) from e
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        KeyError,
        IndexError,
        UnicodeDecodeError,
        zipfile.BadZipFile,
    ) as e:
        raise RunError(
            f"the checkpoint {path} is truncated or corrupted and cannot be read "
            f"({_first_line(e)}); use another checkpoint of the run (best.pt), or "
            "train again"
        ) from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT or "model" not in ck:
        raise RunError(f"{path} is not a flowspec checkpoint (format {FORMAT})")
    if not isinstance(ck["model"], dict):
        raise RunError(f"{path} is not a flowspec checkpoint: its `model` is not a state dict")
    return ck


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _refused(path: Path, e: BaseException) -> str:
    if not zipfile.is_zipfile(path):
        return (
            f"{path} is not a PyTorch checkpoint (neither a complete zip archive nor "
            "tensors): the file is corrupted, or another kind of file"
        )
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    what = f" (it asks for `{found.group(1)}`)" if found else ""
    return (
        f"{path} holds Python objects other than tensors and plain values{what}; "
        "flowspec reads checkpoints with weights_only=True and will not unpickle it, "
        "since that could run code. A flowspec checkpoint never needs it: was the file "
        "written by something else?"
    )


Warn = Callable[[str], None] | None


def stored_spec(ck: dict[str, Any]) -> FlowSpec | None:
    """The IR a checkpoint was trained with (``None`` when absent or unreadable)."""
    try:
        return FlowSpec.model_validate_json(ck["ir"])
    except (KeyError, TypeError, ValueError):
        return None


def spec_differences(old: FlowSpec, new: FlowSpec, limit: int = 6) -> list[str]:
    """What differs between two models' IR, in words, as far as the parameters go."""
    out: list[str] = []
    if tuple(old.input) != tuple(new.input):
        out.append(f"input {_fmt(old.input)} -> {_fmt(new.input)}")
    if [c.model_dump(exclude={"span"}) for c in old.conditions] != [
        c.model_dump(exclude={"span"}) for c in new.conditions
    ]:
        out.append(f"conditions [{_conds(old)}] -> [{_conds(new)}]")
    if (old.prior.learned, old.prior.on) != (new.prior.learned, new.prior.on):
        out.append(f"prior {_prior(old)} -> {_prior(new)}")
    a = {layer.path: layer for layer in old.layers}
    b = {layer.path: layer for layer in new.layers}
    if len(a) != len(b):
        out.append(f"{len(a)} layers -> {len(b)} layers")
    for path, la in a.items():
        lb = b.get(path)
        if lb is None:
            out.append(f"`{path}` ({la.kind.replace('.', ' ')}) is gone")
        elif la.kind != lb.kind:
            out.append(f"`{path}` is {la.kind.replace('.', ' ')} -> {lb.kind.replace('.', ' ')}")
        else:
            args = [
                f"{k}={la.args.get(k)!r}->{lb.args.get(k)!r}"
                for k in sorted(set(la.args) | set(lb.args))
                if la.args.get(k) != lb.args.get(k)
            ]
            if args:
                out.append(f"`{path}` {' '.join(args)}")
            elif la.in_shape != lb.in_shape:
                out.append(f"`{path}` input {_fmt(la.in_shape)} -> {_fmt(lb.in_shape)}")
    out += [
        f"`{path}` ({lb.kind.replace('.', ' ')}) is new" for path, lb in b.items() if path not in a
    ]
    if [layer.path for layer in old.layers if layer.path in b] != [
        layer.path for layer in new.layers if layer.path in a
    ]:
        out.append("the layers are in another order")
    if len(out) > limit:
        out = out[:limit] + [f"and {len(out) - limit} more"]
    return out


def check_spec(
    ck: dict[str, Any],
    spec: FlowSpec,
    path: str | os.PathLike,
    *,
    strict: bool = True,
    warn: Warn = None,
) -> bool:
    """Whether the checkpoint was trained with ``spec``'s model (same IR digest).

    A different model raises :class:`RunError` naming what differs, unless ``strict`` is
    false: then it is a warning, and the caller loads what still fits.
    """
    digest = spec.digest()
    if ck.get("digest") == digest:
        return True
    old = stored_spec(ck)
    if old is not None and _with_defaults(old).digest() == digest:
        return True  # written before a layer kind gained an argument; its default is the same
    diffs = spec_differences(_with_defaults(old), spec) if old is not None else []
    what = (
        "; ".join(diffs)
        if diffs
        else (
            f"digest {ck.get('digest')} -> {digest}"
            if old is not None
            else f"digest {ck.get('digest')} -> {digest}; the checkpoint holds no readable IR"
        )
    )
    trained = f"flow `{ck.get('flow')}` with {_overrides(ck.get('overrides')) or 'no overrides'}"
    if strict:
        raise RunError(
            f"the checkpoint {path} belongs to another model than flow "
            f"`{spec.name}`: {what}. It was trained with {trained}; pass the same "
            "spec, --flow and --set as for training, or --strict false to load the "
            "parameters that still fit"
        )
    if warn is not None:
        warn(
            f"the checkpoint {path} belongs to another model ({what}); --strict false: "
            "loading it by layer path where the parameters keep their shapes"
        )
    return False


def _with_defaults(spec: FlowSpec) -> FlowSpec:
    """``spec`` with every argument its layer kinds and encoders declare today (a
    checkpoint's IR from before an argument existed lacks it; the default keeps the old
    behaviour)."""
    from flowspec.kinds import ENCODERS, KINDS

    out = spec.model_copy(deep=True)
    for layer in out.layers:
        kind = KINDS.get(layer.kind)
        if kind is not None:
            layer.args = {**kind.Args().model_dump(), **kind.legacy_defaults, **layer.args}
    for c in out.conditions:
        encoder = ENCODERS.get(c.encoder.kind) if c.flow is None else None
        if encoder is not None:
            c.encoder.args = {**encoder.Args().model_dump(), **c.encoder.args}
    return out


def load_model(
    model: torch.nn.Module,
    ck: dict[str, Any],
    path: str | os.PathLike,
    *,
    strict: bool = True,
    warn: Warn = None,
) -> None:
    """Load the checkpoint's parameters; a mismatch is a :class:`RunError`, not a traceback.

    With ``strict=False`` the checkpoint's entries are matched to the model by layer path
    (so a layer added or removed shifts nothing onto the wrong layer) and loaded; a layer
    that is new keeps its initial values and one that is gone is ignored, and one warning
    says which, by layer path (``level1.step02.coupling: net.0.weight``). A parameter whose
    shape changed cannot be loaded: that is a :class:`RunError` naming every one.
    """
    state = ck["model"]
    wrong: list[str] = []
    if not strict:
        own = model.state_dict()
        old = stored_spec(ck)
        old_paths = [layer.path for layer in old.layers] if old is not None else None
        new_paths = list(getattr(model, "paths", []) or [])
        state = _by_path(state, old_paths, new_paths)
        wrong = [
            k
            for k, v in state.items()
            if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
        ]
        if wrong:
            changes = [_shape_change(new_paths, k, state, own) for k in wrong]
            raise RunError(
                f"the checkpoint {path} does not fit this model even with --strict "
                f"false, which loads it only when every parameter the two share "
                f"keeps its shape: {len(wrong)} changed shape ({_listed(changes)})"
            )
        fitting = state
        if not any(k in own for k in fitting):
            raise RunError(
                f"the checkpoint {path} shares no parameter with this model, so "
                "--strict false has nothing to load"
            )
    try:
        result = model.load_state_dict(state if strict else fitting, strict=strict)
    except (RuntimeError, TypeError, ValueError) as e:
        raise RunError(
            f"the checkpoint {path} does not fit this model: "
            f"{_strict_mismatch(model, state) or _first_line(e)}"
        ) from e
    if strict or warn is None:
        return
    missing = result.missing_keys
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} are new and keep their initial values "
            f"({_listed([path_of_key(new_paths, k) for k in missing])})"
        )
    gone = result.unexpected_keys
    if gone:
        parts.append(
            f"{len(gone)} checkpoint entries are no longer in the model and were "
            f"ignored ({_listed([_old_name(old_paths, k) for k in gone])})"
        )
    loaded = len(fitting) - len(gone)
    warn(
        f"--strict false: loaded {loaded} of the model's {len(own)} parameters and buffers "
        f"from {path}" + (f"; {'; '.join(parts)}" if parts else "")
    )


def _strict_mismatch(model: torch.nn.Module, state: dict[str, Any]) -> str:
    """What keeps ``state`` from loading strictly, by layer path."""
    own = model.state_dict()
    paths = list(getattr(model, "paths", []) or [])
    shape = [
        _shape_change(paths, k, state, own)
        for k, v in state.items()
        if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
    ]
    missing = [path_of_key(paths, k) for k in own if k not in state]
    extra = [k for k in state if k not in own]
    parts = [
        f"{what}: {_listed(items)}"
        for what, items in (
            ("changed shape", shape),
            ("not in the checkpoint", missing),
            ("not in the model", extra),
        )
        if items
    ]
    return "; ".join(parts)


def _by_path(state: dict[str, Any], old: list[str] | None, new: list[str]) -> dict[str, Any]:
    """The checkpoint's entries renamed to this model's layer indices by layer path, so that
    a layer inserted or removed before another never shifts parameters onto the wrong layer.
    Entries of a layer that is gone get the prefix ``gone.`` plus their old key."""
    if old is None or not new or old == new:
        return state
    index = {path: i for i, path in enumerate(new)}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if (
            parts[0] == "layers"
            and len(parts) > 1
            and parts[1].isdigit()
            and int(parts[1]) < len(old)
        ):
            i = index.get(old[int(parts[1])])
            key = f"layers.{i}.{'.'.join(parts[2:])}" if i is not None else f"gone.{key}"
        out[key] = value
    return out


def _old_name(old_paths: list[str] | None, key: str) -> str:
    return path_of_key(old_paths, key.removeprefix("gone."))


def _shape_change(paths: list[str], key: str, state: dict[str, Any], own: dict[str, Any]) -> str:
    return (
        f"{path_of_key(paths, key)} {_fmt(tuple(state[key].shape))} -> "
        f"{_fmt(tuple(own[key].shape))}"
    )


def _listed(items: list[str], limit: int = 4) -> str:
    return ", ".join(items[:limit]) + (
        f" and {len(items) - limit} more" if len(items) > limit else ""
    )


def same_parameters(model: torch.nn.Module, ck: dict[str, Any]) -> bool:
    """Whether the checkpoint's parameters have this model's names and shapes (so that an
    optimiser state saved with them fits)."""
    state = ck["model"]
    params = dict(model.named_parameters())
    return all(
        k in state and isinstance(state[k], torch.Tensor) and state[k].shape == p.shape
        for k, p in params.items()
    )


def _fmt(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape else "?"


def _conds(spec: FlowSpec) -> str:
    return ", ".join(
        f"{c.name}: {c.type} {_fmt(c.shape)} {c.encoder.kind}" for c in spec.conditions
    )


def _prior(spec: FlowSpec) -> str:
    return (
        "gaussian"
        + (" learned" if spec.prior.learned else "")
        + (f" on={spec.prior.on}" if spec.prior.on else "")
    )


def _overrides(overrides: Any) -> str:
    if not overrides:
        return ""
    if isinstance(overrides, dict):
        return "--set " + " --set ".join(f"{k}={v}" for k, v in overrides.items())
    return str(overrides)
