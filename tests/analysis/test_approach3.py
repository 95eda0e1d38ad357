"""analysis.approach3: the Huber objective, the multi-start L-BFGS fit and the implied optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from analysis.approach3 import HUBER_DELTA, InitGrid, ParametricLaw, fit_approach3, huber_objective
from tests.helpers.synthetic_scaling import CHINCHILLA, EPOCH, as_runs, synthetic_sweep


def _naive_objective(theta, n, d, loss, weights, delta=HUBER_DELTA):
    """The objective written out run by run, in float64: mean Huber / delta of the log residual."""
    a, b, e, alpha, beta = theta
    total = 0.0
    for ni, di, li, wi in zip(n, d, loss, weights, strict=True):
        lse = math.log(math.exp(a - alpha * math.log(ni)) + math.exp(b - beta * math.log(di)) + math.exp(e))
        r = lse - math.log(li)
        total += wi * (0.5 * r * r if abs(r) <= delta else delta * (abs(r) - 0.5 * delta))
    return total / sum(weights) / delta


def test_huber_objective_value_and_gradient():
    table = synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=4)
    n, d, loss = (table[c].to_numpy() for c in ("params", "tokens", "val_loss"))
    weights = np.array([1, 0, 2, 1, 3, 1, 0, 1], float)
    args = (np.log(n), np.log(d), np.log(loss), weights)
    # One start near the truth (residuals inside delta: the quadratic branch), one far (linear branch).
    for theta in (np.array([6.0, 6.0, 0.52, 0.34, 0.28]), np.array([3.0, 9.0, -0.5, 0.5, 0.5])):
        value, grad = huber_objective(theta, *args)
        assert value == pytest.approx(_naive_objective(theta, n, d, loss, weights), rel=1e-12)
        step = 1e-6
        numeric = [(huber_objective(theta + step * e, *args)[0] - huber_objective(theta - step * e, *args)[0])
                   / (2 * step) for e in np.eye(5)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def test_optimal_allocation_matches_numerical_minimum():
    law = ParametricLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    for compute in (1e18, 1e21):
        res = minimize_scalar(lambda x, c=compute: law.loss(np.exp(x), c / (6 * np.exp(x))),
                              bounds=(np.log(1e5), np.log(1e13)), method="bounded",
                              options={"xatol": 1e-10})
        assert float(law.optimal_params(compute)) == pytest.approx(np.exp(res.x), rel=1e-5)
        assert float(law.optimal_tokens(compute)) == pytest.approx(compute / (6 * np.exp(res.x)), rel=1e-5)
    assert law.a + law.b == pytest.approx(1.0)


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH], ids=["chinchilla", "epoch"])
def test_converges_to_noise_free_law(law):
    """Noise-free data: the objective's global minimum (0) is the generating law; the tight L-BFGS
    tolerances must reach it to 1e-4 relative (the coarse grid keeps this test quick)."""
    exact = fit_approach3("synth", as_runs(synthetic_sweep(law)), n_boot=0, grid=InitGrid.coarse(),
                          progress=False)
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(exact.law, name) == pytest.approx(getattr(law, name), rel=1e-4)
    assert exact.objective < 1e-8


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH], ids=["chinchilla", "epoch"])
def test_recovers_generating_law_from_noisy_sweep(law):
    """0.3% multiplicative noise, 7 budgets x 9 sizes, the default 768-start grid. Over 6 seeds the
    fitted alpha and beta scattered by SD 0.004 / 0.0025 (Chinchilla) and 0.0035 / 0.0027 (Epoch)
    around the truth (largest deviation 0.007), so 0.02 is a ~5-sigma bound, loose enough for any seed
    and tight enough to catch a wrong objective, gradient or a local minimum (E, alpha, beta trade off
    along a shallow valley: a wrong basin misses by ~0.1)."""
    noisy = fit_approach3("synth", as_runs(synthetic_sweep(law, noise=0.003, seed=1)), n_boot=20, seed=0,
                          progress=False)
    assert noisy.law.alpha == pytest.approx(law.alpha, abs=0.02)
    assert noisy.law.beta == pytest.approx(law.beta, abs=0.02)
    assert noisy.law.a == pytest.approx(law.a, abs=0.02)
    assert noisy.law.E == pytest.approx(law.E, abs=0.03)
    ci = noisy.ci()
    assert noisy.boot.shape == (20, 5)
    for name in ("E", "alpha", "beta", "a"):
        lo, hi = ci[name]
        assert lo <= getattr(noisy.law, name) <= hi


def test_skips_with_too_few_runs_or_one_budget():
    one_budget = fit_approach3("synth", as_runs(synthetic_sweep(CHINCHILLA, budgets=(1e19,))), progress=False)
    assert one_budget.law is None and "1 budget(s)" in one_budget.skipped
    few = fit_approach3("synth", as_runs(synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=2)),
                        progress=False)
    assert few.law is None and "4 usable run(s)" in few.skipped


def test_init_grid_spans_design_ranges():
    points = InitGrid().points()
    assert points.shape == (768, 5)
    lows, highs = points.min(axis=0), points.max(axis=0)  # (a, b, e, alpha, beta)
    np.testing.assert_allclose(lows, [0, 0, -1, 0, 0])
    np.testing.assert_allclose(highs, [25, 25, 1, 2, 2])
    assert InitGrid.chinchilla().points().shape == (4500, 5)


def test_a_fit_that_runs_off_to_overflow_is_no_law(monkeypatch):
    """A few flat runs over two budgets (the demo's live sweep) once sent the optimiser to log A = -9.4e3,
    alpha = -843: every prediction inf or NaN, and the residual figure crashed on a log axis with nothing
    finite to draw. Such a fit is reported as no law, with the reason."""
    import analysis.approach3 as a3

    runs = as_runs(synthetic_sweep(CHINCHILLA, noise=0.0))
    diverged = np.array([-9.39e3, 1.0, 0.3, -843.0, 0.3])  # (log A, log B, log E, alpha, beta)
    monkeypatch.setattr(a3, "minimise_from", lambda *args, **kwargs: (diverged, 0.0))
    result = fit_approach3("toy", runs, n_boot=2, progress=False)
    assert result.law is None and "diverged" in result.skipped
