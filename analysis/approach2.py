"""Approach 2 (isoFLOP profiles): a parabola per budget, then power laws across budgets.

Per budget C, the final loss of every run is fitted by a parabola in x = log10 N (numpy polyfit). Its
vertex gives the compute-optimal size N_opt(C) and loss L_opt(C). D_opt(C) comes from the runs
themselves, not from C = 6 N D: log10 D is fitted linearly against log10 N over that budget's runs
and evaluated at the vertex, so whatever FLOPs-per-token accounting the sweep used carries over.

A budget is flagged, and left out of the power laws, when its vertex cannot be trusted: fewer than 3
sizes, a parabola that opens downward, the lowest loss at either end of the ladder, or a vertex
outside the sampled sizes. It is still reported (and drawn), never silently used.

Power laws N_opt ~ C^a, D_opt ~ C^b and L_opt ~ C^-c are least-squares lines in log10-log10 space
over the usable budgets (C = the planned `budget`).

Confidence intervals come from a bootstrap that resamples what is noisy in a run's loss, keeping every
run's size and budget fixed, then refits every parabola and every power law:
- **validation windows** (when the runs wrote their per-window losses): the windows are drawn with
  replacement, the same draw for every run (they share the windows, so their differences are paired),
  and each run's loss becomes the mean over the drawn windows;
- **parabola residuals** (always): a wild bootstrap, each run's residual from its budget's parabola
  kept or sign-flipped at random (Rademacher), which carries the training noise and misfit that the
  windows cannot see.
Percentile intervals. The per-budget standard error of a run's loss and of the difference between
neighbouring sizes (window bootstrap, paired) is reported beside the spread of the budget's losses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MIN_SIZES = 3  # a parabola needs three distinct sizes
MIN_BUDGETS = 2  # a power law needs two usable budgets
CI_LEVEL = 0.95


@dataclass
class BudgetOptimum:
    """The isoFLOP parabola of one budget and its vertex."""

    budget: float  # planned FLOPs C
    n_runs: int
    sizes: tuple[float, float]  # smallest and largest N sampled
    coeffs: tuple[float, float, float] | None  # (c2, c1, c0): L = c2 x^2 + c1 x + c0, x = log10 N
    tokens_line: tuple[float, float] | None  # (slope, intercept): log10 D against log10 N
    params: float  # N_opt (the vertex; the best run when there is no usable parabola)
    tokens: float  # D_opt (nucleotides)
    loss: float  # L_opt (nats/nt)
    flags: list[str] = field(default_factory=list)  # why this budget is not used in the power laws
    params_ci: tuple[float, float] | None = None  # bootstrap percentile interval of N_opt
    tokens_ci: tuple[float, float] | None = None
    loss_ci: tuple[float, float] | None = None
    flops_ratio: float = float("nan")  # mean actual / planned FLOPs of its runs (a sweep sanity check)
    spread: float = float("nan")  # largest - smallest loss over the budget's runs (nats/nt)
    loss_se: float = float("nan")  # median standard error of one run's loss (window bootstrap)
    paired_se: float = float("nan")  # median SE of the loss difference of neighbouring sizes (paired)
    best_params: float = float("nan")  # the best measured run of the budget (lowest loss): its N, D, loss
    best_tokens: float = float("nan")
    best_loss: float = float("nan")

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


@dataclass
class PowerLaw:
    """log10 y = slope * log10 C + intercept, with bootstrap replicates of both coefficients."""

    slope: float
    intercept: float
    boot_slope: np.ndarray  # (n_valid,)
    boot_intercept: np.ndarray  # (n_valid,)

    def __call__(self, compute: np.ndarray | float) -> np.ndarray:
        return 10.0 ** (self.intercept + self.slope * np.log10(compute))

    def slope_ci(self, level: float = CI_LEVEL) -> tuple[float, float]:
        return _percentile_interval(self.boot_slope, level)

    def band(self, compute: np.ndarray, level: float = CI_LEVEL) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the fitted line over the bootstrap replicates."""
        if self.boot_slope.size == 0:
            nan = np.full(np.shape(compute), np.nan)
            return nan, nan
        logc = np.log10(np.asarray(compute, dtype=float))
        lines = self.boot_intercept[:, None] + self.boot_slope[:, None] * logc[None, :]  # (R, P)
        q = 100 * (1 - level) / 2
        lo, hi = np.percentile(lines, [q, 100 - q], axis=0)
        return 10.0**lo, 10.0**hi


