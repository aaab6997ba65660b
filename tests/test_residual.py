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

from flowspec.nn.residual import POISSON_RATE, ResidualBlock, roulette_weights

SHAPE = (2, 3, 3)
CALLS, REPEATS, Z = 100, 32, 5.0


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
