"""Approach 3 (parametric fit): L(N, D) = E + A / N^alpha + B / D^beta over every usable run.

As Chinchilla (Hoffmann et al. 2022) and its replication (Besiroglu et al. 2024): with a = log A,
b = log B, e = log E, minimise the MEAN Huber loss (delta = 1e-3) between

    LSE(a - alpha log N, b - beta log D, e)   and   log L

by L-BFGS (scipy L-BFGS-B, no bounds, analytic gradient, tight tolerances so it converges) from every
point of a grid of initialisations, keeping the best (a loose screening run from every grid point, then
tight runs from the best 32 screened points: `minimise_from`). The objective is divided by delta before it
reaches the optimiser: the same minimiser, but gradients of order one, so the stopping rules see
them. The default grid (`InitGrid`) has 4 x 4 x 3 x 4 x 4 = 768 starts spanning the ranges of
Chinchilla's (Hoffmann et al. 2022: alpha, beta in 0..2; e in -1..1; a, b in 0..25), a coarser version of its
4,500-point grid (`InitGrid.chinchilla()`): ~5 ms per start, ~4 s per fit on one idle core.
`InitGrid.coarse()` (162 starts) is for a quick look.

Confidence intervals: a bootstrap resamples runs with replacement within each budget and refits from
three starts in the best fit's neighbourhood (the best fit, and alpha, beta scaled by 0.8 and 1.25
with a, b shifted to keep both terms at the centre of the data).

Compute-optimal allocation under C = 6 N D (which the law implies, not what a sweep measured):
N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, with a = beta/(alpha+beta), b = alpha/(alpha+beta),
G = (alpha A / (beta B))^(1/(alpha+beta)).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from tqdm.auto import tqdm

from analysis.approach2 import CI_LEVEL, _percentile_interval, bootstrap_weights

log = logging.getLogger(__name__)

HUBER_DELTA = 1e-3
MIN_RUNS = 5  # fewer runs than this cannot pin five parameters
MIN_BUDGETS = 2  # within one budget N and D are tied (D ~ C/N): two budgets separate them
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")
_LBFGS_OPTIONS = {"ftol": 1e-15, "gtol": 1e-11, "maxiter": 2000}
# Screening pass over a large grid: loose tolerances find each start's basin; only the best POLISH_TOP
# screened points are then run to the tight tolerances above. On a nearly flat L(N, D) (the CPU dnaHNet
# sweep: alpha ~ 0.002) tight L-BFGS from all 768 starts took 33 s; screen + polish 4 s, ending 2e-10
# (mean Huber / delta) from the exhaustive best with the same exponents to 3 digits.
_SCREEN_OPTIONS = {"ftol": 1e-9, "gtol": 1e-6, "maxiter": 2000}
POLISH_TOP = 32


def _single_threaded_blas() -> contextlib.AbstractContextManager:
    """BLAS limited to one thread while L-BFGS-B runs.

    scipy's L-BFGS-B calls BLAS on 5-vectors every iteration; a multi-threaded OpenBLAS wakes its
    threads for each call, which on a busy machine made a fit ~20x slower (measured: 94 ms vs 4.7 ms
    of CPU per start on a loaded 2-core box). threadpoolctl does the limiting; without it the fits
    are still correct, only possibly slower, and that is logged once.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        if not getattr(_single_threaded_blas, "warned", False):
            log.warning("threadpoolctl not installed: BLAS threads not limited, Approach 3 may be slow "
                        "on a busy machine (pip install threadpoolctl, or set OPENBLAS_NUM_THREADS=1)")
            _single_threaded_blas.warned = True
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True)
class InitGrid:
    """Starting points of L-BFGS: every combination of these values."""

    alpha: tuple[float, ...] = (0.0, 2 / 3, 4 / 3, 2.0)
    beta: tuple[float, ...] = (0.0, 2 / 3, 4 / 3, 2.0)
    e: tuple[float, ...] = (-1.0, 0.0, 1.0)  # log E
    a: tuple[float, ...] = (0.0, 25 / 3, 50 / 3, 25.0)  # log A
    b: tuple[float, ...] = (0.0, 25 / 3, 50 / 3, 25.0)  # log B

    @classmethod
    def coarse(cls) -> InitGrid:
        """3 x 3 x 2 x 3 x 3 = 162 starts over the same ranges: a quick look, ~5x faster."""
        return cls(alpha=(0.0, 1.0, 2.0), beta=(0.0, 1.0, 2.0), e=(-1.0, 1.0), a=(0.0, 12.5, 25.0),
                   b=(0.0, 12.5, 25.0))

    @classmethod
    def named(cls, name: str) -> InitGrid:
        """'coarse', 'default' or 'chinchilla'."""
        grids = {"coarse": cls.coarse, "default": cls, "chinchilla": cls.chinchilla}
        if name not in grids:
            raise ValueError(f"unknown initialisation grid {name!r}; choose from {', '.join(grids)}")
        return grids[name]()

    @classmethod
    def chinchilla(cls) -> InitGrid:
        """The grid Hoffmann et al. used (4,500 starts): thorough, ~6x slower than the default."""
        half = tuple(np.arange(0, 2.01, 0.5))
        return cls(alpha=half, beta=half, e=tuple(np.arange(-1, 1.01, 0.5)),
                   a=tuple(np.arange(0, 25.1, 5.0)), b=tuple(np.arange(0, 25.1, 5.0)))

    def points(self) -> np.ndarray:
        """(S, 5) starts in the optimiser's order (a, b, e, alpha, beta)."""
        return np.array(list(itertools.product(self.a, self.b, self.e, self.alpha, self.beta)))