@dataclass
class Approach2Result:
    key: str
    optima: list[BudgetOptimum]  # every budget, ascending
    n_law: PowerLaw | None  # N_opt ~ C^a
    d_law: PowerLaw | None  # D_opt ~ C^b
    l_law: PowerLaw | None  # L_opt ~ C^-c (slope = -c)
    skipped: str | None  # why there are no power laws, if there are none
    n_boot: int  # resamples requested
    n_boot_valid: int  # resamples in which every usable budget still had a convex parabola
    noise: str = "residuals"  # what the bootstrap resampled: "windows+residuals" or "residuals"
    boot_log10_loss: np.ndarray | None = None  # (n_valid, n_usable) vertex losses, log10, for comparisons

    @property
    def usable(self) -> list[BudgetOptimum]:
        return [o for o in self.optima if not o.flagged]

    @property
    def a(self) -> float:
        return self.n_law.slope if self.n_law else float("nan")

    @property
    def b(self) -> float:
        return self.d_law.slope if self.d_law else float("nan")

    @property
    def c(self) -> float:
        return -self.l_law.slope if self.l_law else float("nan")


def _percentile_interval(samples: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    samples = np.asarray(samples, dtype=float)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (float("nan"), float("nan"))
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [q, 100 - q])
    return (float(lo), float(hi))


