"""The build options of ``flowspec.compile`` change how a model computes, never what.

``channels_last``, ``compile``, ``checkpoint`` and ``autocast`` must give the same latents,
log-determinants, inverses and gradients as the plain model (to float32 rounding, or to
bfloat16 precision for ``autocast``), keep the parameters and the ``state_dict`` as they are,
and keep every log-determinant in float32 under autocast.
"""

from __future__ import annotations

import time

import pytest
import torch

import flowspec
from flowspec.build import FlowModel, FlowRuntimeError

TOL = 1e-6

#: A small Glow with every unconditional layer kind of the backbones plus both attentions.
SPEC = """flowspec 0.1
flow small(K = 1, hidden = 8) {
  input 1 x 8 x 8
  prior gaussian learned
  for l in 1..2 {
    level {
      squeeze
      step x K {
        actnorm
        invconv lu=true
        coupling affine hidden=hidden
        attention imap
      }
      if l < 2 {
        split prior=learned
      }
    }
  }
}

flow small_mixture extends small {
  insert coupling mixture hidden=hidden components=3 after coupling
  insert attention isdp heads=2 patches=4 after invconv in level 1..1
}
"""


def build(flow: str = "small", **options) -> flowspec.FlowModel:
    """The model of ``flow`` with ``options``, holding the same trained-looking weights
    whatever the options: actnorm initialised, every parameter perturbed."""
    spec = flowspec.loads(SPEC, flow=flow)
    model = flowspec.compile(spec, device="cpu", seed=0)
    gen = torch.Generator().manual_seed(3)
    model.train()
    with torch.no_grad():
        model(torch.rand((8, 1, 8, 8), generator=gen))  # actnorm's data-dependent init
        for p in model.parameters():  # away from the identity-like initialisation
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    if not options:
        return model
    other = flowspec.compile(spec, device="cpu", seed=0, **options)
    other.load_state_dict(model.state_dict())
    other.train()
    return other


def batch(n: int = 4) -> torch.Tensor:
    return torch.rand((n, 1, 8, 8), generator=torch.Generator().manual_seed(11))


def close(a: torch.Tensor, b: torch.Tensor, tol: float = TOL) -> bool:
    a, b = a.detach().float(), b.detach().float()
    return a.shape == b.shape and float((a - b).abs().max()) <= tol * max(
        1.0, float(b.abs().max())
    )


def same_forward(
    a: flowspec.FlowModel, b: flowspec.FlowModel, x: torch.Tensor, tol: float = TOL
) -> None:
    (za, la), (zb, lb) = a(x), b(x)
    assert lb.dtype == la.dtype == torch.float32
    assert close(lb, la, tol), (lb, la)
    assert all(close(p, q, tol) for p, q in zip(zb, za))


def grads(model: flowspec.FlowModel, x: torch.Tensor) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    (-model.log_prob(x).mean()).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("flow", ["small", "small_mixture"])
def test_channels_last_gives_the_same_model(flow: str) -> None:
    plain, fast = build(flow), build(flow, channels_last=True)
    assert list(fast.state_dict()) == list(plain.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), fast.parameters()))
    x = batch()
    plain.eval()
    fast.eval()
    same_forward(plain, fast, x)
    with torch.no_grad():
        zs, _ = plain(x)
        x_fast, ld_fast = fast.inverse(zs, return_logdet=True)
        x_plain, ld_plain = plain.inverse(zs, return_logdet=True)
    assert close(x_fast, x_plain, 1e-5) and close(ld_fast, ld_plain)
    plain.train()
    fast.train()
    assert all(close(g, h, 1e-5) for g, h in zip(grads(fast, x), grads(plain, x)))


@pytest.mark.parametrize("flow", ["small", "small_mixture"])
def test_gradient_checkpointing_gives_the_same_gradients(flow: str) -> None:
    plain, ckpt = build(flow), build(flow, checkpoint=True)
    assert list(ckpt.state_dict()) == list(plain.state_dict())
    x = batch()
    same_forward(plain, ckpt, x)
    for g, h in zip(grads(ckpt, x), grads(plain, x)):
        assert close(g, h), float((g - h).abs().max())


DROPOUT_SPEC = """flowspec 0.1
flow f {
  input 4 x 8 x 8
  prior gaussian
  coupling mixture hidden=16 components=4 scale=tanh net=flowpp(blocks=2, heads=2, dropout=0.3)
}
"""


