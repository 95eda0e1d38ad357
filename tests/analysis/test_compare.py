"""analysis.compare: compute multipliers and perplexity exponents from Approach 2 frontiers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHINCHILLA, Law, as_runs

from analysis.approach2 import fit_approach2
from analysis.compare import compare, perplexity_law

BUDGETS = tuple(np.logspace(18, 20, 5))


def _fit(sweep, law, family):
    return fit_approach2(family, as_runs(sweep(law, budgets=BUDGETS, family=family)), n_boot=50, seed=1)


def test_compute_multiplier_of_a_less_data_efficient_family(sweep):
    """Family X learns from D tokens what the reference learns from D / k: L_X(N, D) = L(N, D / k),
    i.e. B_X = B k^beta. Then exactly L_opt,X(C) = L_opt(C / k): X needs k times the compute for
    any loss. The fitted power laws only approximate the curved frontiers (E > 0), and the
    multiplier is read at the top budget where X's fit extrapolates; a 5% tolerance covers that."""
    k = 3.0
    slow = Law(CHINCHILLA.E, CHINCHILLA.A, CHINCHILLA.B * k**CHINCHILLA.beta, CHINCHILLA.alpha,
               CHINCHILLA.beta)
    results = {"fast": _fit(sweep, CHINCHILLA, "fast"), "slow": _fit(sweep, slow, "slow")}
    comparison = compare(results)
    by_pair = {(m.family, m.reference): m for m in comparison.multipliers}
    slow_vs_fast = by_pair[("slow", "fast")]
    assert slow_vs_fast.budget == pytest.approx(BUDGETS[-1])
    assert slow_vs_fast.multiplier == pytest.approx(k, rel=0.05)
    assert slow_vs_fast.extrapolated  # 3e20 lies beyond the swept 1e20
    assert by_pair[("fast", "slow")].multiplier == pytest.approx(1 / k, rel=0.05)
    lo, hi = slow_vs_fast.ci
    assert lo <= slow_vs_fast.multiplier <= hi
    # Frontier at matched compute: the slow family's loss is higher at every budget.
    assert all(s > f for s, f in zip(comparison.frontier["slow"], comparison.frontier["fast"]))


def test_perplexity_exponent_is_slope_of_loss_against_log_compute(sweep):
    result = _fit(sweep, CHINCHILLA, "x")
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
