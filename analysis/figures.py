"""Figures of the scaling-law analysis, each written as PNG and PDF (Agg backend, no display needed).

- `isoflop_<key>`: loss against parameters per budget (log x), fitted parabolas, vertices starred;
  flagged budgets drawn hollow with dashed parabolas and their best measured run as a hollow diamond (not
  the vertex, which can sit decades outside the ladder); runs of other seeds as small hollow markers; the x
  axis spans the runs.
- `frontier`: compute-optimal loss L_opt against FLOPs per family, power law and bootstrap band; a flagged
  budget at its best measured run (hollow diamond), as also on `optimal_allocation`.
- `optimal_allocation`: N_opt and D_opt against FLOPs per family, power laws and bootstrap bands.
- `approach3_residuals`: loss predicted by the fitted L(N, D) against the observed loss, per family.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.approach2 import Approach2Result  # noqa: E402
from analysis.approach3 import Approach3Result  # noqa: E402

log = logging.getLogger(__name__)

LOSS_LABEL = "validation loss (nats/nt)"
FLOPS_LABEL = "training compute C (FLOPs)"
PARAMS_LABEL = "parameters N"
TOKENS_LABEL = "training tokens D (nt)"


def sci(value: float) -> str:
    """1e18 -> '$10^{18}$', 3.16e19 -> '$3.2 \\times 10^{19}$' (mathtext)."""
    exponent = int(np.floor(np.log10(value)))
    mantissa = value / 10.0**exponent
    if abs(mantissa - 1) < 5e-3:
        return rf"$10^{{{exponent}}}$"
    if abs(mantissa - 10) < 5e-2:
        return rf"$10^{{{exponent + 1}}}$"
    return rf"${mantissa:.2g} \times 10^{{{exponent}}}$"


def slug(key: str) -> str:
    """A file-name-safe form of a family key ('hnet/2stage' -> 'hnet__2stage')."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key.replace("/", "__"))


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """Write stem.png and stem.pdf, each via a temporary file and os.replace; close the figure."""
    written = []
    for ext in ("png", "pdf"):
        path = stem.with_suffix(f".{ext}")
        tmp = path.with_name(f".{path.name}.tmp")
        fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight")
        os.replace(tmp, path)
        written.append(path)
    plt.close(fig)
    return written


def _budget_colours(budgets: list[float]) -> dict[float, tuple]:
    # plasma without its pale yellow end, which vanishes on white.
    cmap = plt.get_cmap("plasma")
    spots = np.linspace(0.0, 0.82, max(len(budgets), 2))
    return {b: cmap(spots[i]) for i, b in enumerate(sorted(budgets))}


def _floor_line(ax, floor) -> None:
    """The Markov floor (analysis.markov.FloorRow) as a horizontal line, in the legend."""
    if floor is not None:
        ax.axhline(floor.val_loss, color="0.25", ls=":", lw=1.2, zorder=1,
                   label=f"Markov floor (order {floor.k}, {floor.smoothing})")


BEST_RUN_LABEL = "flagged budget: its best measured run\n(the vertex is not trusted)"
BEST_RUN_MARKER = "D"


def plotted_optimum(o) -> tuple[float, float, float, bool]:
    """(N, D, loss, is_best_run) drawn for a budget's optimum: the parabola's vertex, or for a flagged budget
    (vertex outside the ladder, not bracketed, no parabola) its best measured run, since such a vertex can sit
    decades away from every run."""
    if o.flagged:
        n = o.best_params if np.isfinite(o.best_params) else o.params
        d = o.best_tokens if np.isfinite(o.best_tokens) else o.tokens
        loss = o.best_loss if np.isfinite(o.best_loss) else o.loss
        return float(n), float(d), float(loss), True
    return float(o.params), float(o.tokens), float(o.loss), False


