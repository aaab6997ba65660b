"""Sample quality: FID, KID and Inception Score through torchmetrics, on a chosen feature net.

The statistics are torchmetrics' (``FrechetInceptionDistance``, ``KernelInceptionDistance``,
``InceptionScore``); nothing here computes a mean, a covariance or a kernel. Features are
extracted once per image set and handed to the three metrics through torchmetrics' hook
for a custom extractor (a module with ``num_features``), which here passes them through:
so the real images' features can be cached, and every sample is fed through the network
once for all three numbers.

The feature network (``--features``):

* ``inception`` (looked up in ``$FLOWSPEC_CACHE/weights/``, default
  ``~/.cache/flowspec/weights/``) or a path to NVlabs' ``inception-2015-12-05.pt``: the
  TorchScript port of the TensorFlow Inception-v3 graph of the original FID code, used by
  StyleGAN2-ADA, StyleGAN3 and clean-fid. Pool features (2048) for FID and KID, class
  probabilities without the output bias for IS, as those code bases do. Reported as
  ``fid``, ``kid``, ``is``: comparable with published numbers at the same sample counts.
* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` or torch-fidelity's
  ``weights-inception-2015-12-05-6726825d.pth`` (the same weights as a state dict): read by
  torchmetrics' ``NoTrainInceptionV3``, which needs torch-fidelity, which needs a
  torchvision that loads with the installed torch (not the case for the CPU build of
  torch that scripts/setup.sh installs; the TorchScript file above works everywhere).
* any other TorchScript module mapping float images in [0, 1], ``(B, 3, H, W)``, to
  ``(B, D)`` features: reported as ``fid[features=NAME]`` etc. (NAME: the file's stem), as
  these numbers are not comparable with anyone else's. For IS the features
  are taken as class logits.

Grey images are repeated to three channels. Real images are the first N of the data's
validation split, quantised to the run's bits like the samples; their features are cached
in ``$FLOWSPEC_CACHE/stats/`` per (data set and options, split, N, image shape, bits,
feature file's SHA-256).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import images as im
from .errors import RunError

QUALITY = ("fid", "kid", "is")
INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    "inception-2015-12-05.pt"
)
INCEPTION_STATE_FILES = (
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
BATCH = 64
KID_SUBSET = 1000  # torchmetrics' and the KID paper's default subset size
IS_SPLITS = 10


def cache_dir() -> Path:
    """``$FLOWSPEC_CACHE``, or ``~/.cache/flowspec``."""
    return Path(os.environ.get("FLOWSPEC_CACHE") or Path.home() / ".cache" / "flowspec")


def _where_to_put() -> str:
    return (
        f"put NVlabs' {INCEPTION_FILE} ({INCEPTION_URL}) in {cache_dir() / 'weights'}/ "
        "(or set FLOWSPEC_CACHE) and pass --features inception, or pass --features PATH "
        "to it or to any TorchScript module mapping images in [0,1] (B,3,H,W) to (B,D) "
        "features; flowspec downloads nothing"
    )


@dataclass
class FeatureNet:
    """A feature network: ``features`` (and ``logits`` for IS) of uint8 ``(B, 3, H, W)``."""

    name: str
    comparable: bool
    path: Path
    digest: str
    features: Callable[[Tensor], Tensor]
    logits: Callable[[Tensor], Tensor]

    def describe(self) -> dict[str, Any]:
        return {
            "features": self.name,
            "features_file": str(self.path),
            "features_sha256": self.digest,
            "comparable_with_papers": self.comparable,
        }


def locate(arg: str | os.PathLike) -> Path:
    """The file ``--features`` names (``inception``: the first weights file in the cache)."""
    if str(arg) == "inception":
        folder = cache_dir() / "weights"
        for name in (INCEPTION_FILE, *INCEPTION_STATE_FILES):
            if (folder / name).is_file():
                return folder / name
        raise RunError(f"no Inception weights in {folder}: {_where_to_put()}")
    p = Path(arg).expanduser()
    if not p.is_file():
        raise RunError(f"--features {p}: no such file; {_where_to_put()}")
    return p


def load_features(arg: str | os.PathLike, device: torch.device | str = "cpu") -> FeatureNet:
    """Read a feature network (see the module docs); raises :class:`RunError` when unusable."""
    path = locate(arg)
    digest = _sha256(path)
    try:
        net = torch.jit.load(str(path), map_location="cpu").eval().to(device)
    except (RuntimeError, ValueError):
        return _inception_state_dict(path, digest, device)
    names = [a.name for a in net.forward.schema.arguments]
    if "return_features" in names and "no_output_bias" in names:
        return FeatureNet(
            "inception-2015-12-05",
            True,
            path,
            digest,
            features=lambda x: net(x, return_features=True),
            # probabilities without the output bias (StyleGAN2-ADA's IS); log turns them
            # back into logits that torchmetrics' softmax maps onto the same probabilities
            logits=lambda x: net(x, no_output_bias=True).clamp_min(1e-30).log(),
        )
    stem = re.sub(r"[^\w.-]", "_", path.stem)

    def custom(x: Tensor) -> Tensor:
        return net(x.float() / 255.0)

    return FeatureNet(stem, False, path, digest, features=custom, logits=custom)


def _inception_state_dict(path: Path, digest: str, device: torch.device | str) -> FeatureNet:
    """pytorch-fid's / torch-fidelity's Inception state dict through torchmetrics."""
    try:
        from torchmetrics.image.fid import NoTrainInceptionV3

        nets = [
            NoTrainInceptionV3(
                name="inception-v3-compat",
                features_list=[f],
                feature_extractor_weights_path=str(path),
            ).to(device)
            for f in ("2048", "logits_unbiased")
        ]
    except ModuleNotFoundError as e:
        raise RunError(
            f"--features {path} is not TorchScript; as pytorch-fid's or "
            "torch-fidelity's Inception state dict it needs torch-fidelity, which "
            f"needs a torchvision that loads with this torch ({e}). Use NVlabs' "
            f"TorchScript {INCEPTION_FILE} instead ({INCEPTION_URL}): same "
            "network, no torchvision"
        ) from e
    except Exception as e:  # any failure means "not a usable file"
        raise RunError(
            f"--features {path}: neither a TorchScript module nor an Inception "
            f"state dict ({type(e).__name__}: {e})"
        ) from e
    return FeatureNet("inception-2015-12-05", True, path, digest, features=nets[0], logits=nets[1])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@torch.no_grad()
def extract(
    net: FeatureNet, images: Tensor, device: torch.device | str, logits: bool = False
) -> Tensor:
    """Features (or IS logits) of uint8 ``(N, C, H, W)`` images, float64 on the CPU."""
    fn = net.logits if logits else net.features
    out = []
    for start in range(0, images.shape[0], BATCH):
        x = images[start : start + BATCH].to(device)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise RunError(f"FID/KID/IS need grey or RGB images, these have {x.shape[1]} channels")
        try:
            f = fn(x.contiguous())
        except RuntimeError as e:
            raise RunError(
                f"the feature network {net.name} failed on a batch of shape "
                f"{tuple(x.shape)}: {str(e).strip().splitlines()[0]}"
            ) from e
        if not isinstance(f, Tensor) or f.dim() != 2 or f.shape[0] != x.shape[0]:
            got = tuple(f.shape) if isinstance(f, Tensor) else type(f).__name__
            raise RunError(
                f"the feature network {net.name} must map (B,3,H,W) images to "
                f"(B,D) features; it returned {got} for B={x.shape[0]}"
            )
        out.append(f.detach().double().cpu())
    feats = torch.cat(out)
    if not torch.isfinite(feats).all():
        raise RunError(f"the feature network {net.name} returned NaN or Inf features")
    return feats


def real_features(
    net: FeatureNet, key: dict[str, Any], images: Callable[[], Tensor], device: torch.device | str
) -> tuple[Tensor, Path, bool]:
    """The real images' features, from the cache when ``key`` was seen before.

    Returns the features, the cache file and whether it was a cache hit.
    """
    key = {**key, "features_sha256": net.digest}
    h = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    data = re.sub(r"[^\w.-]", "_", Path(str(key["data"])).name)
    path = cache_dir() / "stats" / f"{data}-{key['split']}-{key['images']}-{net.name}-{h}.pt"
    cached = _read_cache(path)
    if cached is not None and cached.get("key") == key:
        return cached["features"], path, True
    feats = extract(net, images(), device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": key, "features": feats}, tmp)
    os.replace(tmp, path)
    return feats, path, False


def _read_cache(path: Path) -> dict[str, Any] | None:
    """A cache file's contents; ``None`` when absent or unreadable (then it is recomputed)."""
    if not path.is_file():
        return None
    try:
        cached = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any damage: recompute, never fail over a cache
        return None
    return (
        cached if isinstance(cached, dict) and isinstance(cached.get("features"), Tensor) else None
    )


