"""analysis.evals: the compute-optimal run per budget, the zero-shot figures and tables, and an analysis
without evals.csv unchanged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.collect import ResultsError
from analysis.evals import compute_optimal, find_evals, load_evals, summary_lines, write_eval_figures
from tests.helpers.synthetic_scaling import CHINCHILLA, synthetic_sweep

REPO = Path(__file__).resolve().parents[2]
BUDGETS = tuple(np.logspace(18, 20, 3))


def with_ids(results: pd.DataFrame) -> pd.DataFrame:
    return results.assign(run_id=[f"{f}-{i}" for i, f in enumerate(results["family"])])


def fake_evals(results: pd.DataFrame, seed: int = 0, dnahnet: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(results)
    rho, auc = rng.uniform(0, 0.5, n), rng.uniform(0.5, 0.8, n)
    frame = results[["run_id", "family", "variant", "budget", "params", "tokens", "flops", "val_loss"]].assign(
        spearman=rho, spearman_lo=rho - 0.05, spearman_hi=rho + 0.05, auroc=auc, auroc_lo=auc - 0.04,
        auroc_hi=auc + 0.04, length_baseline_auroc=0.61, settings_id="abc")
    if dnahnet:
        for c in ("stage1_codon1", "stage1_codon2", "stage1_codon3", "stage2_promoter", "stage2_start_codon",
                  "stage2_coding", "stage2_stop_codon", "stage2_intergenic"):
            frame[c] = rng.uniform(0.1, 0.9, n)
    return frame


def test_compute_optimal_is_the_lowest_loss_evaluated_run_of_each_budget(tmp_path):
    results = with_ids(synthetic_sweep(CHINCHILLA, budgets=BUDGETS, sizes=5, noise=0.002, family="transformer"))
    evals = fake_evals(results)
    stale = evals.iloc[[0]].assign(spearman=-9.0)  # an older row of run 0 (other settings) comes first
    path = tmp_path / "evals.csv"
    pd.concat([stale, evals]).to_csv(path, index=False)
    best = compute_optimal(load_evals([path]))
    assert (best["spearman"] > -9).all()  # a run's newest row is the one used
    for budget, sub in evals.groupby("budget"):  # brute force
        row = sub.loc[sub["val_loss"].idxmin()]
        got = best[best["budget"] == budget]
        assert len(got) == 1 and got["run_id"].iloc[0] == row["run_id"]
        assert got["spearman"].iloc[0] == pytest.approx(row["spearman"])


def test_evals_are_found_beside_results_or_named(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "results.csv").write_text("x\n")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.csv").write_text("x\n")
    (tmp_path / "b" / "evals.csv").write_text("x\n")
    assert find_evals([tmp_path / "a" / "results.csv", tmp_path / "b" / "results.csv"], None) == [
        tmp_path / "b" / "evals.csv"]
    with pytest.raises(ResultsError, match="--evals .*missing.csv"):
        find_evals([], [tmp_path / "missing.csv"])
    with pytest.raises(ResultsError, match="missing column"):
        load_evals([tmp_path / "b" / "evals.csv"])


def test_figures_and_tables_of_the_compute_optimal_runs(tmp_path):
    results = with_ids(synthetic_sweep(CHINCHILLA, budgets=BUDGETS, sizes=4, family="dnahnet", variant="3,2"))
    fake_evals(results, dnahnet=True).to_csv(tmp_path / "evals.csv", index=False)
    best = compute_optimal(load_evals([tmp_path / "evals.csv"]))
    written = write_eval_figures(best, tmp_path / "figures")
    assert {p.name for p in written} == {"zeroshot.png", "zeroshot.pdf", "boundaries.png", "boundaries.pdf"}
    text = "\n".join(summary_lines(best, [tmp_path / "evals.csv"]))
    for row in best.itertuples():
        assert f"| {row.run_id} |" in text and f"[{row.spearman_lo:.3f}, {row.spearman_hi:.3f}]" in text


@pytest.mark.slow
def test_analysis_draws_zeroshot_figures_only_when_evals_exist(tmp_path, capsys):
    for name, variant in (("tf", ""), ("dn", "3,2")):
        results = with_ids(synthetic_sweep(CHINCHILLA, budgets=BUDGETS, sizes=5, noise=0.002, seed=len(name),
                                           family="transformer" if name == "tf" else "dnahnet", variant=variant))
        (tmp_path / name).mkdir()
        results.to_csv(tmp_path / name / "results.csv", index=False)
    args = ["--results", str(tmp_path / "tf" / "results.csv"), str(tmp_path / "dn" / "results.csv"),
            "--bootstrap", "0", "--a3-grid", "coarse", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "plain")]) == 0
    assert not (tmp_path / "plain" / "figures" / "zeroshot.png").exists()
    assert "Zero-shot" not in (tmp_path / "plain" / "summary.md").read_text()

    for name in ("tf", "dn"):
        results = pd.read_csv(tmp_path / name / "results.csv", keep_default_na=False)
        fake_evals(results, dnahnet=name == "dn").to_csv(tmp_path / name / "evals.csv", index=False)
    assert main([*args, "--out", str(tmp_path / "with")]) == 0
    figures = tmp_path / "with" / "figures"
    for stem in ("zeroshot", "boundaries"):
        assert (figures / f"{stem}.png").stat().st_size > 1000
    summary = (tmp_path / "with" / "summary.md").read_text()
    assert "Zero-shot evaluations" in summary and "Boundary statistics" in summary
    dn = pd.read_csv(tmp_path / "dn" / "evals.csv")
    for _budget, sub in dn.groupby("budget"):
        row = sub.loc[sub["val_loss"].idxmin()]
        assert f"| {row['run_id']} |" in summary and f"{row['auroc']:.3f}" in summary
        assert f"{100 * row['stage1_codon3']:.1f}" in summary
    # The rest of the analysis is what it was without evaluations.
    plain = (tmp_path / "plain" / "summary.md").read_text()
    assert summary.split("## Zero-shot")[0] == plain.split("## Flags")[0]


def test_analysis_still_does_not_import_torch():
    code = "import sys, analysis.__main__, analysis.evals, analysis.snapshot; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": ""})
    assert out.stdout.strip() == "False", out.stderr