def data_xlim(values) -> tuple[float, float]:
    """Log-axis limits spanning the measured values with a small margin (never a far-away vertex)."""
    x = np.log10(np.asarray([v for v in values if np.isfinite(v) and v > 0], dtype=float))
    lo, hi = float(x.min()), float(x.max())
    pad = 0.05 * (hi - lo) + 0.05
    return 10 ** (lo - pad), 10 ** (hi + pad)


def isoflop_figure(key: str, runs: pd.DataFrame, result: Approach2Result, stem: Path, floor=None,
                   replicas: pd.DataFrame | None = None) -> list[Path]:
    """Runs (seed 0) per budget, parabolas and optima; `replicas` (other seeds of some runs) as small hollow
    markers at their (N, loss), so that the seed-to-seed scatter is visible."""
    colours = _budget_colours([o.budget for o in result.optima])
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    xs = list(runs["N"])
    for o in result.optima:
        sub = runs[runs["C"] == o.budget]
        colour = colours[o.budget]
        label = sci(o.budget) + (" (flagged)" if o.flagged else "")
        face = "none" if o.flagged else colour
        ax.scatter(sub["N"], sub["L"], s=22, facecolors=face, edgecolors=colour, linewidths=1.2,
                   label=label, zorder=3)
        if o.coeffs is not None:
            lo, hi = np.log10(o.sizes)
            pad = 0.08 * (hi - lo)
            x = np.linspace(lo - pad, hi + pad, 200)
            ax.plot(10**x, np.polyval(o.coeffs, x), color=colour, lw=1.2,
                    ls="--" if o.flagged else "-", zorder=2)
        n, _, loss, best_run = plotted_optimum(o)
        if best_run:
            ax.scatter([n], [loss], marker=BEST_RUN_MARKER, s=60, color="white", edgecolors=colour,
                       linewidths=1.4, zorder=4)
        else:
            ax.scatter([n], [loss], marker="*", s=140, color=colour, edgecolors="black", linewidths=0.6,
                       zorder=4)
        if replicas is not None and len(replicas):
            rep = replicas[replicas["C"] == o.budget]
            if len(rep):
                ax.scatter(rep["N"], rep["L"], s=9, facecolors="none", edgecolors=colour, linewidths=0.8,
                           zorder=3)
                xs += list(rep["N"])
    if not all(o.flagged for o in result.optima):
        ax.scatter([], [], marker="*", s=140, color="0.5", edgecolors="black", label="optimum")
    if any(o.flagged for o in result.optima):
        ax.scatter([], [], marker=BEST_RUN_MARKER, s=60, color="white", edgecolors="0.4", linewidths=1.4,
                   label=BEST_RUN_LABEL)
    if replicas is not None and len(replicas):
        ax.scatter([], [], s=9, facecolors="none", edgecolors="0.4", linewidths=0.8,
                   label="other seeds (replicas)")
    _floor_line(ax, floor)
    _log_x_major_only(ax)
    ax.set_xlim(*data_xlim(xs))
    ax.set_xlabel(PARAMS_LABEL)
    ax.set_ylabel(LOSS_LABEL)
    ax.set_title(f"{key}: isoFLOP profiles")
    ax.legend(title="budget (FLOPs)", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              title_fontsize=8, frameon=False)
    return save(fig, stem)


def _family_colours(keys: list[str]) -> dict[str, tuple]:
    palette = sns.color_palette("colorblind", max(len(keys), 1))
    return {k: palette[i] for i, k in enumerate(keys)}


def _span(results: dict[str, Approach2Result]) -> np.ndarray:
    budgets = [o.budget for r in results.values() for o in r.optima]
    lo, hi = np.log10(min(budgets)), np.log10(max(budgets))
    return np.logspace(lo - 0.15, hi + 0.15, 100)