@torch.no_grad()
def generate(
    model: Any, n: int, temperature: float, bits: int, seed: int, device: torch.device | str
) -> tuple[Tensor, int]:
    """``n`` uint8 samples at ``temperature`` and how many were not finite (those are
    mapped to finite values so they still count, as bad samples, in the scores)."""
    from .streams import generator, stream_seed

    out, bad = [], 0
    for k, start in enumerate(range(0, n, BATCH)):
        g = generator(stream_seed(seed, f"quality/{temperature}", k), device)
        x = model.sample(min(BATCH, n - start), temperature, None, generator=g)
        bad += int((~torch.isfinite(x.flatten(1)).all(dim=1)).sum())
        out.append(im.to_uint8(torch.nan_to_num(x, nan=0.0), bits))
    return torch.cat(out), bad


class _Given(nn.Module):
    """torchmetrics' custom-extractor hook (``num_features`` and a forward) for features
    computed beforehand: the forward passes them through."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: Tensor) -> Tensor:
        return x


def kid_subset(real: int, fake: int) -> int:
    """KID's subset size: 1000, or half the smaller set when that has fewer than 2000
    images, so that the 100 subsets differ and ``kid_std`` says something."""
    return max(1, min(KID_SUBSET, min(real, fake) // 2))


def scores(
    which: tuple[str, ...],
    real: Tensor | None,
    fake: Tensor,
    fake_logits: Tensor | None,
    seed: int,
) -> dict[str, float]:
    """torchmetrics' FID, KID (mean, std over subsets) and IS (mean, std over splits).

    KID's subsets and IS's shuffle draw from torch's global generator; they run under a
    forked RNG seeded with ``seed`` so the numbers repeat and training's RNG is untouched.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore
    from torchmetrics.image.kid import KernelInceptionDistance

    out: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features in buffer"
        torch.manual_seed(seed)
        if "fid" in which:
            fid = FrechetInceptionDistance(feature=_Given(fake.shape[1]))
            fid.update(real, real=True)
            fid.update(fake, real=False)
            out["fid"] = float(fid.compute())
        if "kid" in which:
            kid = KernelInceptionDistance(
                feature=_Given(fake.shape[1]), subset_size=kid_subset(len(real), len(fake))
            )
            kid.update(real, real=True)
            kid.update(fake, real=False)
            mean, std = kid.compute()
            out["kid"], out["kid_std"] = float(mean), float(std)
        if "is" in which:
            score = InceptionScore(
                feature=_Given(fake_logits.shape[1]), splits=min(IS_SPLITS, len(fake_logits))
            )
            score.update(fake_logits)
            mean, std = score.compute()
            out["is"], out["is_std"] = float(mean), float(std)
    return out