@dataclass(frozen=True)
class ParametricLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta (nats/nt)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_theta(cls, theta: np.ndarray) -> ParametricLaw:
        a, b, e, alpha, beta = (float(v) for v in theta)
        with np.errstate(over="ignore"):  # a diverged fit overflows to inf: `fit_approach3` refuses it
            return cls(E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=alpha, beta=beta)

    def loss(self, params: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        params, tokens = np.asarray(params, float), np.asarray(tokens, float)
        return self.E + self.A / params**self.alpha + self.B / tokens**self.beta

    @property
    def a(self) -> float:
        """Exponent of N_opt ~ C^a under C = 6 N D."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ~ C^b under C = 6 N D."""
        return self.alpha / (self.alpha + self.beta)

    def optimal_params(self, compute: np.ndarray | float) -> np.ndarray:
        """N_opt(C) under C = 6 N D."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * (np.asarray(compute, float) / 6) ** self.a

    def optimal_tokens(self, compute: np.ndarray | float) -> np.ndarray:
        return np.asarray(compute, float) / (6 * self.optimal_params(compute))


@dataclass
class Approach3Result:
    key: str
    law: ParametricLaw | None
    skipped: str | None  # why there is no fit
    n_runs: int
    objective: float = float("nan")  # mean Huber loss / delta at the best fit
    n_starts: int = 0
    n_boot: int = 0
    boot: np.ndarray = field(default_factory=lambda: np.empty((0, 5)))  # (R, 5) E, A, B, alpha, beta

    def ci(self, level: float = CI_LEVEL) -> dict[str, tuple[float, float]]:
        """Percentile intervals of E, A, B, alpha, beta and the implied a, b."""
        out = {name: _percentile_interval(self.boot[:, i], level) for i, name in enumerate(PARAM_NAMES)}
        alpha, beta = self.boot[:, 3], self.boot[:, 4]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["a"] = _percentile_interval(beta / (alpha + beta), level)
            out["b"] = _percentile_interval(alpha / (alpha + beta), level)
        return out


def huber_objective(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                    weights: np.ndarray, delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Weighted mean Huber loss / delta of LSE(a - alpha log N, b - beta log D, e) - log L, and its gradient.

    theta = (a, b, e, alpha, beta); weights (n,) count how often each run is drawn (ones for the fit).
    """
    a, b, e, alpha, beta = theta
    t_n = a - alpha * log_n  # (n,) log of A / N^alpha
    t_d = b - beta * log_d  # (n,) log of B / D^beta
    top = np.maximum(np.maximum(t_n, t_d), e)  # shift for a stable log-sum-exp
    x_n, x_d, x_e = np.exp(t_n - top), np.exp(t_d - top), np.exp(e - top)
    total = x_n + x_d + x_e
    resid = top + np.log(total) - log_l  # (n,)
    abs_r = np.abs(resid)
    huber = np.where(abs_r <= delta, 0.5 * resid * resid, delta * (abs_r - 0.5 * delta))
    norm = weights.sum() * delta
    value = float(weights @ huber / norm)
    # d value / d term_k = weight * clip(resid) / norm * softmax_k
    dres = weights * np.clip(resid, -delta, delta) / (norm * total)
    g_n, g_d = dres * x_n, dres * x_d
    grad = np.array([g_n.sum(), g_d.sum(), dres @ x_e, -(g_n @ log_n), -(g_d @ log_d)])
    return value, grad


def minimise_from(starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                  weights: np.ndarray | None = None, desc: str | None = None) -> tuple[np.ndarray, float]:
    """L-BFGS from every start; the parameters (a, b, e, alpha, beta) and value of the best.

    More than POLISH_TOP starts: a loose screening run from each, then tight runs from the best
    POLISH_TOP screened points. `desc` shows a progress bar with that label.
    """
    weights = np.ones_like(log_n) if weights is None else np.asarray(weights, float)
    args = (log_n, log_d, log_l, weights)
    with _single_threaded_blas():
        if len(starts) > POLISH_TOP:
            screened = [minimize(huber_objective, start, args=args, jac=True, method="L-BFGS-B",
                                 options=_SCREEN_OPTIONS)
                        for start in tqdm(starts, desc=desc, disable=desc is None, leave=False)]
            values = np.array([r.fun if np.isfinite(r.fun) else np.inf for r in screened])
            starts = np.array([screened[i].x for i in np.argsort(values)[:POLISH_TOP]])
        best_theta, best_value = None, np.inf
        for start in starts:
            res = minimize(huber_objective, start, args=args, jac=True, method="L-BFGS-B", options=_LBFGS_OPTIONS)
            if np.isfinite(res.fun) and res.fun < best_value:
                best_theta, best_value = res.x, float(res.fun)
    return best_theta, best_value


def fit_approach3(key: str, runs: pd.DataFrame, n_boot: int = 200, seed: int = 0,
                  grid: InitGrid | None = None, progress: bool = True) -> Approach3Result:
    """Fit L(N, D) to one family's usable runs (columns N, D, L, C) and bootstrap its CIs."""
    n_budgets = runs["C"].nunique()
    if len(runs) < MIN_RUNS or n_budgets < MIN_BUDGETS:
        reason = (f"{len(runs)} usable run(s) over {n_budgets} budget(s); needs at least "
                  f"{MIN_RUNS} runs over {MIN_BUDGETS} budgets")
        log.warning("%s: Approach 3 skipped: %s", key, reason)
        return Approach3Result(key, None, reason, len(runs))
    log_n = np.log(runs["N"].to_numpy(float))
    log_d = np.log(runs["D"].to_numpy(float))
    log_l = np.log(runs["L"].to_numpy(float))
    starts = (grid or InitGrid()).points()
    log.info("%s: Approach 3 from %d starts", key, len(starts))
    theta, value = minimise_from(starts, log_n, log_d, log_l,
                                 desc=f"{key}: Approach 3 starts" if progress else None)
    law = ParametricLaw.from_theta(theta)
    with np.errstate(over="ignore", invalid="ignore"):
        predicted = law.loss(runs["N"].to_numpy(float), runs["D"].to_numpy(float))
    if not (np.isfinite([law.E, law.A, law.B, law.alpha, law.beta]).all() and np.isfinite(predicted).all()):
        # The optimiser ran off to a degenerate corner (a size term A / N^alpha beyond float64, typical of a
        # handful of runs over two budgets): no law to report, rather than inf / NaN predictions.
        reason = (f"the fit diverged (log A = {theta[0]:.3g}, alpha = {theta[3]:.3g}: its predictions overflow "
                  "float64); too few or too flat runs to pin down L(N, D)")
        log.warning("%s: Approach 3: %s", key, reason)
        return Approach3Result(key, None, reason, len(runs))

    rng = np.random.default_rng(seed)
    weights = bootstrap_weights(runs["C"].to_numpy(), n_boot, rng)
    centre = (float(log_n.mean()), float(log_d.mean()))
    near = np.array([theta, _scaled(theta, 0.8, centre), _scaled(theta, 1.25, centre)])
    boot = []
    for w in tqdm(weights, desc=f"{key}: Approach 3 bootstrap", disable=not progress or n_boot == 0,
                  leave=False):
        t, _ = minimise_from(near, log_n, log_d, log_l, w)
        if t is not None:
            fit = ParametricLaw.from_theta(t)
            boot.append([fit.E, fit.A, fit.B, fit.alpha, fit.beta])
    boot_arr = np.array(boot, dtype=float).reshape(-1, 5)
    return Approach3Result(key, law, None, len(runs), value, len(starts), n_boot, boot_arr)


def _scaled(theta: np.ndarray, factor: float, centre: tuple[float, float]) -> np.ndarray:
    """A start near the best fit: alpha and beta scaled, a and b moved so that both terms keep their
    value at the centre (mean log N, mean log D) of the data."""
    a, b, e, alpha, beta = theta
    return np.array([a + (factor - 1) * alpha * centre[0], b + (factor - 1) * beta * centre[1], e,
                     factor * alpha, factor * beta])
