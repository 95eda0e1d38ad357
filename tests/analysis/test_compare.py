"""analysis.compare: compute multipliers and perplexity exponents from Approach 2 frontiers."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.approach2 import fit_approach2
from analysis.compare import compare, perplexity_law
from tests.helpers.synthetic_scaling import CHINCHILLA, Law, as_runs, synthetic_sweep

BUDGETS = tuple(np.logspace(18, 20, 5))


def _fit(law, family):
    return fit_approach2(family, as_runs(synthetic_sweep(law, budgets=BUDGETS, family=family)), n_boot=50, seed=1)


def test_compute_multiplier_of_a_less_data_efficient_family():
    """Family "slow" learns from D tokens what "fast" learns from D / k: L_slow(N, D) = L(N, D / k),
    i.e. B_slow = B k^beta, so exactly L_opt,slow(C) = L_opt,fast(C / k): slow needs k times the
    compute for any loss. With E = 0 both frontiers are exact power laws (C^(-alpha beta/(alpha+beta)))
    and the parabola's vertex bias is the same constant factor for both (same alpha, beta, same ladder
    around each optimum), so the multiplier must come out as k to rounding.

    (With E > 0 the frontier curves in log-log space and the power-law multiplier is only
    approximate: a 1% loss error moves it by a factor 10^(0.0043 / c) ~ 1.16 at c = 0.066.)"""
    k = 3.0
    fast = Law(0.0, CHINCHILLA.A, CHINCHILLA.B, CHINCHILLA.alpha, CHINCHILLA.beta)
    slow = Law(0.0, fast.A, fast.B * k**fast.beta, fast.alpha, fast.beta)
    results = {"fast": _fit(fast, "fast"), "slow": _fit(slow, "slow")}
    comparison = compare(results)
    by_pair = {(m.family, m.reference): m for m in comparison.multipliers}
    slow_vs_fast = by_pair[("slow", "fast")]
    assert slow_vs_fast.budget == pytest.approx(BUDGETS[-1])
    assert slow_vs_fast.multiplier == pytest.approx(k, rel=1e-6)
    assert slow_vs_fast.extrapolated  # 3e20 lies beyond the swept 1e20
    assert by_pair[("fast", "slow")].multiplier == pytest.approx(1 / k, rel=1e-6)
    lo, hi = slow_vs_fast.ci
    assert lo <= slow_vs_fast.multiplier <= hi
    # Frontier at matched compute: the slow family's loss is higher at every budget.
    assert all(s > f for s, f in zip(comparison.frontier["slow"], comparison.frontier["fast"], strict=True))


def test_perplexity_exponent_is_slope_of_loss_against_log_compute():
    result = _fit(CHINCHILLA, "x")
    compute = np.array([o.budget for o in result.usable])
    loss = np.array([o.loss for o in result.usable])
    # exp(L) ~ C^-c_ppl  <=>  L = const - c_ppl ln C: an independent straight-line fit.
    slope, _ = np.polyfit(np.log(compute), loss, 1)
    assert -perplexity_law(result).slope == pytest.approx(-slope, rel=1e-10)
    comparison = compare({"x": result})
    (exponents,) = comparison.exponents
    assert exponents.c_ppl == pytest.approx(-slope, rel=1e-10)
    assert exponents.c == pytest.approx(-np.polyfit(np.log(compute), np.log(loss), 1)[0], rel=1e-10)
    assert comparison.multipliers == [] and "no compute multipliers" in comparison.notes[-1]
