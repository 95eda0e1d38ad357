"""analysis.figures: what a flagged budget is drawn at, the axes' span, and replicas on the isoFLOP figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import analysis.figures as figures
from analysis.approach2 import fit_approach2, fit_budget


def _flagged_runs(budget: float = 1e12) -> pd.DataFrame:
    """A convex ladder whose lowest loss is its smallest size and whose vertex lies 3 decades below it."""
    n = np.array([1e4, 2e4, 4e4, 8e4])
    loss = 2.0 + 0.01 * (np.log10(n) - 1.0) ** 2  # vertex at N = 10
    return pd.DataFrame({"C": budget, "N": n, "D": budget / (6 * n), "L": loss, "flops": budget, "key": "x",
                         "seed": 0, "run_name": [f"r{i}" for i in range(n.size)]})


def _good_runs(budget: float) -> pd.DataFrame:
    n = np.logspace(4, 5, 5)
    loss = 2.0 + 0.01 * (np.log10(n) - 4.5) ** 2 - 0.01 * np.log10(budget)
    return pd.DataFrame({"C": budget, "N": n, "D": budget / (6 * n), "L": loss, "flops": budget, "key": "x",
                         "seed": 0, "run_name": [f"g{budget:.0e}-{i}" for i in range(n.size)]})


def test_flagged_budget_is_drawn_at_its_best_run():
    runs = _flagged_runs()
    o = fit_budget(1e12, runs)
    assert o.flagged and o.coeffs is not None and o.params == pytest.approx(10.0, rel=1e-6)  # far outside
    n, d, loss, best_run = figures.plotted_optimum(o)
    assert best_run and n == 1e4 and loss == runs["L"].min() and d == pytest.approx(1e12 / 6e4)
    assert figures.optimum_value(o, "loss") == loss and figures.optimum_value(o, "params") == 1e4
    good = fit_budget(1e13, _good_runs(1e13))
    assert not good.flagged
    assert figures.plotted_optimum(good) == (good.params, good.tokens, good.loss, False)


@pytest.fixture
def captured(monkeypatch):
    """The figures instead of files: `save` keeps each figure open and records it."""
    figs = []

    def keep(fig, stem):
        figs.append(fig)
        return [stem]

    monkeypatch.setattr(figures, "save", keep)
    yield figs
    for fig in figs:
        figures.plt.close(fig)


def _offsets(ax, marker_test):
    return [c.get_offsets() for c in ax.collections if marker_test(c)]


def test_isoflop_axes_span_the_runs_and_show_replicas(captured, tmp_path):
    runs = pd.concat([_flagged_runs(1e12), _good_runs(1e13), _good_runs(1e14)], ignore_index=True)
    result = fit_approach2("x", runs, n_boot=0)
    flagged = result.optima[0]
    assert flagged.flagged and flagged.params < 100
    replicas = runs.iloc[[6]].assign(seed=1, L=runs["L"].iloc[6] + 0.003)
    figures.isoflop_figure("x", runs, result, tmp_path / "iso", replicas=replicas)
    (fig,) = captured
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert runs["N"].min() / 2 < lo <= runs["N"].min() and runs["N"].max() <= hi < 2 * runs["N"].max()
    # The diamond of the flagged budget sits at its best run, not at the vertex (N = 10).
    points = [tuple(p) for c in ax.collections for p in np.asarray(c.get_offsets())]
    assert (1e4, pytest.approx(runs["L"].iloc[:4].min())) in points
    assert not any(x < 1e3 for x, _ in points)
    # The replica is drawn at its (N, loss).
    assert (replicas["N"].iloc[0], pytest.approx(replicas["L"].iloc[0])) in points
    labels = ax.get_legend_handles_labels()[1]
    assert figures.BEST_RUN_LABEL in labels and "other seeds (replicas)" in labels


def test_frontier_draws_a_flagged_budget_at_its_best_run(captured, tmp_path):
    runs = pd.concat([_flagged_runs(1e12), _good_runs(1e13), _good_runs(1e14)], ignore_index=True)
    result = fit_approach2("x", runs, n_boot=0)
    figures.frontier_figure({"x": result}, tmp_path / "frontier")
    ax = captured[0].axes[0]
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines if len(line.get_xdata())
                         and line.get_marker() == figures.BEST_RUN_MARKER])
    assert ys.tolist() == [pytest.approx(runs["L"].iloc[:4].min())]
    assert result.optima[0].loss != pytest.approx(ys[0])  # the vertex is elsewhere
    assert any(figures.BEST_RUN_LABEL.replace("\n", " ") == t for t in ax.get_legend_handles_labels()[1])