def _ci_errors(values: list[float], cis: list) -> np.ndarray | None:
    """Asymmetric error bars (2, n) from intervals; None if no interval is known."""
    if all(ci is None for ci in cis):
        return None
    lo = [v - ci[0] if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
    hi = [ci[1] - v if ci else 0.0 for v, ci in zip(values, cis, strict=True)]
    return np.clip(np.nan_to_num(np.array([lo, hi])), 0, None)


def _optima_panel(ax, results, colours, value, ci, law, symbol: str, exponent_sign: int = 1) -> None:
    """Optima of every family on one axis: points (hollow when flagged), power law and band."""
    grid = _span(results)
    for key, r in results.items():
        colour = colours[key]
        fit = getattr(r, law)
        label = key
        if fit is not None:
            lo, hi = fit.slope_ci()
            e, lo, hi = exponent_sign * fit.slope, exponent_sign * lo, exponent_sign * hi
            lo, hi = min(lo, hi), max(lo, hi)
            label = f"{key}: {symbol} = {e:.3f} [{lo:.3f}, {hi:.3f}]"
            ax.plot(grid, fit(grid), color=colour, lw=1.4)
            band_lo, band_hi = fit.band(grid)
            ax.fill_between(grid, band_lo, band_hi, color=colour, alpha=0.18, lw=0)
        for flagged in (False, True):
            opts = [o for o in r.optima if o.flagged == flagged]
            if not opts:
                continue
            # A flagged budget is drawn at its best measured run (its vertex is unconstrained and its
            # bootstrap interval can span decades): no bar.
            vals = [optimum_value(o, value) for o in opts]
            yerr = None if flagged else _ci_errors(vals, [getattr(o, ci) for o in opts])
            ax.errorbar([o.budget for o in opts], vals, yerr=yerr,
                        fmt=BEST_RUN_MARKER if flagged else "o", ms=5, color=colour,
                        mfc="none" if flagged else colour, capsize=2, lw=1, label=label if not flagged else None)
        if all(o.flagged for o in r.optima):
            ax.plot([], [], "o", color=colour, label=label)
    if any(o.flagged for r in results.values() for o in r.optima):
        ax.plot([], [], BEST_RUN_MARKER, color="0.4", mfc="none", ms=5, label=BEST_RUN_LABEL.replace("\n", " "))
    _log_x_major_only(ax)
    ax.set_xlabel(FLOPS_LABEL)


def optimum_value(o, value: str) -> float:
    """`value` ("params", "tokens" or "loss") of a budget's plotted optimum (`plotted_optimum`)."""
    n, d, loss, _ = plotted_optimum(o)
    return {"params": n, "tokens": d, "loss": loss}[value]


def _log_x_major_only(ax) -> None:
    """Log x axis labelled at powers of ten only: over a decade or so, labelled minor ticks overlap."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def frontier_figure(results: dict[str, Approach2Result], stem: Path, floor=None) -> list[Path]:
    colours = _family_colours(list(results))
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    _optima_panel(ax, results, colours, "loss", "loss_ci", "l_law", "c", exponent_sign=-1)
    _floor_line(ax, floor)
    ax.set_ylabel(f"compute-optimal {LOSS_LABEL}")
    ax.set_title(r"Compute-optimal frontier (Approach 2), $L_{opt} \propto C^{-c}$")
    _footnote(ax)
    ax.legend(loc="upper right", fontsize=8, frameon=True)
    return save(fig, stem)


def _footnote(ax) -> None:
    ax.text(0.0, -0.2, "hollow diamonds: flagged budgets (not fitted), at their best measured run; bars and "
                       "bands: bootstrap 95% CI",
            transform=ax.transAxes, fontsize=7, color="0.35", va="top")


def allocation_figure(results: dict[str, Approach2Result], stem: Path) -> list[Path]:
    colours = _family_colours(list(results))
    fig, (ax_n, ax_d) = plt.subplots(1, 2, figsize=(11, 4.4))
    _optima_panel(ax_n, results, colours, "params", "params_ci", "n_law", "a")
    _optima_panel(ax_d, results, colours, "tokens", "tokens_ci", "d_law", "b")
    ax_n.set_yscale("log")
    ax_d.set_yscale("log")
    ax_n.set_ylabel(f"compute-optimal {PARAMS_LABEL}")
    ax_d.set_ylabel(f"compute-optimal {TOKENS_LABEL}")
    ax_n.set_title(r"$N_{opt} \propto C^{a}$")
    ax_d.set_title(r"$D_{opt} \propto C^{b}$")
    for ax in (ax_n, ax_d):
        ax.legend(loc="upper left", fontsize=8, frameon=True)
    _footnote(ax_n)
    fig.tight_layout()
    return save(fig, stem)


def residuals_figure(runs: pd.DataFrame, results: dict[str, Approach3Result], stem: Path) -> list[Path]:
    """Top row: predicted against observed loss; bottom row: relative residual against N."""
    fitted = {k: r for k, r in results.items() if r.law is not None}
    fig, axes = plt.subplots(2, len(fitted), figsize=(4.6 * len(fitted) + 0.8, 7.4), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]})
    for col, (key, r) in enumerate(fitted.items()):
        ax, ax_res = axes[0, col], axes[1, col]
        sub = runs[runs["key"] == key]
        predicted = r.law.loss(sub["N"].to_numpy(), sub["D"].to_numpy())
        observed = sub["L"].to_numpy()
        residual = 100 * (observed / predicted - 1)  # percent
        colours = _budget_colours(sorted(sub["C"].unique()))
        for budget in sorted(sub["C"].unique()):
            mask = (sub["C"] == budget).to_numpy()
            ax.scatter(observed[mask], predicted[mask], s=18, color=colours[budget], label=sci(budget))
            ax_res.scatter(sub["N"].to_numpy()[mask], residual[mask], s=18, color=colours[budget])
        lo = min(observed.min(), predicted.min())
        hi = max(observed.max(), predicted.max())
        pad = 0.03 * (hi - lo)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", color="0.4", lw=1, label="y = x")
        rms = float(np.sqrt(np.mean(residual**2)))
        law = r.law
        ax.text(0.03, 0.97,
                f"E={law.E:.3g}, A={law.A:.3g}, B={law.B:.3g}\n"
                rf"$\alpha$={law.alpha:.3f}, $\beta$={law.beta:.3f}" f"\nRMS residual {rms:.2f}%",
                transform=ax.transAxes, va="top", fontsize=7.5,
                bbox=dict(boxstyle="round", fc="white", ec="0.8"))
        ax.set_xlabel(f"observed {LOSS_LABEL}")
        ax.set_ylabel(f"predicted {LOSS_LABEL}")
        ax.set_title(f"{key}: Approach 3 fit")
        ax.legend(title="budget (FLOPs)", loc="lower right", fontsize=7, title_fontsize=7)
        ax_res.axhline(0, ls="--", color="0.4", lw=1)
        ax_res.set_xscale("log")
        ax_res.set_xlabel(PARAMS_LABEL)
        ax_res.set_ylabel("observed / predicted - 1 (%)")
    fig.tight_layout()
    return save(fig, stem)


def write_figures(runs: pd.DataFrame, approach2: dict[str, Approach2Result],
                  approach3: dict[str, Approach3Result], out_dir: Path, floor=None,
                  replicas: pd.DataFrame | None = None) -> list[Path]:
    """Every figure into out_dir (created); the paths written. Skips what has nothing to draw. `floor`: the
    Markov floor (analysis.markov.FloorRow), drawn on the frontier and isoFLOP figures; `replicas`: runs of
    other seeds, drawn on the isoFLOP figures (never fitted)."""
    sns.set_theme(style="whitegrid", context="paper")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for key, r in approach2.items():
        rep = replicas[replicas["key"] == key] if replicas is not None and len(replicas) else None
        written += isoflop_figure(key, runs[runs["key"] == key], r, out_dir / f"isoflop_{slug(key)}", floor, rep)
    written += frontier_figure(approach2, out_dir / "frontier", floor)
    written += allocation_figure(approach2, out_dir / "optimal_allocation")
    if any(r.law is not None for r in approach3.values()):
        written += residuals_figure(runs, approach3, out_dir / "approach3_residuals")
    else:
        log.warning("no Approach 3 fit: approach3_residuals figure not drawn")
    return written