def bootstrap_weights(groups: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Integer weights (n_boot, n_runs): each row resamples runs with replacement within each group.

    A weight is how many times a run is drawn; a weighted least-squares fit with these weights equals
    the plain fit on the resampled rows, so every resample is fitted without copying data.
    """
    groups = np.asarray(groups)
    weights = np.zeros((n_boot, groups.size), dtype=np.int64)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=n_boot)
    return weights


def _vertices(x: np.ndarray, logd: np.ndarray, losses: np.ndarray):
    """Vertex log10 N, log10 D and loss of the parabola through each row of losses (R, n) over x (n,);
    NaN where a row's parabola opens downward. D is log-linear in N within a budget (fixed runs)."""
    c2, c1, c0 = np.polyfit(x, losses.T, 2)  # each (R,)
    slope, intercept = np.polyfit(x, logd, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        convex = c2 > 0
        xv = np.where(convex, -c1 / (2 * c2), np.nan)
        lv = np.where(convex, c0 - c1**2 / (4 * c2), np.nan)
    return xv, slope * xv + intercept, lv


def window_replicates(windows: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n_runs) run losses over windows drawn with replacement, one draw per replicate shared by
    every run (paired). windows: (n_runs, W) per-window mean losses."""
    n_win = windows.shape[1]
    out = np.empty((n_boot, windows.shape[0]))
    for r in range(n_boot):
        out[r] = windows[:, rng.integers(0, n_win, n_win)].mean(axis=1)
    return out


def residual_replicates(x: np.ndarray, loss: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(R, n) wild-bootstrap losses: the budget's parabola plus its residuals with random signs."""
    coeffs = np.polyfit(x, loss, 2)
    fit = np.polyval(coeffs, x)
    signs = rng.choice((-1.0, 1.0), size=(n_boot, x.size))
    return fit[None, :] + signs * (loss - fit)[None, :]


def fit_budget(budget: float, runs: pd.DataFrame) -> BudgetOptimum:
    """Parabola of loss vs log10 N over one budget's runs (columns N, D, L, flops), and its vertex."""
    runs = runs.sort_values("N")
    x = np.log10(runs["N"].to_numpy())
    logd = np.log10(runs["D"].to_numpy())
    loss = runs["L"].to_numpy()
    best = int(np.argmin(loss))
    flags: list[str] = []
    sizes = (float(10 ** x.min()), float(10 ** x.max()))
    n_sizes = np.unique(x).size
    ratio = float(np.mean(runs["flops"].to_numpy() / budget))
    best_fields = {"best_params": float(10 ** x[best]), "best_tokens": float(10 ** logd[best]),
                   "best_loss": float(loss[best])}

    def best_run(reason: str) -> BudgetOptimum:
        return BudgetOptimum(
            budget=budget, n_runs=len(runs), sizes=sizes, coeffs=None, tokens_line=None,
            params=float(10 ** x[best]), tokens=float(10 ** logd[best]), loss=float(loss[best]),
            flags=flags + [reason], flops_ratio=ratio, **best_fields,
        )

    if n_sizes < MIN_SIZES:
        return best_run(f"only {n_sizes} size(s), a parabola needs {MIN_SIZES}; best run reported")
    c2, c1, c0 = np.polyfit(x, loss, 2)
    slope, intercept = np.polyfit(x, logd, 1)
    if c2 <= 0:
        return best_run("parabola opens downward (no minimum); best run reported")
    xv = -c1 / (2 * c2)
    if x[best] in (x.min(), x.max()):
        end = "smallest" if x[best] == x.min() else "largest"
        flags.append(f"lowest loss at the {end} size of the ladder")
    if not x.min() <= xv <= x.max():
        flags.append("vertex outside the sampled sizes")
    return BudgetOptimum(
        budget=budget, n_runs=len(runs), sizes=sizes, coeffs=(float(c2), float(c1), float(c0)),
        tokens_line=(float(slope), float(intercept)), params=float(10**xv),
        tokens=float(10 ** (slope * xv + intercept)), loss=float(c0 - c1**2 / (4 * c2)), flags=flags,
        flops_ratio=ratio, **best_fields,
    )


def ols(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares lines y = slope x + intercept; y (k,) or (R, k) for R lines over the same x."""
    y = np.atleast_2d(y)
    xm = x - x.mean()
    slope = (y - y.mean(axis=1, keepdims=True)) @ xm / (xm @ xm)
    intercept = y.mean(axis=1) - slope * x.mean()
    return slope, intercept


def fit_power_law(compute: np.ndarray, values: np.ndarray, boot_values: np.ndarray) -> PowerLaw:
    """Power law values ~ compute^slope in log10 space; boot_values (R, k) are bootstrap replicates."""
    logc = np.log10(compute)
    slope, intercept = ols(logc, np.log10(values))
    boot_slope, boot_intercept = ols(logc, np.log10(boot_values)) if boot_values.size else (
        np.empty(0), np.empty(0))
    return PowerLaw(float(slope[0]), float(intercept[0]), boot_slope, boot_intercept)


def fit_approach2(key: str, runs: pd.DataFrame, n_boot: int = 200, seed: int = 0,
                  windows: np.ndarray | None = None) -> Approach2Result:
    """isoFLOP analysis of one family: optima per budget, power laws and their bootstrap CIs.

    `runs` holds that family's usable runs with columns C (budget), N, D, L and flops; `windows`
    (len(runs), W), aligned with its rows, their per-window validation losses, or None.
    """
    budgets = sorted(runs["C"].unique())
    optima = [fit_budget(float(c), runs[runs["C"] == c]) for c in budgets]
    usable = [o for o in optima if not o.flagged]
    for o in optima:
        if o.flagged:
            log.warning("%s: budget %.3g flagged and left out of the power laws: %s",
                        key, o.budget, "; ".join(o.flags))

    # Bootstrap every budget that has a parabola: per-budget CIs for all, power-law CIs for usable.
    rng = np.random.default_rng(seed)
    runs = runs.reset_index(drop=True)
    noise = "windows+residuals" if windows is not None else "residuals"
    boot_runs = window_replicates(windows, n_boot, rng) if windows is not None else None  # (R, n_runs)
    fitted = [o for o in optima if o.coeffs is not None]
    boot_x = np.full((n_boot, len(fitted)), np.nan)
    boot_d = np.full((n_boot, len(fitted)), np.nan)
    boot_l = np.full((n_boot, len(fitted)), np.nan)
    for o in optima:
        rows = np.flatnonzero((runs["C"] == o.budget).to_numpy())
        loss = runs["L"].to_numpy()[rows]
        o.spread = float(loss.max() - loss.min())
        if boot_runs is not None and n_boot > 1:
            order = rows[np.argsort(runs["N"].to_numpy()[rows])]
            o.loss_se = float(np.median(boot_runs[:, order].std(axis=0, ddof=1)))
            if order.size > 1:
                o.paired_se = float(np.median(np.diff(boot_runs[:, order], axis=1).std(axis=0, ddof=1)))
    for j, o in enumerate(fitted):
        rows = np.flatnonzero((runs["C"] == o.budget).to_numpy())
        x = np.log10(runs["N"].to_numpy()[rows])
        loss = runs["L"].to_numpy()[rows]
        if n_boot == 0:
            continue
        replicates = residual_replicates(x, loss, n_boot, rng)  # (R, n)
        if boot_runs is not None:
            replicates = replicates + (boot_runs[:, rows] - loss[None, :])
        boot_x[:, j], boot_d[:, j], boot_l[:, j] = _vertices(x, np.log10(runs["D"].to_numpy()[rows]), replicates)
        o.params_ci = _ci_pow10(boot_x[:, j])
        o.tokens_ci = _ci_pow10(boot_d[:, j])
        o.loss_ci = _percentile_interval(boot_l[:, j])

    if len(budgets) < MIN_BUDGETS:
        skipped = (f"only one budget ({budgets[0]:.3g} FLOPs): optima reported, "
                   "no power-law fit (needs at least 2 budgets)")
    elif len(usable) < MIN_BUDGETS:
        skipped = (f"only {len(usable)} of {len(budgets)} budgets usable (the others are flagged): "
                   "no power-law fit (needs at least 2 usable budgets)")
    else:
        skipped = None
    if skipped:
        log.warning("%s: %s", key, skipped)
        return Approach2Result(key, optima, None, None, None, skipped, n_boot, 0, noise=noise)

    cols = [fitted.index(o) for o in usable]
    valid = np.all(np.isfinite(boot_l[:, cols]), axis=1)
    n_valid = int(valid.sum())
    if n_valid < 0.9 * n_boot:
        log.warning("%s: %d of %d bootstrap resamples lost a convex parabola in some budget; CIs use "
                    "the remaining %d", key, n_boot - n_valid, n_boot, n_valid)
    compute = np.array([o.budget for o in usable])
    bx, bd, bl = boot_x[valid][:, cols], boot_d[valid][:, cols], boot_l[valid][:, cols]
    n_law = fit_power_law(compute, np.array([o.params for o in usable]), 10.0**bx)
    d_law = fit_power_law(compute, np.array([o.tokens for o in usable]), 10.0**bd)
    l_law = fit_power_law(compute, np.array([o.loss for o in usable]), bl)
    return Approach2Result(key, optima, n_law, d_law, l_law, None, n_boot, n_valid, noise=noise,
                           boot_log10_loss=np.log10(bl))


def _ci_pow10(log10_samples: np.ndarray) -> tuple[float, float]:
    lo, hi = _percentile_interval(log10_samples)
    return (float(10**lo), float(10**hi))
