"""analysis.approach2 against the closed-form optimum of a known L(N, D)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.approach2 import bootstrap_weights, fit_approach2
from tests.helpers.synthetic_scaling import BUDGETS, CHINCHILLA, EPOCH, as_runs, synthetic_sweep


def test_bootstrap_weights_resample_within_groups():
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    weights = bootstrap_weights(groups, 50, np.random.default_rng(0))
    for g in (0, 1, 2):
        assert (weights[:, groups == g].sum(axis=1) == (groups == g).sum()).all()


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH], ids=["chinchilla", "epoch"])
@pytest.mark.parametrize("half_width", [0.5, 0.6])
def test_vertex_matches_analytic_optimum(law, half_width):
    """Noise-free isoFLOP profiles: the vertex sits at N_opt = G (C/6)^(beta/(alpha+beta)) up to the
    parabola's known bias. Along an isoFLOP, f(u) = L(N_opt e^u) - E is proportional to
    e^(-alpha u) + (alpha/beta) e^(beta u) at every budget. A least-squares parabola over points u_i
    symmetric about 0 picks up the cubic term f''' u^3/6 as a slope, shifting the vertex by
    u* = (alpha - beta) m4 / (6 m2) (natural log; m_k = mean u_i^k), about +1.4% of N for Chinchilla
    and -0.4% for Epoch over +-0.6 decades. Higher orders are O(u^4 alpha^2 beta^2) and measured
    < 1e-5 here, so the vertex must match N_opt e^(u*) to 1e-4 in log N."""
    result = fit_approach2("synth", as_runs(synthetic_sweep(law, half_width=half_width)), n_boot=0)
    u = np.log(10) * np.linspace(-half_width, half_width, 9)
    bias = (law.alpha - law.beta) * np.mean(u**4) / (6 * np.mean(u**2))
    assert len(result.optima) == len(BUDGETS)
    for o in result.optima:
        assert not o.flagged
        log_err = np.log(o.params / law.n_opt(o.budget))
        assert abs(log_err) < 0.02
        assert log_err == pytest.approx(bias, abs=1e-4)
        # D_opt from the runs' own log D vs log N line: exactly C / (6 N_opt) for D = C / (6 N).
        assert o.tokens == pytest.approx(o.budget / (6 * o.params), rel=1e-9)
        # L_opt is the parabola's minimum: below the law's minimum by at most the fit's error.
        assert o.loss == pytest.approx(float(law.loss(law.n_opt(o.budget), o.budget / (6 * law.n_opt(o.budget)))), rel=2e-3)
    # The bias is the same at every budget, so the exponents come out exact.
    assert result.a == pytest.approx(law.a, abs=1e-9)
    assert result.b == pytest.approx(1 - law.a, abs=1e-9)


@pytest.mark.parametrize("law", [CHINCHILLA, EPOCH], ids=["chinchilla", "epoch"])
def test_recovers_exponents_from_noisy_sweep(law):
    """0.3% multiplicative noise, 7 budgets x 9 sizes. Over 12 seeds the estimate of a scattered by
    SD 0.0058 (Chinchilla) / 0.0054 (Epoch) around the truth, so 0.02 is a ~3.5-sigma bound. The
    bootstrap interval (within-budget resampling of 9 runs is wider than that scatter, ~0.012 SD)
    must cover both the truth and the estimate."""
    runs = as_runs(synthetic_sweep(law, noise=0.003, seed=1))
    result = fit_approach2("synth", runs, n_boot=200, seed=0)
    assert result.n_boot_valid > 190
    assert result.a == pytest.approx(law.a, abs=0.02)
    assert result.b == pytest.approx(1 - law.a, abs=0.02)
    lo, hi = result.n_law.slope_ci()
    assert lo < law.a < hi and lo < result.a < hi
    lo, hi = result.d_law.slope_ci()
    assert lo < 1 - law.a < hi
    assert 0 < result.c < 0.2  # the loss falls with compute


def test_edge_and_sparse_budgets_are_flagged_and_excluded():
    clean = synthetic_sweep(CHINCHILLA, budgets=BUDGETS[:5])
    # The top budget's ladder sits entirely below the optimum: its minimum is the largest model.
    shifted = synthetic_sweep(CHINCHILLA, budgets=BUDGETS[5:6], offset=-1.0)
    sparse = synthetic_sweep(CHINCHILLA, budgets=BUDGETS[6:], sizes=2)
    result = fit_approach2("synth", as_runs(pd.concat([clean, shifted, sparse])), n_boot=20)
    flags = {o.budget: o.flags for o in result.optima}
    assert "lowest loss at the largest size of the ladder" in flags[BUDGETS[5]]
    assert any("a parabola needs 3" in f for f in flags[BUDGETS[6]])
    assert [o.budget for o in result.usable] == list(BUDGETS[:5])
    reference = fit_approach2("synth", as_runs(clean), n_boot=0)
    assert result.a == pytest.approx(reference.a, abs=1e-12)
    # The sparse budget still reports its best run.
    sparse_opt = result.optima[-1]
    assert sparse_opt.loss == pytest.approx(sparse["val_loss"].min())


def test_single_budget_reports_optimum_without_power_law():
    result = fit_approach2("synth", as_runs(synthetic_sweep(CHINCHILLA, budgets=(1e19,))), n_boot=10)
    assert result.n_law is None and "only one budget" in result.skipped
    assert len(result.optima) == 1 and not result.optima[0].flagged
    assert result.optima[0].params == pytest.approx(float(CHINCHILLA.n_opt(1e19)), rel=0.02)


def _windows_for(losses: np.ndarray, n_windows: int, shared_sd: float, own_sd: float, seed: int) -> np.ndarray:
    """Per-window losses whose means are exactly `losses`: a per-window effect every run shares (the
    windows differ in difficulty) plus each run's own per-window noise."""
    rng = np.random.default_rng(seed)
    shared = rng.normal(0.0, shared_sd, n_windows)
    own = rng.normal(0.0, own_sd, (losses.size, n_windows))
    w = losses[:, None] + shared[None, :] + own
    return w - w.mean(axis=1, keepdims=True) + losses[:, None]


def test_window_bootstrap_reports_the_standard_errors_of_losses_and_paired_differences():
    """Closed form: the SE of a run's mean over W windows is sqrt(shared^2 + own^2 / 1) / sqrt(W); the
    SE of a paired difference cancels the shared part: own * sqrt(2) / sqrt(W)."""
    runs = as_runs(synthetic_sweep(CHINCHILLA, budgets=BUDGETS[:3], sizes=5))
    W, shared_sd, own_sd = 2000, 0.3, 0.05
    windows = _windows_for(runs["L"].to_numpy(), W, shared_sd, own_sd, seed=3)
    result = fit_approach2("synth", runs, n_boot=300, seed=0, windows=windows)
    assert result.noise == "windows+residuals"
    for o in result.optima:
        assert o.loss_se == pytest.approx(np.hypot(shared_sd, own_sd) / np.sqrt(W), rel=0.15)
        assert o.paired_se == pytest.approx(own_sd * np.sqrt(2) / np.sqrt(W), rel=0.15)
        sub = runs[runs["C"] == o.budget]
        assert o.spread == pytest.approx(sub["L"].max() - sub["L"].min())


def test_intervals_reflect_noise_with_few_runs_per_budget():
    """3 runs per budget: resampling runs within a budget returned intervals of zero width; the
    residual and window bootstrap gives an interval that widens with the noise and holds the truth."""
    widths = []
    for noise in (0.001, 0.004):
        runs = as_runs(synthetic_sweep(CHINCHILLA, sizes=3, half_width=0.5, noise=noise, seed=2))
        windows = _windows_for(runs["L"].to_numpy(), 256, 0.2, 20 * noise, seed=1)
        result = fit_approach2("synth", runs, n_boot=300, seed=0, windows=windows)
        lo, hi = result.n_law.slope_ci()
        assert hi - lo > 1e-3 and lo < result.a < hi
        widths.append(hi - lo)
    assert widths[1] > 1.5 * widths[0]
