"""Sample quality: FID, KID and IS through torchmetrics on a pluggable feature network, the
real-data feature cache, the Inception calling convention and its errors; LPIPS (torchmetrics'
port of lpips, AlexNet backbone from a file) per temperature and averaged, reference first.

The feature networks and the LPIPS backbone here are randomly initialised: the numbers are
not meaningful, the plumbing (what is compared with what, under which name) is the point.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import linalg
from tinyruns import TINY_GEN, TINY_SR, tiny_features, write_spec

import runtime
from runtime import RunError
from runtime.perceptual import LPIPS, alexnet_features, load_lpips
from runtime.quality import INCEPTION_FILE, scores


@pytest.fixture(scope="module")
def gen_ck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("quality")
    out = root / "run"
    runtime.train(
        write_spec(root, TINY_GEN),
        out=out,
        val_images=64,
        val_every=8,
        sample_every=8,
        progress=False,
    )
    return out / "checkpoint.pt"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLOWSPEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_eval_prints_fid_kid_is_under_the_feature_network_name(cli, gen_ck, cache, tmp_path):
    feats = tiny_features(tmp_path / "tiny_features.pt")
    args = (
        "eval",
        "--checkpoint",
        gen_ck,
        "--metrics",
        "bpd,fid,kid,is",
        "--samples",
        48,
        "--temperature",
        0.8,
        "--features",
        feats,
        "--out",
        tmp_path,
    )
    rc, out, err = cli(*args)
    assert rc == 0, err
    m = json.loads(out)
    for key in ("fid", "kid", "kid_std", "is", "is_std"):
        assert math.isfinite(m[f"{key}[features=tiny_features]"]), key
        assert key not in m  # never under the name of the comparable number
    q = m["sample_quality"]
    assert q["features"] == "tiny_features" and q["comparable_with_papers"] is False
    assert q["samples"] == 48 and q["real_images"] == 48 and q["real_split"] == "val"
    assert q["temperature"] == 0.8 and q["nonfinite_samples"] == 0
    assert q["kid_subset_size"] == 24 and m["kid_std[features=tiny_features]"] > 0
    assert (
        q["real_stats_cached"] is False and Path(q["real_stats_cache"]).parent == cache / "stats"
    )
    assert math.isfinite(m["bpd"])
    assert json.loads((tmp_path / "eval.json").read_text())["sample_quality"] == q
    # the second evaluation reads the real images' features from the cache: same numbers
    rc, out2, err = cli(*args)
    assert rc == 0, err
    m2 = json.loads(out2)
    assert m2["sample_quality"]["real_stats_cached"] is True
    assert m2["fid[features=tiny_features]"] == m["fid[features=tiny_features]"]


def test_scores_are_torchmetrics_fid_on_the_features_given() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 6, generator=g, dtype=torch.float64)
    fake = 0.5 + 1.5 * torch.randn(150, 6, generator=g, dtype=torch.float64)
    got = scores(("fid", "kid"), real, fake, None, seed=0)
    # the Frechet distance of the two sample Gaussians, written out with SciPy
    mu1, mu2 = real.mean(0).numpy(), fake.mean(0).numpy()
    s1, s2 = np.cov(real.numpy(), rowvar=False), np.cov(fake.numpy(), rowvar=False)
    want = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert math.isclose(got["fid"], want, rel_tol=1e-6)
    same = scores(("fid", "kid"), real, real, None, seed=0)
    # KID's unbiased estimate is about 0 for one distribution (it may dip below)
    assert abs(same["fid"]) < 1e-6 and abs(same["kid"]) < got["kid"] / 10


class FakeInception(torch.nn.Module):
    """NVlabs' inception-2015-12-05.pt calling convention: uint8 images in, pool features
    with return_features=True, else class probabilities (2048 and 1008 of them in the
    real network; fewer here, as FID's matrix square root of 2048x2048 takes seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(3, 32)
        self.cls = torch.nn.Linear(32, 10)

    def forward(
        self,
        img: torch.Tensor,
        return_features: bool = False,
        use_fp16: bool = False,
        no_output_bias: bool = False,
    ) -> torch.Tensor:
        assert img.dtype == torch.uint8 and img.shape[1] == 3
        f = torch.relu(self.proj(img.float().mean(dim=(2, 3)) / 255.0))
        if return_features:
            return f
        return torch.softmax(self.cls(f), dim=1)


def test_inception_file_in_the_cache_gives_the_comparable_keys(cli, gen_ck, cache, tmp_path):
    (cache / "weights").mkdir(parents=True)
    torch.jit.script(FakeInception()).save(str(cache / "weights" / INCEPTION_FILE))
    rc, out, err = cli(
        "eval",
        "--checkpoint",
        gen_ck,
        "--metrics",
        "fid,kid,is",
        "--samples",
        40,
        "--out",
        tmp_path,
    )
    assert rc == 0, err
    m = json.loads(out)
    assert all(math.isfinite(m[k]) for k in ("fid", "kid", "is"))
    assert m["sample_quality"]["features"] == "inception-2015-12-05"
    assert m["sample_quality"]["comparable_with_papers"] is True


def test_missing_or_unusable_weights_say_where_to_put_them(cli, gen_ck, cache, tmp_path):
    rc, _, err = cli("eval", "--checkpoint", gen_ck, "--metrics", "fid")
    assert rc == 1 and INCEPTION_FILE in err and str(cache / "weights") in err
    rc, _, err = cli(
        "eval", "--checkpoint", gen_ck, "--metrics", "fid", "--features", tmp_path / "nope.pt"
    )
    assert rc == 1 and "no such file" in err and INCEPTION_FILE in err
    state = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(1)}, state)
    rc, _, err = cli("eval", "--checkpoint", gen_ck, "--metrics", "kid", "--features", state)
    assert rc == 1 and "torch-fidelity" in err and INCEPTION_FILE in err
    rc, _, err = cli("eval", "--checkpoint", gen_ck, "--metrics", "bpd,fdi")
    assert rc == 1 and "unknown metric `fdi`" in err


