"""LPIPS (Zhang et al. 2018): torchmetrics' port of the ``lpips`` package, backbone from a file.

LPIPS compares two images through the normalised activations of five layers of an
ImageNet-trained AlexNet, weighted per channel by linear heads that were fitted to human
judgements:

.. math:: d(x_0, x_1) = \\sum_l \\frac{1}{H_l W_l} \\sum_{h, w}
          \\lVert w_l \\odot (\\hat y^l_{0,hw} - \\hat y^l_{1,hw}) \\rVert_2^2 .

The linear heads ``w_l`` ship inside the torchmetrics wheel
(``torchmetrics/functional/image/lpips_models/alex.pth``, byte-identical to the ``lpips``
package's ``weights/v0.1/alex.pth``). The AlexNet backbone does not ship in any package:
it is torchvision's ImageNet checkpoint ``alexnet-owt-7be5be79.pth``, read from a local
file (flowspec downloads nothing). The ``lpips`` package itself and torchmetrics' own
backbone loader both go through torchvision, whose wheels are CUDA builds that do not load
against the CPU build of torch; so this module defines the backbone's 12 layers itself (the
layout of ``torchvision.models.alexnet().features``, so the checkpoint loads by name) and
hands them to torchmetrics' LPIPS module, which does the rest.

``--lpips FILE`` takes that checkpoint (any state dict with ``features.*`` AlexNet keys),
or a TorchScript module mapping two image batches in [-1, 1] to one distance per image
(e.g. ``torch.jit.script(lpips.LPIPS(net="alex")).save(FILE)`` where ``lpips`` works).

References:
    Zhang, Isola, Efros, Shechtman, Wang. The Unreasonable Effectiveness of Deep Features
    as a Perceptual Metric. CVPR 2018.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .errors import RunError

#: torchvision's ImageNet AlexNet checkpoint, the LPIPS "alex" backbone.
ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
#: Below this side AlexNet's pooling runs out of pixels; smaller images are resized first.
MIN_SIDE = 32
RESIZE = 64


def alexnet_features() -> nn.Sequential:
    """The layers of ``torchvision.models.alexnet().features``, index for index."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
    )


class LPIPS:
    """``lpips(reference, distorted) -> (N,)`` distances of uint8 ``(N, C, H, W)`` batches.

    The reference (ground truth) comes first, as in the ``lpips`` package's
    ``LPIPS.forward(in0, in1)`` docs; grey images are repeated to three channels.
    ``name`` says which network computed it.
    """

    def __init__(
        self,
        net: Callable[[Tensor, Tensor], Tensor],
        name: str,
        resize_small: bool,
        device: torch.device | str = "cpu",
    ):
        self.net, self.name, self.resize_small = net, name, resize_small
        self.device = torch.device(device)

    def __call__(self, reference: Tensor, distorted: Tensor) -> Tensor:
        if reference.shape != distorted.shape:
            raise RunError(
                f"LPIPS compares images of one size, got {tuple(reference.shape)} "
                f"and {tuple(distorted.shape)}"
            )
        a = reference.to(self.device).float() / 127.5 - 1.0
        b = distorted.to(self.device).float() / 127.5 - 1.0
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        if self.resize_small and min(a.shape[-2:]) < MIN_SIDE:
            a, b = (
                nn.functional.interpolate(
                    t, size=(RESIZE, RESIZE), mode="bilinear", align_corners=False
                )
                for t in (a, b)
            )
        with torch.no_grad():
            return self.net(a, b).reshape(a.shape[0]).cpu()


def load_lpips(path: str | os.PathLike | None, device: torch.device | str = "cpu") -> LPIPS | None:
    """LPIPS from a local file (see the module docs), or ``None`` when none is given; its
    network runs on ``device`` (the run's), the distances come back on the CPU."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if not p.is_file():
        raise RunError(
            f"--lpips {p}: no such file. Give torchvision's AlexNet checkpoint "
            f"{ALEXNET_FILE} (the LPIPS backbone; flowspec downloads nothing), or a "
            "TorchScript LPIPS module"
        )
    try:
        script = torch.jit.load(str(p), map_location="cpu").eval()
    except (RuntimeError, ValueError):
        script = None
    if script is not None:
        return LPIPS(script.to(device), f"torchscript:{p.name}", resize_small=False, device=device)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # any failure means "not a usable file"
        raise RunError(
            f"--lpips {p} is neither a TorchScript module nor a state dict "
            f"({type(e).__name__}: {e})"
        ) from e
    return LPIPS(
        _torchmetrics_lpips(_backbone(state, p)).to(device),
        f"alex:{p.name} (lpips v0.1 heads)",
        resize_small=True,
        device=device,
    )


def _backbone(state: Any, p: Path) -> nn.Sequential:
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise RunError(f"--lpips {p} holds a {type(state).__name__}, not a state dict")
    feats = {
        k[len("features.") :]: v
        for k, v in state.items()
        if isinstance(k, str) and k.startswith("features.")
    }
    net = alexnet_features()
    try:
        net.load_state_dict(feats)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise RunError(
            f"--lpips {p} is not an AlexNet checkpoint like torchvision's "
            f"{ALEXNET_FILE} (its `features.*` entries do not fit: {first})"
        ) from e
    return net.eval()


def _torchmetrics_lpips(features: nn.Sequential) -> nn.Module:
    """torchmetrics' LPIPS module ("alex", lpips v0.1 heads) around ``features``.

    torchmetrics builds the backbone through ``_get_tv_model_features``, i.e. torchvision;
    for the duration of the constructor that one function hands out ``features`` instead.
    """
    from unittest import mock

    try:
        from torchmetrics.functional.image import lpips as tm
    except ImportError as e:
        raise RunError("LPIPS needs torchmetrics: pip install 'flowspec[metrics]'") from e
    if not hasattr(tm, "_get_tv_model_features") or not hasattr(tm, "_NoTrainLpips"):
        raise RunError(
            "this torchmetrics version builds LPIPS differently; flowspec "
            "supports torchmetrics 1.4 to 1.x"
        )
    with mock.patch.object(tm, "_get_tv_model_features", lambda net, pretrained: features):
        net = tm._NoTrainLpips(pretrained=True, net="alex", pnet_rand=True)
    return net.eval()
