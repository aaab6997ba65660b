"""flowspec/build.py's per-layer guard: a layer whose log-det is not one value per sample,
``(B,)``, is an error naming the layer's path and its line in the spec, in the forward and
the inverse loop, from Python and from the CLI; never a broadcast sum or a traceback."""

from __future__ import annotations

import json

import pytest
import torch

import flowspec

# A per-channel scale whose log-det forgot to sum over the channels: shape (B, C).
PLUGIN = """
import torch

import flowspec


@flowspec.kind
class ChannelScale(flowspec.LayerKind):
    key = "chanscale"
    Args = flowspec.Args
    doc = "a learned per-channel scale"
    module = "chanscale:ChannelScaleModule"


class ChannelScaleModule(flowspec.FlowLayer):
    def __init__(self, shape, args, cond_channels=None):
        super().__init__(shape, args, cond_channels)
        self.log_s = torch.nn.Parameter(torch.full((shape[0],), 0.1))

    def _per_channel(self, x):
        return (self.log_s * x.shape[2] * x.shape[3]).expand(x.shape[0], -1)

    def forward(self, x, cond=None):
        return x * torch.exp(self.log_s)[None, :, None, None], self._per_channel(x)

    def inverse(self, y, cond=None):
        return y * torch.exp(-self.log_s)[None, :, None, None], -self._per_channel(y)
"""

SPEC = """flow bad {
  input 1 x 4 x 4
  squeeze
  chanscale
  coupling affine hidden=4
}
"""


@pytest.fixture
def bad_spec(tmp_path, monkeypatch, clean_registries):
    (tmp_path / "chanscale.py").write_text(PLUGIN)
    (tmp_path / "bad.flow").write_text(SPEC)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "bad.flow"


def test_a_logdet_per_channel_names_the_layer_and_its_line(bad_spec) -> None:
    model = flowspec.compile(flowspec.load(bad_spec, plugins=["chanscale"]))
    x = torch.rand(2, 1, 4, 4)
    with pytest.raises(flowspec.FlowRuntimeError) as e:
        model(x)
    assert e.value.path == "chanscale" and e.value.span.line == 4
    assert "bad.flow:4:3" in str(e.value) and "in layer `chanscale`" in str(e.value)
    assert "log-det has shape (2, 4)" in str(e.value) and "shape (2,)" in str(e.value)
    zs = [torch.randn(2, 4, 2, 2)]
    with pytest.raises(flowspec.FlowRuntimeError, match=r"in layer `chanscale`.*\(2, 4\)"):
        model.inverse(zs)


def test_the_cli_names_the_layer_and_its_line(bad_spec, cli) -> None:
    rc, out, err = cli("compile", bad_spec, "--plugin", "chanscale")
    assert rc == 0, err  # the summary's memory measurement runs the model and says why not
    assert "not measured (FlowRuntimeError: in layer `chanscale`" in out and "bad.flow:4:3" in out
    rc, out, err = cli("verify", bad_spec, "--plugin", "chanscale", "--format", "json")
    assert rc == 1
    model = json.loads(out)["checks"][-1]
    assert model["kind"] == "model" and "in layer `chanscale`" in model["error"]
    assert "bad.flow:4:3" in model["error"] and "log-det has shape (32, 4)" in model["error"]
    rc, out, err = cli("verify", bad_spec, "--plugin", "chanscale")
    assert rc == 1
    row = next(line for line in out.splitlines() if line.strip().startswith("chanscale"))
    assert row.endswith("FAIL")
    assert err.startswith("flowspec verify: ") and "bad.flow:4:3: layer `chanscale`" in err
    assert "its log-det has shape (2, 4), expected (2,)" in err and "Traceback" not in err