def sample_quality(
    model: Any,
    spec: Any,
    recipe: Any,
    which: tuple[str, ...],
    *,
    features: FeatureNet,
    samples: int,
    temperature: float,
    device: torch.device | str,
) -> dict[str, Any]:
    """FID / KID / IS of ``samples`` samples at ``temperature`` against the first
    ``samples`` images of the validation split (fewer when the split is smaller)."""
    from .tasks import make_task

    if recipe.task != "generation" or spec.conditions:
        raise RunError(
            f"fid, kid and is score unconditional samples (task generation); "
            f"flow `{spec.name}` is trained for {recipe.task}"
            f"{' with a condition' if spec.conditions else ''}"
        )
    if samples < 2:
        raise RunError(f"--samples must be at least 2 for FID/KID/IS, got {samples}")
    r = recipe.model_copy(update={"val_images": samples})
    real_images: Tensor | None = None

    def load_real() -> Tensor:
        nonlocal real_images
        if real_images is None:
            val = make_task(spec, r).load(train=False).val
            real_images = im.quantized(val.images, r.bits)
        return real_images

    info: dict[str, Any] = features.describe()
    real = None
    if "fid" in which or "kid" in which:
        key = {
            "data": r.data,
            "data_options": r.data_options,
            "split": "val",
            "images": samples,
            "shape": list(spec.input),
            "bits": r.bits,
        }
        real, cache, hit = real_features(features, key, load_real, device)
        info.update(
            real_images=int(real.shape[0]),
            real_split="val",
            real_stats_cache=str(cache),
            real_stats_cached=hit,
        )
        if "kid" in which:
            info["kid_subset_size"] = kid_subset(len(real), samples)
    fake_images, bad = generate(model, samples, temperature, r.bits, r.seed, device)
    fake = extract(features, fake_images, device)
    logits = extract(features, fake_images, device, logits=True) if "is" in which else None
    if real is not None and min(len(real), len(fake)) < 2:
        raise RunError(f"FID/KID need at least 2 real images; `{r.data}` has {len(real)}")
    got = scores(which, real, fake, logits, r.seed)
    suffix = "" if features.comparable else f"[features={features.name}]"
    out = {(k if not suffix else f"{k}{suffix}"): v for k, v in got.items()}
    info.update(samples=samples, temperature=temperature, nonfinite_samples=bad)
    out["sample_quality"] = info
    return out