# --------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised backbone saved like torchvision's alexnet-owt-7be5be79.pth."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("lpips") / "alexnet-random.pth"
    torch.save({f"features.{k}": v for k, v in alexnet_features().state_dict().items()}, path)
    return path


def test_lpips_with_a_random_backbone(random_alexnet: Path) -> None:
    lp = load_lpips(random_alexnet)
    assert lp is not None and lp.name.startswith("alex:")
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 256, (3, 1, 24, 24), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 1, 24, 24), generator=g, dtype=torch.uint8)
    d = lp(a, b)
    assert d.shape == (3,) and bool((d > 0).all()) and torch.allclose(lp(a, a), torch.zeros(3))
    # a TorchScript LPIPS module gets the reference first
    signed = torch.jit.script(Signed())
    first = LPIPS(signed, "signed", resize_small=False)
    assert bool((first(torch.full_like(a, 255), torch.zeros_like(a)) > 0).all())


def test_lpips_network_runs_on_the_given_device(random_alexnet: Path) -> None:
    """The network is moved to the run's device and fed there (``meta`` stands in for CUDA:
    its tensors carry a device but no values)."""
    lp = load_lpips(random_alexnet, "meta")
    assert lp.device == torch.device("meta")
    assert {p.device.type for p in lp.net.parameters()} == {"meta"}
    seen = []
    net = lp.net
    lp.net = lambda a, b: seen.append((a.device.type, b.device.type)) or net(a, b)
    a = torch.zeros((2, 1, 24, 24), dtype=torch.uint8)
    with pytest.raises(NotImplementedError):  # .cpu() of a meta result: no data to copy
        lp(a, a)
    assert seen == [("meta", "meta")]


class Signed(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a - b).mean(dim=(1, 2, 3))


def test_lpips_in_eval_per_temperature_and_averaged(cli, random_alexnet, tmp_path) -> None:
    out = tmp_path / "sr"
    runtime.train(
        write_spec(tmp_path, TINY_SR),
        out=out,
        val_every=6,
        sample_every=6,
        sr_images=2,
        progress=False,
    )
    rc, text, err = cli(
        "eval",
        "--checkpoint",
        out / "checkpoint.pt",
        "--temperatures",
        0.5,
        0.9,
        "--lpips",
        random_alexnet,
    )
    assert rc == 0, err
    m = json.loads(text)
    per = [m["per_temperature"][t]["lpips"] for t in ("0.5", "0.9")]
    assert all(math.isfinite(v) and v > 0 for v in per)
    assert math.isclose(m["lpips"], sum(per) / 2, rel_tol=1e-9)
    assert m["lpips_net"] == "alex:alexnet-random.pth (lpips v0.1 heads)"


def test_lpips_refuses_a_file_that_is_not_alexnet(tmp_path: Path) -> None:
    bad = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(RunError, match="not an AlexNet checkpoint"):
        load_lpips(bad)
    with pytest.raises(RunError, match="alexnet-owt-7be5be79.pth"):
        load_lpips(tmp_path / "missing.pth")
