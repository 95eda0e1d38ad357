"""analysis.measured: training noise of replicated runs and compute multipliers read off the best runs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.approach2 import fit_approach2
from analysis.measured import (
    AT_MOST,
    EXACT,
    MORE_THAN,
    Z95,
    TrainingNoise,
    compute_to_reach,
    measured_multipliers,
    training_noise,
    window_half_width,
)


def _runs(key: str, best: dict[float, float], seed: int = 0, worse: float = 0.01) -> pd.DataFrame:
    """Per budget two runs: the best (loss given) and a worse one at another size."""
    rows = []
    for c, loss in best.items():
        for n, extra in ((1e4, 0.0), (3e4, worse)):
            rows.append({"key": key, "C": c, "N": n, "L": loss + extra, "seed": seed,
                         "run_name": f"{key}-C{c:.0e}-N{n:.0e}" + (f"-s{seed}" if seed else ""),
                         "size": f"n{n:.0e}"})
    return pd.DataFrame(rows)


# B's best losses fall 0.2 nats per decade of compute.
B_BEST = {1e12: 2.0, 1e13: 1.8, 1e14: 1.6}
A_BEST = {1e12: 1.9, 1e13: 2.1, 1e14: 1.5, 3e13: 1.7}


def _by_budget(result, fam, ref):
    return {m.budget: m for m in result.multipliers if m.family == fam and m.reference == ref}


def test_measured_multipliers_interpolate_and_bound():
    runs = pd.concat([_runs("a", A_BEST), _runs("b", B_BEST)], ignore_index=True)
    result = measured_multipliers(runs, TrainingNoise([]))
    b_for_a = _by_budget(result, "b", "a")
    assert set(b_for_a) == set(A_BEST)
    # 1.9 lies halfway (in loss) between B's 2.0 at 1e12 and 1.8 at 1e13: 10^12.5 FLOPs, / 1e12.
    m = b_for_a[1e12]
    assert m.multiplier.kind == EXACT and m.multiplier.compute == pytest.approx(10**0.5, rel=1e-12)
    assert m.target_loss == 1.9 and m.reference_run == "a-C1e+12-N1e+04"
    # 1.7 at 3e13: halfway between 1e13 (1.8) and 1e14 (1.6): 10^13.5 / 3e13.
    assert b_for_a[3e13].multiplier.kind == EXACT
    assert b_for_a[3e13].multiplier.compute == pytest.approx(10**13.5 / 3e13, rel=1e-12)
    # 2.1 at 1e13: B's smallest budget (1e12, 2.0) already beats it: <= 1e12 / 1e13.
    assert b_for_a[1e13].multiplier.kind == AT_MOST and b_for_a[1e13].multiplier.compute == pytest.approx(0.1)
    # 1.5 at 1e14: B never gets there: > 1e14 / 1e14.
    assert b_for_a[1e14].multiplier.kind == MORE_THAN and b_for_a[1e14].multiplier.compute == pytest.approx(1.0)
    assert b_for_a[1e14].multiplier.text() == "> 1x" and b_for_a[1e13].multiplier.text() == "<= 0.1x"
    # The other direction is reported too, one entry per budget of the reference.
    assert set(_by_budget(result, "a", "b")) == set(B_BEST)
    digest = dict(zip([("b", "a"), ("a", "b")], result.digest(), strict=True))
    assert digest[("b", "a")] == ("b to match a's best runs: 3.16x at 1e+12, 1.05x at 3e+13; 1 budget(s) where b's "
                                  "smallest budget already does (<=) and 1 where none of b's budgets does (>).")
    # Without replicas or windows there is no noise: the interval collapses onto the value.
    assert m.noise == 0 and m.lo == m.multiplier == m.hi


def test_interval_from_seed_scatter_propagates_through_the_interpolation():
    runs = pd.concat([_runs("a", A_BEST), _runs("b", B_BEST)], ignore_index=True)
    # Replicas of a's best run at 1e12 and of b's at 1e13: seed differences 0.02 and 0.04.
    reps = pd.concat([_runs("a", {1e12: 1.92}, seed=1), _runs("b", {1e13: 1.84}, seed=1)], ignore_index=True)
    reps = reps[reps["N"] == 1e4]
    fits = {k: fit_approach2(k, runs[runs["key"] == k].assign(D=1e6, flops=runs["C"]), n_boot=0)
            for k in ("a", "b")}
    noise = training_noise(runs, reps, {}, fits)
    assert [(r.key, r.budget, r.seeds) for r in noise.rows] == [("a", 1e12, [0, 1]), ("b", 1e13, [0, 1])]
    assert noise.rows[0].diff == pytest.approx(0.02) and noise.rows[1].diff == pytest.approx(0.04)
    # Pooled std over both pairs (one degree of freedom each): sqrt((0.02^2/2 + 0.04^2/2) / 2).
    pooled, n = noise.pooled_std()
    assert pooled == pytest.approx(math.sqrt((0.02**2 / 2 + 0.04**2 / 2) / 2)) and n == 4
    result = measured_multipliers(runs, noise)
    m = _by_budget(result, "b", "a")[1e12]
    assert m.noise == pytest.approx(pooled) and "pooled seed std" in m.noise_source
    # target 1.9 +- s on B's line (0.2 nats per decade between 1e12 and 1e13): 10^(0.5 -+ s / 0.2).
    assert m.lo.kind == m.hi.kind == EXACT
    assert m.lo.compute == pytest.approx(10 ** (0.5 - pooled / 0.2), rel=1e-9)
    assert m.hi.compute == pytest.approx(10 ** (0.5 + pooled / 0.2), rel=1e-9)
    # An interval end that leaves B's swept range becomes a bound, never an extrapolation.
    edge = runs.copy()
    at = (edge["key"] == "a") & (edge["C"] == 1e12)
    edge.loc[at, "L"] = np.where(edge.loc[at, "N"] == 1e4, 1.99, 2.05)  # a's best there: 1.99
    m = _by_budget(measured_multipliers(edge, noise), "b", "a")[1e12]
    assert m.multiplier.kind == EXACT and m.lo.kind == AT_MOST and m.hi.kind == EXACT


def test_noise_falls_back_to_the_window_half_width():
    runs = pd.concat([_runs("a", A_BEST), _runs("b", B_BEST)], ignore_index=True)
    w = np.array([1.0, 1.2, 0.8, 1.1, 0.9, 1.0])
    result = measured_multipliers(runs, TrainingNoise([]), {"a-C1e+12-N1e+04": w})
    m = _by_budget(result, "b", "a")[1e12]
    assert m.noise == pytest.approx(Z95 * w.std(ddof=1) / math.sqrt(w.size)) == window_half_width(w)
    assert "window" in m.noise_source
    assert math.isnan(window_half_width(None))


def test_compute_to_reach_first_crossing_of_a_non_monotone_curve():
    budgets = np.array([1e12, 1e13, 1e14, 1e15])
    losses = np.array([2.0, 1.7, 1.8, 1.5])
    reach = compute_to_reach(budgets, losses, 1.75)  # crossed first between 1e12 and 1e13
    assert reach.kind == EXACT and reach.compute == pytest.approx(10 ** (12 + 0.25 / 0.3))
    assert compute_to_reach(budgets, losses, 2.0).kind == AT_MOST  # reached at the smallest budget
    assert compute_to_reach(budgets, losses, 1.4).kind == MORE_THAN


def test_replicas_only_seed_zero_is_best():
    """A replica with a lower loss never becomes a family's best run (the best runs are seed 0)."""
    runs = pd.concat([_runs("a", A_BEST), _runs("b", B_BEST)], ignore_index=True)
    with_rep = pd.concat([runs, _runs("b", {1e12: 1.0}, seed=1)], ignore_index=True)
    plain = {(m.family, m.reference, m.budget): m.multiplier for m in measured_multipliers(runs, TrainingNoise([])).multipliers}
    mixed = {(m.family, m.reference, m.budget): m.multiplier
             for m in measured_multipliers(with_rep, TrainingNoise([])).multipliers}
    assert plain == mixed