def test_gradient_checkpointing_replays_the_networks_dropout() -> None:
    # Flow++'s network drops channels and attention weights while training: the backward
    # recomputation must draw the same masks as the forward, or the gradients are another
    # loss's (they differed by half their size when the RNG state was not kept).
    def loss_and_grads(checkpoint: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model = flowspec.compile(
            flowspec.loads(DROPOUT_SPEC), device="cpu", seed=0, checkpoint=checkpoint
        )
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        model.train()
        x = torch.rand((4, 4, 8, 8), generator=torch.Generator().manual_seed(2))
        torch.manual_seed(5)
        loss = -model.log_prob(x).mean()
        loss.backward()
        return loss.detach(), [p.grad for p in model.parameters()]

    (loss, plain), (loss_ck, ckpt) = loss_and_grads(False), loss_and_grads(True)
    assert torch.equal(loss, loss_ck)
    for g, h in zip(ckpt, plain):
        assert close(g, h), float((g - h).abs().max())


def test_checkpointing_stores_fewer_activations() -> None:
    spec = flowspec.load("specs/glow_mnist.flow", overrides={"K": 2, "hidden": 64, "L": 2})
    x = torch.rand((8, 1, 32, 32), generator=torch.Generator().manual_seed(0))

    def saved_bytes(model: flowspec.FlowModel) -> int:
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        model.train()
        with torch.no_grad():
            model(x)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.log_prob(x).mean()
        return total

    plain = saved_bytes(flowspec.compile(spec, device="cpu"))
    ckpt = saved_bytes(flowspec.compile(spec, device="cpu", checkpoint=True))
    assert ckpt < 0.6 * plain, (ckpt, plain)


def _dynamo_available() -> bool:
    try:
        import torch._dynamo

        return bool(torch._dynamo.is_dynamo_supported())
    except Exception:  # noqa: BLE001 - any failure means torch.compile is unavailable here
        return False


@pytest.mark.skipif(not _dynamo_available(), reason="torch.compile is not supported here")
def test_torch_compile_gives_the_same_model() -> None:
    start = time.perf_counter()
    plain, comp = build(), build(compile="aot_eager")
    assert list(comp.state_dict()) == list(plain.state_dict())
    x = batch()
    # training mode (actnorm already initialised: the compiled loop runs), then gradients
    same_forward(plain, comp, x)
    assert all(close(g, h, 1e-5) for g, h in zip(grads(comp, x), grads(plain, x)))
    plain.eval()
    comp.eval()
    same_forward(plain, comp, x)
    with torch.no_grad():
        zs, _ = plain(x)
        assert close(comp.inverse(zs), plain.inverse(zs), 1e-5)
    from torch._dynamo.utils import counters

    assert counters["stats"]["unique_graphs"] >= 2  # it did compile
    assert time.perf_counter() - start < 60


@pytest.mark.skipif(not _dynamo_available(), reason="torch.compile is not supported here")
def test_torch_compile_first_training_batch_initialises_actnorm_eagerly() -> None:
    spec = flowspec.loads(SPEC, flow="small")
    plain = flowspec.compile(spec, device="cpu", seed=0)
    comp = flowspec.compile(spec, device="cpu", seed=0, compile="eager")
    plain.train()
    comp.train()
    x = batch(8)
    same_forward(plain, comp, x)  # the data-dependent init happens in this call
    assert all(torch.equal(p, q) for p, q in zip(plain.parameters(), comp.parameters()))


def test_loaded_model_takes_the_compiled_path_at_once() -> None:
    # A resumed run must compute as a continuing one: after load_state_dict, actnorm knows
    # it is initialised, so the first training call runs the compiled loop, not the eager
    # one (which rounds differently: parameters of a resumed `--compile` run drifted by
    # ~1e-8). The full comparison, 4 steps against 2 + resume 2 under inductor, is
    # bench/compiled_resume.py (a minute of compilation on a CPU).
    trained = build()
    model = flowspec.compile(
        flowspec.loads(SPEC, flow="small"), device="cpu", seed=5, compile="eager"
    )
    model.load_state_dict(trained.state_dict())
    assert all(m._init_seen for m in model._actnorms)
    calls = []
    model._compiled["forward"] = lambda *a: calls.append(1) or FlowModel._forward_layers(*a)
    model.train()
    model(batch())
    assert calls == [1]
    fresh = flowspec.compile(flowspec.loads(SPEC, flow="small"), device="cpu", seed=5)
    fresh.load_state_dict(fresh.state_dict())  # a never-initialised state stays so
    assert not any(m._init_seen for m in fresh._actnorms)


@pytest.mark.skipif(not _dynamo_available(), reason="torch.compile is not supported here")
def test_torch_compile_keeps_errors_located_at_their_layer() -> None:
    model = build(compile="eager")
    model.eval()
    coupling = model.paths.index("level1.step01.coupling")

    def broken(x, cond=None):
        raise RuntimeError("boom")

    model.layers[coupling].forward = broken
    with pytest.raises(FlowRuntimeError, match=r"level1\.step01\.coupling.*boom"):
        model(batch())


def test_a_failing_compiler_falls_back_to_eager_in_one_line(capsys) -> None:
    # What a machine without a C compiler (or Triton) does to inductor, without the wait:
    # the backend raises while compiling. The model says so in one line and runs eagerly.
    def broken_backend(gm, example_inputs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    plain, comp = build(), build(compile={"backend": broken_backend})
    plain.eval()
    comp.eval()
    capsys.readouterr()
    same_forward(plain, comp, batch())
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("flowspec: warning:")]
    assert len(lines) == 1 and "No working C++ compiler found" in lines[0], err
    assert comp._compiled == {}  # no second attempt on the next call
    same_forward(plain, comp, batch())
    assert "warning" not in capsys.readouterr().err


def test_other_batch_sizes_run_eagerly_instead_of_recompiling() -> None:
    model = build(compile="eager")
    model.eval()
    calls = []
    model._compiled["forward"] = lambda *a: (
        calls.append(a[1].shape[0]) or (FlowModel._forward_layers(*a))
    )
    with torch.no_grad():
        for n in (4, 4, 3, 4):  # 3: the last, short validation chunk
            model(batch(n))
    assert calls == [4, 4, 4]


def test_options_keep_the_state_dict_interchangeable() -> None:
    plain = build()
    fast = flowspec.compile(
        flowspec.loads(SPEC, flow="small"),
        device="cpu",
        seed=1,
        channels_last=True,
        checkpoint=True,
    )
    fast.load_state_dict(plain.state_dict())
    plain.eval()
    fast.eval()
    same_forward(plain, fast, batch())
    back = flowspec.compile(flowspec.loads(SPEC, flow="small"), device="cpu", seed=2)
    back.load_state_dict(fast.state_dict())
    back.eval()
    same_forward(plain, back, batch())


def _watch(model: flowspec.FlowModel) -> tuple[list, list]:
    """Record the output dtypes of the parameter networks and every layer's logdet dtype."""
    nets, logdets = [], []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: logdets.append(o[-1].dtype))
        if hasattr(layer, "net"):
            layer.net.register_forward_hook(lambda m, i, o: nets.append(o.dtype))
    return nets, logdets


