"""mARFlow's pieces against re-implementations of its official code's module definitions.

The references below are written from mARFlow's official code (visinf/mar-scf,
``flow_modules/mixlogcdf_nn.py``: ``NN``, ``ConvAttnBlock``, ``GatedConv``, ``GatedAttn``;
``mar_prior/corr_prior.py`` and ``lstm.py``: ``ChannelPriorUniScale``, ``ConvSeqEncoder``)
as the paper and the code describe them, with torch's own weight normalisation; flowspec's
modules get the same weights and must compute the same function with the same parameters.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from official_counts import marflow_official, marflow_prior_official
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm

from flowspec.kinds import KINDS, NETS, PRIORS


# ---- the official coupling network, re-implemented --------------------------------------
def concat_elu(x):
    return F.elu(torch.cat((x, -x), dim=1))


class RefGatedConv(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = weight_norm(nn.Conv2d(2 * c, c, 3, padding=1))
        self.gate = weight_norm(nn.Conv2d(2 * c, 2 * c, 1))

    def forward(self, x):
        a, b = self.gate(concat_elu(self.conv(concat_elu(x)))).chunk(2, dim=1)
        return a * torch.sigmoid(b)


class RefGatedAttn(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.d, self.heads = d, heads
        self.in_proj = weight_norm(nn.Linear(d, 3 * d, bias=False))
        self.gate = weight_norm(nn.Linear(d, 2 * d))

    def forward(self, x):  # (b, h, w, c)
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        n = c // 2
        pos = torch.arange(h * w, dtype=x.dtype)
        inv = torch.exp(torch.arange(n, dtype=x.dtype) * -(math.log(1e4) / (n - 1)))
        t = pos[:, None] * inv[None]
        x = x + F.pad(torch.cat([t.sin(), t.cos()], 1), [0, c % 2]).view(1, h * w, c)
        memory, query = torch.split(self.in_proj(x), (2 * c, c), dim=-1)

        def split(t):
            return t.view(b, h * w, self.heads, c // self.heads).permute(0, 2, 1, 3)

        q = split(query) * (c // self.heads) ** -0.5
        k, v = (split(t) for t in torch.split(memory, c, dim=2))
        out = torch.softmax(q @ k.transpose(2, 3), dim=-1) @ v
        out = out.permute(0, 2, 1, 3).reshape(b, h * w, c).view(b, h, w, c)
        a, g = self.gate(out).chunk(2, dim=-1)
        return a * torch.sigmoid(g)


class RefBlock(nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.conv, self.norm_1 = RefGatedConv(c), nn.LayerNorm(c)
        self.attn, self.norm_2 = RefGatedAttn(c, heads), nn.LayerNorm(c)

    def forward(self, x):
        x = self.norm_1((self.conv(x) + x).permute(0, 2, 3, 1))  # (b, h, w, c)
        x = self.norm_2(self.attn(x) + x)
        return x.permute(0, 3, 1, 2)


class RefNN(nn.Module):
    """The official ``NN`` up to its output convolution (the split into s, t, pi, mu, scales
    and the tanh rescale belong to the coupling)."""

    def __init__(self, cin, cout, c, blocks, heads):
        super().__init__()
        self.in_conv = weight_norm(nn.Conv2d(cin, c, 3, padding=1))
        self.mid_convs = nn.ModuleList(RefBlock(c, heads) for _ in range(blocks))
        self.out_conv = weight_norm(nn.Conv2d(c, cout, 3, padding=1))

    def forward(self, x):
        x = self.in_conv(x)
        for block in self.mid_convs:
            x = block(x)
        return self.out_conv(x)


def _wn(ref, ours):
    """Copy a weight-normalised module of ours (g, v, bias) into torch's parametrisation."""
    p = ref.parametrizations.weight
    with torch.no_grad():
        p.original0.copy_(ours.weight_g.reshape(p.original0.shape))
        p.original1.copy_(ours.weight_v.reshape(p.original1.shape))
        if ours.bias is not None:
            ref.bias.copy_(ours.bias)


