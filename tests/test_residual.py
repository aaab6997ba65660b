"""flowspec.nn.residual: the Russian-roulette log-det estimator is unbiased.

The exact mode's log-det is tested against ``slogdet`` of the autograd Jacobian with every
other kind (tests/test_layers_numerics.py); here the estimator's mean is compared with it.

* Exactly: for every term ``k`` the roulette weight times the probability that term ``k``
  is computed is 1 (so each term's expectation is its trace's, given Hutchinson's
  ``E[v^T A v] = tr A``).
* Statistically, on a small layer in float64 with a fixed seed: the mean of
  ``CALLS`` independent calls (each one term count, ``REPEATS`` Hutchinson vectors per
  point) lies within ``Z`` standard errors of the exact log-det, for both the training
  estimator (2 fixed terms) and the eval one (20). The standard error is that of the
  ``CALLS`` per-call means, independent draws: a false alarm at 5 standard errors has
  probability about 3e-6 for a t statistic with 99 degrees of freedom.
"""

from __future__ import annotations

import math

import pytest
import torch
from numerics import SMALL

import flowspec
from flowspec.nn.residual import POISSON_RATE, ResidualBlock, roulette_weights

SHAPE = (2, 3, 3)
CALLS, REPEATS, Z = 100, 32, 5.0
#: resflow_mnist at the spec tests' reduced size (tests/test_spec_models.py)
SMALL_RESFLOW = {k: SMALL[k] for k in ("K", "L", "hidden", "size")}


@pytest.mark.parametrize("dist", ["poisson", "geometric"])
@pytest.mark.parametrize("fixed", [0, 2])
def test_roulette_weights_undo_the_probability_of_each_term(dist: str, fixed: int) -> None:
    def p_n(n: int) -> float:  # P(n further terms)
        if dist == "poisson":
            return math.exp(-POISSON_RATE) * POISSON_RATE**n / math.factorial(n)
        return 0.5 ** (n + 1)

    weights = roulette_weights(12, fixed, dist)
    for k, w in enumerate(weights, start=1):
        p_kept = sum(p_n(n) for n in range(80) if fixed + n >= k)
        assert w * p_kept == pytest.approx(1.0, rel=1e-9), k


def _layer_pair(seed: int) -> tuple[ResidualBlock, ResidualBlock, torch.Tensor]:
    """An estimating layer and its exact twin (the same state), and two test points."""
    torch.manual_seed(seed)
    est = ResidualBlock(SHAPE, {"hidden": 8}).double()
    with torch.no_grad():  # away from the initialisation; spectral norm brings it to 0.98
        for lin in est.linears:
            lin.weight.mul_(3.0)
    exact = ResidualBlock(SHAPE, {"hidden": 8, "logdet": "exact"}).double()
    exact.load_state_dict(est.state_dict())
    return est.eval(), exact.eval(), torch.randn(2, *SHAPE, dtype=torch.float64)


@pytest.mark.parametrize("fixed", [2, 20])  # training's terms, eval's eval_terms
def test_the_estimators_mean_is_the_exact_logdet(fixed: int) -> None:
    est, exact, x = _layer_pair(seed=0)
    with torch.no_grad():
        want = exact(x)[1]
        batch = x.repeat(REPEATS, 1, 1, 1)  # one call: REPEATS draws of v per point
        draws = torch.stack(
            [est.estimate_logdet(batch, fixed).view(REPEATS, 2).mean(0) for _ in range(CALLS)]
        )
    mean, se = draws.mean(0), draws.std(0) / CALLS**0.5
    assert (se > 0).all()  # the estimate is random: the test has something to measure
    z = (mean - want).abs() / se
    assert (z <= Z).all(), (mean.tolist(), want.tolist(), z.tolist())


def test_the_estimate_is_a_function_of_the_seed() -> None:
    a, _, x = _layer_pair(seed=3)
    first = a.estimate_logdet(x)
    b, _, _ = _layer_pair(seed=3)
    assert torch.equal(first, b.estimate_logdet(x))