@pytest.mark.parametrize("how", ["option", "caller"])
def test_autocast_keeps_log_determinants_in_float32(how: str) -> None:
    plain = build("small_mixture")
    amp = build("small_mixture", autocast=torch.bfloat16 if how == "option" else False)
    nets, logdets = _watch(amp)
    x = batch()
    plain.eval()
    amp.eval()
    ctx = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if how == "caller"
        else torch.autocast("cpu", enabled=False)
    )
    with ctx:
        zs, logdet = amp(x)
        zs_back = amp.inverse(zs)
        logp = amp.log_prob(x)
    assert nets and set(nets) == {torch.bfloat16}  # the networks did run in bfloat16
    assert logdets and set(logdets) == {torch.float32}  # every layer's, forward and inverse
    assert logdet.dtype == torch.float32 and logp.dtype == torch.float32
    assert all(z.dtype == torch.float32 for z in zs) and zs_back.dtype == torch.float32
    ref_zs, ref_logdet = plain(x)
    # bfloat16 networks: the same model to bfloat16 precision, and still a bijection
    assert close(logdet, ref_logdet, 2e-2)
    assert all(close(z, r, 5e-2) for z, r in zip(zs, ref_zs))
    # The inverse recomputes each network from reconstructed inputs, which differ from the
    # forward's by float32 rounding (invconv, attention); a bfloat16 network can round such
    # an input differently and move its output by ~2^-8 relative. So the round trip is exact
    # to bfloat16 precision, not float32 (without autocast it is exact: tests/test_spec_models).
    assert close(zs_back, x, 1e-3)


def test_autocast_option_rejects_full_precision_dtypes() -> None:
    with pytest.raises(ValueError, match="autocast"):
        flowspec.compile(flowspec.loads(SPEC, flow="small"), device="cpu", autocast=torch.float64)


def test_compile_cli_takes_the_options(cli) -> None:
    rc, out, err = cli(
        "compile",
        "specs/glow_mnist.flow",
        "--set",
        "K=1",
        "--set",
        "hidden=8",
        "--channels-last",
        "--grad-checkpoint",
        "--autocast",
    )
    assert rc == 0, err
    assert "options: channels_last=True, checkpoint=True, autocast=bfloat16" in out


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_training_step_never_syncs_with_the_host() -> None:
    spec = flowspec.loads(SPEC, flow="small")
    model = flowspec.compile(spec, device="cuda", autocast=True)
    opt = torch.optim.Adamax(model.parameters(), lr=1e-4)
    x = torch.rand((8, 1, 8, 8), device="cuda")
    model.train()
    for i in range(2):  # the first step does actnorm's init (one sync, by design)
        torch.cuda.set_sync_debug_mode("error" if i else "default")
        try:
            opt.zero_grad(set_to_none=True)
            loss = -model.log_prob(x).mean()
            loss.backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert loss.dtype == torch.float32
