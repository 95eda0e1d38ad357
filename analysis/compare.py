"""Comparisons between families, all from the fitted Approach 2 compute-optimal frontiers.

Not the headline: the measured compute multipliers (analysis.measured, read off the best runs without a
fit) are. The multipliers here are read off power laws, extrapolated wherever the compute lies outside a
family's usable budgets, and the two directions of a pair need not agree; summary.md and fits.json
(`extrapolated_compute_multipliers`) label them so.

- **Frontier loss at matched compute**: each family's fitted L_opt(C) = K C^-c at every budget any
  family used (so families swept at different budgets still line up).
- **Extrapolated compute multiplier** (as the dnaHNet paper: "StripedHyena 2 needs ~3.75x"): at the largest budget
  both families used (usable in both), the compute C_X at which family X's frontier reaches family
  Y's loss, divided by that budget. Above 1: X needs more compute than Y for the same loss. Exact
  when frontiers are power laws; with an irreducible loss E > 0 they curve in log-log space, and as
  the frontier is flat (c ~ 0.07) a 1% error in loss moves the multiplier by a factor
  ~10^(0.0043 / c) ~ 1.15: read it with its bootstrap interval.
- **Exponents**: c of L_opt ~ C^-c, and the perplexity exponent c_ppl of PPL_opt = exp(L_opt) ~
  C^-c_ppl (equivalently L_opt = const - c_ppl ln C, the slope of loss against ln C).

CIs come from the per-family bootstrap replicates of Approach 2; two families' replicates are
independent, so replicate i of one is paired with replicate i of the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.approach2 import Approach2Result, PowerLaw, _percentile_interval, fit_power_law


@dataclass
class Exponents:
    key: str
    c: float  # L_opt ~ C^-c
    c_ci: tuple[float, float]
    c_ppl: float  # exp(L_opt) ~ C^-c_ppl
    c_ppl_ci: tuple[float, float]


@dataclass
class Multiplier:
    family: str  # X: the family that needs the compute
    reference: str  # Y: whose loss it has to reach
    budget: float  # largest budget usable in both
    target_loss: float  # Y's frontier loss at that budget (nats/nt)
    multiplier: float  # C_X / budget
    ci: tuple[float, float]
    extrapolated: bool  # C_X outside the budgets X was swept at


@dataclass
class Comparison:
    budgets: list[float]  # every usable budget of any family, ascending
    frontier: dict[str, list[float]]  # key -> fitted L_opt at each budget
    frontier_ci: dict[str, list[tuple[float, float]]]
    exponents: list[Exponents]
    multipliers: list[Multiplier]
    notes: list[str] = field(default_factory=list)


def perplexity_law(result: Approach2Result) -> PowerLaw:
    """Power law of exp(L_opt) against C over the usable budgets (slope = -c_ppl)."""
    compute = np.array([o.budget for o in result.usable])
    loss = np.array([o.loss for o in result.usable])
    boot = np.exp(10.0**result.boot_log10_loss) if result.boot_log10_loss is not None else np.empty(0)
    return fit_power_law(compute, np.exp(loss), boot)


def _compute_to_reach(law_slope, law_intercept, loss):
    """C such that 10^(intercept + slope log10 C) = loss; NaN where the frontier does not fall."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 ** ((np.log10(loss) - law_intercept) / law_slope)
    return np.where(np.asarray(law_slope) < 0, out, np.nan)


def compare(results: dict[str, Approach2Result]) -> Comparison:
    fitted = {k: r for k, r in results.items() if r.l_law is not None}
    notes = [f"{k}: no Approach 2 power law ({r.skipped}); left out of comparisons"
             for k, r in results.items() if r.l_law is None]
    budgets = sorted({o.budget for r in fitted.values() for o in r.usable})
    grid = np.array(budgets)
    frontier, frontier_ci, exponents = {}, {}, []
    for key, r in fitted.items():
        frontier[key] = [float(v) for v in r.l_law(grid)]
        lo, hi = r.l_law.band(grid)
        frontier_ci[key] = [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]
        ppl = perplexity_law(r)
        c_lo, c_hi = r.l_law.slope_ci()
        p_lo, p_hi = ppl.slope_ci()
        exponents.append(Exponents(key, -r.l_law.slope, (-c_hi, -c_lo), -ppl.slope, (-p_hi, -p_lo)))

    multipliers = []
    for x_key, x in fitted.items():
        for y_key, y in fitted.items():
            if x_key == y_key:
                continue
            common = {o.budget for o in x.usable} & {o.budget for o in y.usable}
            if not common:
                if x_key < y_key:
                    notes.append(f"{x_key} and {y_key} share no usable budget: no compute multiplier")
                continue
            top = max(common)
            target = float(y.l_law(top))
            c_x = float(_compute_to_reach(x.l_law.slope, x.l_law.intercept, target))
            n = min(x.l_law.boot_slope.size, y.l_law.boot_slope.size)
            boot_target = 10.0 ** (y.l_law.boot_intercept[:n] + y.l_law.boot_slope[:n] * np.log10(top))
            boot_c = _compute_to_reach(x.l_law.boot_slope[:n], x.l_law.boot_intercept[:n], boot_target)
            swept = [o.budget for o in x.usable]
            multipliers.append(Multiplier(
                family=x_key, reference=y_key, budget=top, target_loss=target, multiplier=c_x / top,
                ci=_percentile_interval(boot_c / top),
                extrapolated=bool(not np.isfinite(c_x) or not min(swept) <= c_x <= max(swept)),
            ))
    if len(fitted) < 2:
        notes.append("fewer than two families with a power law: no compute multipliers")
    return Comparison(budgets, frontier, frontier_ci, exponents, multipliers, notes)