def _copy_net(ours, ref):
    _wn(ref.in_conv, ours.in_conv)
    _wn(ref.out_conv, ours.out_conv)
    for a, b in zip(ours.blocks, ref.mid_convs):
        _wn(b.conv.conv, a.conv.conv)
        _wn(b.conv.gate, a.conv.gate)
        _wn(b.attn.in_proj, a.attn.in_proj)
        _wn(b.attn.gate, a.attn.gate)
        b.norm_1.load_state_dict(a.norm_1.state_dict())
        b.norm_2.load_state_dict(a.norm_2.state_dict())


def _count(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize(
    ("cin", "hidden", "heads", "hw"), [(6, 16, 4, (8, 8)), (3, 12, 2, (4, 6))]
)
def test_flowpp_net_matches_the_official_definitions(cin, hidden, heads, hw) -> None:
    cout = cin * (2 + 3 * 4)
    torch.manual_seed(0)
    ours = NETS["flowpp"].module_class()(cin, cout, hidden, blocks=2, heads=heads).double()
    with torch.no_grad():  # ours starts at zero output: give it a random output layer
        ours.out_conv.weight_g.normal_()
        ours.out_conv.bias.normal_()
        for blk in ours.blocks:
            for norm in (blk.norm_1, blk.norm_2):
                norm.weight.normal_()
                norm.bias.normal_()
    ref = RefNN(cin, cout, hidden, 2, heads).double()
    _copy_net(ours, ref)
    x = torch.randn(3, cin, *hw, dtype=torch.float64)
    ours.eval()
    assert ours(x).shape == (3, cout, *hw)
    assert torch.allclose(ours(x), ref(x), atol=1e-10)
    # same parameters, in total and per block
    assert _count(ours) == _count(ref) == NETS["flowpp"].params(cin, cout, hidden, blocks=2)
    assert _count(ours.blocks[0]) == _count(ref.mid_convs[0])


def test_flowpp_starts_at_zero_and_treats_samples_independently() -> None:
    net = NETS["flowpp"].module_class()(4, 10, 8, blocks=1, heads=2).double()
    x = torch.randn(3, 4, 4, 4, dtype=torch.float64)
    assert torch.count_nonzero(net(x)) == 0
    with torch.no_grad():
        net.out_conv.weight_g.fill_(1.0)
    assert torch.allclose(net(x)[1:2], net(x[1:2]), atol=1e-12)


def test_marflow_3_4_96_coupling_network_has_the_official_size() -> None:
    """Level 1 of CIFAR-10 3-4-96: 6 channels drive 6 x (2 + 3 * 32) outputs at 16 x 16."""
    net = NETS["flowpp"].module_class()(6, 6 * 98, 96, blocks=10, heads=4)
    ref_block = RefBlock(96, 4)
    assert all(_count(b) == _count(ref_block) for b in net.blocks)
    mix = KINDS["coupling.mixture"]
    args = {
        "hidden": 96,
        "components": 32,
        "net": "flowpp",
        "net_args": {},
        "on": None,
        "flip": False,
        "scale": "tanh",
    }
    # the official NN of this coupling: ours + one more weight per channel of its rescale
    official_step = marflow_official(3, 96, levels=1, steps=1) - 2 * 12 - (2 * 144 + 12)
    assert mix.params((12, 16, 16), args, None) + 6 == official_step
    with torch.no_grad():
        assert net(torch.zeros(1, 6, 16, 16)).shape == (1, 588, 16, 16)


# ---- the official ConvLSTM prior, re-implemented ------------------------------------------
def ref_prior_loglik(ar, z, kept, dilation):
    """mAR-SCF's ``ChannelPriorUniScale.get_likelihood`` (teacher forcing over channels)."""
    b, n, h, w = z.shape
    seq = torch.cat([z.new_zeros(b, 1, 1, h, w), z.unsqueeze(2)[:, :-1]], dim=1)
    if kept is not None:
        emb = ar.context(kept).unsqueeze(1).repeat(1, n, 1, 1, 1)
        seq = torch.cat([seq, emb], dim=2)
    layers = len(ar.input_convs)
    hs = [z.new_zeros(b, ar.hidden, h, w)] * layers
    cs = list(hs)
    lik = 0.0
    for t in range(n):
        x = ar.embed(seq[:, t])
        for i in range(layers):
            wi, wh = ar.input_convs[i], ar.hidden_convs[i]
            pad = dilation * (wi.kernel_size[0] // 2)
            gates = F.conv2d(x, wi.weight, wi.bias, padding=pad, dilation=dilation) + F.conv2d(
                hs[i], wh.weight, wh.bias, padding=pad, dilation=dilation
            )
            ig, fg, cg, og = gates.chunk(4, 1)
            cs[i] = torch.sigmoid(fg) * cs[i] + torch.sigmoid(ig) * torch.tanh(cg)
            hs[i] = torch.sigmoid(og) * torch.tanh(cs[i])
            x = hs[i]
        mean, logs = ar.out(x).chunk(2, 1)
        zt = z[:, t : t + 1]
        lik = lik - 0.5 * (
            2 * logs + (zt - mean) ** 2 / torch.exp(2 * logs) + math.log(2 * math.pi)
        ).flatten(1).sum(1)
    return lik


def _standard_normal(eps):
    return -0.5 * (eps**2 + math.log(2 * math.pi)).flatten(1).sum(1)


@pytest.mark.parametrize("dilation", [1, 2])
def test_split_convlstm_is_mar_scf_likelihood(dilation) -> None:
    torch.manual_seed(1)
    split = (
        KINDS["split"]
        .module_class()(
            (6, 8, 8),
            {
                "prior": "convlstm",
                "on": None,
                "hidden": 5,
                "layers": 2,
                "kernel": 5,
                "dilation": dilation,
            },
            None,
        )
        .double()
    )
    with torch.no_grad():
        for p in split.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 6, 8, 8, dtype=torch.float64)
    y, eps, logdet = split(x)
    ours = _standard_normal(eps) + logdet
    assert torch.allclose(ours, ref_prior_loglik(split.ar, x[:, 3:], y, dilation), atol=1e-9)
    back, _ = split.inverse(y, eps)
    assert torch.allclose(back, x, atol=1e-10)


def test_top_convlstm_prior_is_mar_scf_likelihood_and_samples_in_order() -> None:
    torch.manual_seed(2)
    prior = (
        PRIORS["convlstm"]
        .module_class()((5, 4, 4), {"hidden": 4, "layers": 3, "kernel": 3, "dilation": 1}, None)
        .double()
    )
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.1 * torch.randn_like(p))
    z = torch.randn(3, 5, 4, 4, dtype=torch.float64)
    eps, logdet = prior(z)
    assert torch.allclose(
        _standard_normal(eps) + logdet, ref_prior_loglik(prior.ar, z, None, 1), atol=1e-9
    )
    # channel t of a sample depends on noise channels <= t only (autoregressive decoding)
    noise = torch.randn(1, 5, 4, 4, dtype=torch.float64)
    a, _ = prior.inverse(noise)
    noise[:, 3:] += 1.0
    b, _ = prior.inverse(noise)
    assert torch.equal(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3:], b[:, 3:])


def test_marflow_prior_count_is_the_official_one() -> None:
    from flowspec.api import load
    from flowspec.kinds import count_params

    root = Path(__file__).resolve().parents[1]
    spec = load(root / "specs/attnflow_cifar10.flow", "marflow_cifar10")
    per = count_params(spec)
    prior = per["prior"] + sum(n for k, n in per.items() if k.endswith("split"))
    assert prior == marflow_prior_official(3)
    official = marflow_official(3, 96) + marflow_prior_official(3)
    assert official - sum(per.values()) == 4 * (6 + 12 + 24)  # the rescale's second weights
    assert abs(sum(per.values()) / 46.01e6 - 1) < 0.01  # the paper's column