def test_the_streams_continue_from_a_saved_state() -> None:
    """``rng_state`` / ``set_rng_state``: a twin built from another seed, given the weights
    and the streams' state, draws what the original draws next (term counts and probes);
    a saved probe state goes only to a generator of its device's kind."""
    a, _, x = _layer_pair(seed=5)
    b, _, _ = _layer_pair(seed=6)
    b.load_state_dict(a.state_dict())
    for m in (a, b):  # the same weights and spectral vectors, each its own streams
        m.train()(x)
    assert not torch.equal(b.estimate_logdet(x), a.estimate_logdet(x))
    state = a.rng_state()
    assert set(state["probes"]) == {"cpu"}
    want = a.estimate_logdet(x)
    b.set_rng_state(state)
    assert torch.equal(b.estimate_logdet(x), want)
    assert torch.equal(b.rng_state()["terms"], a.rng_state()["terms"])
    # a CUDA state (Philox: 16 bytes) is never given to a CPU generator; a CUDA device takes
    # its own entry, or the one CUDA entry there is (a restart may change the index)
    b.set_rng_state({**state, "probes": {"cuda:1": torch.zeros(16, dtype=torch.uint8)}})
    assert b._saved_probes(torch.device("cpu")) is None
    assert b._saved_probes(torch.device("cuda:0")) is not None
    assert b.rng_state()["probes"] == {}  # taken by the device's generator


def test_an_eval_forward_leaves_the_spectral_vectors_as_training_left_them() -> None:
    """A validation (eval mode) refreshes the spectral-norm vectors for its own use only: the
    buffers, and the next training step, are those of a twin that did not validate."""
    import copy

    model, _, x = _layer_pair(seed=7)
    with torch.no_grad():
        for lin in model.linears:
            lin.weight.mul_(1.1)  # as an optimiser step: the next forward refreshes
    twin = copy.deepcopy(model)
    with torch.no_grad():
        model.eval()(x)
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
    assert torch.equal(model.train()(x)[0], twin.train()(x)[0])


def test_a_checkpoint_without_the_streams_still_resumes_with_a_warning() -> None:
    """A checkpoint written before the layers' streams were saved (no ``layers`` in its
    ``rng``), or by another number of processes: the blocks keep their streams from the
    seed, and a warning says the run will not match an uninterrupted one."""
    from runtime import checkpoint as ckpt
    from runtime import distributed as ddp

    model, _, x = _layer_pair(seed=8)
    fresh = model.rng_state()
    model.train()(x)
    warnings: list[str] = []
    ddp.restore_layer_rng(ddp.Dist(), model, ckpt.rng_state(0, 2), warnings.append)
    assert len(warnings) == 1 and "start again from their seeds" in warnings[0]
    assert not torch.equal(model.rng_state()["terms"], fresh["terms"])  # left alone
    saved = ckpt.rng_state(0, 2, layer_ranks=[{"": fresh}])
    ddp.restore_layer_rng(ddp.Dist(rank=1, world=2), model, saved, warnings.append)
    assert len(warnings) == 2 and "world size 1, this one has 2" in warnings[1]
    ddp.restore_layer_rng(ddp.Dist(), model, saved, pytest.fail)
    assert torch.equal(model.rng_state()["terms"], fresh["terms"])


def test_a_residual_flow_resumes_bit_for_bit(tmp_path) -> None:
    """The small resflow_mnist the spec tests build, with its log-dets estimated: each
    step's loss and gradient depend on the blocks' random term counts and Hutchinson
    vectors. Trained 4 steps in one go, and 2 steps then resumed to 4 (``--steps 4
    --resume``): the parameters, buffers and optimiser state are bitwise equal. The short
    run validates and samples at its last step, where the long one only validates: neither
    may move the blocks' training streams."""
    import runtime
    from runtime import checkpoint as ckpt

    spec = flowspec.load(
        "specs/residualflow.flow", "resflow_mnist", {**SMALL_RESFLOW, "logdet": "estimate"}
    )
    kw = {
        "data": "digits",
        "batch": 8,
        "steps": 4,
        "checkpoint_every": 2,
        "val_every": 2,
        "sample_every": 100,
        "val_images": 8,
        "progress": False,
        "device": "cpu",
    }
    runtime.train(spec, out=tmp_path / "straight", **kw)
    runtime.train(spec, out=tmp_path / "cut", **{**kw, "steps": 2})
    runtime.train(spec, out=tmp_path / "cut", resume=True, **kw)
    a, b = (ckpt.load(tmp_path / n / "checkpoint.pt") for n in ("straight", "cut"))
    assert a["step"] == b["step"] == 4
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    blocks = {f"layers.{i}" for i, layer in enumerate(spec.layers) if layer.kind == "residual"}
    assert set(b["rng"]["layers"][0]) == blocks  # one process: its blocks' states
