"""`python -m analysis`: end to end on synthetic sweeps, and the one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main
from tests.helpers.synthetic_scaling import CHINCHILLA, EPOCH, synthetic_sweep

REPO = Path(__file__).resolve().parents[2]
BUDGETS = tuple(np.logspace(18, 20, 4))
FIGURES = ("isoflop_transformer", "isoflop_hnet__2stage", "frontier", "optimal_allocation",
           "approach3_residuals")


def test_cli_end_to_end_two_families(tmp_path):
    a = synthetic_sweep(CHINCHILLA, budgets=BUDGETS, sizes=7, noise=0.002, family="transformer")
    b = synthetic_sweep(EPOCH, budgets=BUDGETS, sizes=7, noise=0.002, seed=1, family="hnet", variant="2stage")
    b.loc[2, ["status", "val_loss"]] = ["failed", np.nan]
    a.to_csv(tmp_path / "a.csv", index=False)
    b.to_csv(tmp_path / "b.csv", index=False)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "--results", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"),
         "--out", str(out), "--bootstrap", "10", "--seed", "3", "--a3-grid", "coarse", "--quiet"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for stem in FIGURES:
        for ext in ("png", "pdf"):
            path = out / "figures" / f"{stem}.{ext}"
            assert path.stat().st_size > 1000, path
    assert not list(out.rglob(".*.tmp"))  # nothing half-written left behind

    fits = json.loads((out / "fits.json").read_text())
    assert set(fits) == {"transformer", "hnet/2stage", "comparisons"}
    for key, law in (("transformer", CHINCHILLA), ("hnet/2stage", EPOCH)):
        a2, a3 = fits[key]["approach2"], fits[key]["approach3"]
        assert {"a", "b", "a_ci", "b_ci", "optima"} <= set(a2)
        assert len(a2["optima"]) == len(BUDGETS)
        assert {"budget", "params", "tokens", "loss", "flagged"} <= set(a2["optima"][0])
        assert a2["a_ci"][0] < a2["a"] < a2["a_ci"][1]
        assert a2["a"] == pytest.approx(law.a, abs=0.03)
        assert {"E", "A", "B", "alpha", "beta", "ci"} <= set(a3)
        assert set(a3["ci"]) >= {"E", "A", "B", "alpha", "beta"}
        assert a3["alpha"] == pytest.approx(law.alpha, abs=0.06)
    assert fits["hnet/2stage"]["runs"] == {"ok": 27, "failed": 1}
    multipliers = fits["comparisons"]["compute_multipliers"]
    assert {(m["family"], m["reference"]) for m in multipliers} == {
        ("transformer", "hnet/2stage"), ("hnet/2stage", "transformer")}

    summary = (out / "summary.md").read_text()
    for text in ("## transformer", "## hnet/2stage", "N_opt ~ C^a", "| alpha |",
                 "Compute multiplier", "failed runs (dropped)"):
        assert text in summary


def _bad(tmp_path, case):
    table = synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=4).astype({"tokens": object})
    path = tmp_path / "results.csv"
    if case == "missing_column":
        table.drop(columns=["flops"]).to_csv(path, index=False)
    elif case == "empty_file":
        path.write_text("")
    elif case == "all_failed":
        table.assign(status="failed").to_csv(path, index=False)
    elif case == "non_numeric":
        table.loc[0, "tokens"] = "lots"
        table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing_column", "results.csv: missing column(s) flops"),
    ("empty_file", "results.csv: empty file"),
    ("all_failed", "results.csv: all 8 runs failed"),
    ("non_numeric", "results.csv: line 2, column tokens: non-numeric value 'lots'"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case, message):
    path = _bad(tmp_path, case)
    assert main(["--results", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_single_budget_writes_what_it_can_and_exits_2(tmp_path, capsys, caplog):
    path = tmp_path / "results.csv"
    synthetic_sweep(CHINCHILLA, budgets=(1e19,), sizes=7).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["--results", str(path), "--out", str(out), "--bootstrap", "10", "--quiet"]) == 2
    captured = capsys.readouterr().err
    last = captured.strip().splitlines()[-1]
    assert last.startswith("error: no family has a scaling-law fit") and "only one budget" in last
    assert any("only one budget" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert (out / "figures" / "isoflop_synth.png").exists()
    fits = json.loads((out / "fits.json").read_text())
    assert fits["synth"]["approach2"]["a"] is None
    assert len(fits["synth"]["approach2"]["optima"]) == 1
    assert fits["synth"]["approach3"]["skipped"]
    assert "only one budget" in (out / "summary.md").read_text()


def test_allow_no_fit_turns_the_error_into_a_note(tmp_path, capsys):
    """The demo's live toy sweep (`sweeps.demo.LIVE_ANALYSIS_ARGS`): no family with a power law is expected
    there, so the analysis writes what it can, prints a note (no `error:` line) and exits 0; any other
    failure keeps its exit code 2."""
    from sweeps.demo import LIVE_ANALYSIS_ARGS, DemoError, check_analysis

    assert "--allow-no-fit" in LIVE_ANALYSIS_ARGS
    path = tmp_path / "results.csv"
    synthetic_sweep(CHINCHILLA, budgets=(1e19,), sizes=7).to_csv(path, index=False)
    out = tmp_path / "out"
    assert main(["--results", str(path), "--out", str(out), "--bootstrap", "10", *LIVE_ANALYSIS_ARGS]) == 0
    captured = capsys.readouterr()
    assert "error:" not in captured.err and captured.out.strip().splitlines()[-1].startswith(
        "note: no family has a scaling-law fit")
    check_analysis(0, out, "live")  # the demo accepts it
    with pytest.raises(DemoError, match="live analysis failed"):
        check_analysis(2, out, "live")  # an exit 2 (bad input, or no fit without the flag) fails the demo
    bad = _bad(tmp_path, "non_numeric")
    assert main(["--results", str(bad), "--out", str(tmp_path / "o2"), *LIVE_ANALYSIS_ARGS]) == 2


def _with_windows(table: pd.DataFrame, folder: Path) -> Path:
    """results.csv and a gathered val_windows.csv (16 windows per run around its loss, drawn from a generator
    seeded by the run id, so a run has the same windows in every file) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / "results.csv", index=False)
    windows = np.stack([loss + 0.01 * np.random.default_rng(zlib.crc32(run.encode())).standard_normal(16)
                        for loss, run in zip(table["val_loss"], table["run_id"], strict=True)])
    pd.DataFrame(windows, columns=[f"w{i}" for i in range(16)]).assign(run_id=table["run_id"].to_numpy())[
        ["run_id"] + [f"w{i}" for i in range(16)]].to_csv(folder / "val_windows.csv", index=False)
    return folder / "results.csv"


def _numbers_without_noise(fits: dict) -> dict:
    """fits.json without what replicas are meant to change (the noise table, the measured intervals)."""
    fits = json.loads(json.dumps(fits))
    comparisons = fits["comparisons"]
    comparisons.pop("training_noise")
    for m in comparisons["compute_multipliers"]:
        for k in ("ci", "lo", "hi", "ci_text", "noise", "noise_source"):
            m.pop(k)
    return fits


def test_replicas_leave_every_fit_unchanged_and_fill_the_noise_table(tmp_path):
    rng = np.random.default_rng(5)
    tables = {}
    for fam, law, seed in (("transformer", CHINCHILLA, 0), ("hnet", EPOCH, 1)):
        t = synthetic_sweep(law, budgets=BUDGETS, sizes=5, noise=0.002, seed=seed, family=fam)
        t["run_id"] = [f"{fam}-{i}" for i in range(len(t))]
        t["size"] = [f"s{i % 5}" for i in range(len(t))]
        tables[fam] = t
    base = [_with_windows(t, tmp_path / "base" / f) for f, t in tables.items()]
    replicated = []
    for fam, t in tables.items():
        rep = t[t["budget"] == BUDGETS[1]].copy()
        rep["seed"] = 1
        rep["val_loss"] = rep["val_loss"] + 0.004 * rng.standard_normal(len(rep))
        rep["run_id"] = rep["run_id"] + "-s1"
        rep["run_dir"] = rep["run_dir"] + "-s1"
        replicated.append(_with_windows(pd.concat([t.assign(seed=0), rep], ignore_index=True),
                                        tmp_path / "rep" / fam))
    args = ["--bootstrap", "20", "--seed", "2", "--a3-grid", "coarse", "--quiet"]
    assert main(["--results", *map(str, base), "--out", str(tmp_path / "o1"), *args]) == 0
    assert main(["--results", *map(str, replicated), "--out", str(tmp_path / "o2"), *args]) == 0
    plain = json.loads((tmp_path / "o1" / "fits.json").read_text())
    noisy = json.loads((tmp_path / "o2" / "fits.json").read_text())
    assert _numbers_without_noise(plain) == _numbers_without_noise(noisy)
    assert plain["comparisons"]["training_noise"]["runs"] == []
    noise = noisy["comparisons"]["training_noise"]
    assert len(noise["runs"]) == 10 and all(r["seeds"] == [0, 1] for r in noise["runs"])
    row = noise["runs"][0]
    assert row["max_minus_min"] == pytest.approx(abs(row["losses"][1] - row["losses"][0]))
    assert all(h > 0 for h in row["window_half_widths"]) and row["run_ids"][1].endswith("-s1")
    measured = noisy["comparisons"]["compute_multipliers"]
    assert measured and all("pooled seed std" in m["noise_source"] for m in measured)
    assert all(m["noise"] == pytest.approx(noise["pooled_seed_std"]) for m in measured)
    summary = (tmp_path / "o2" / "summary.md").read_text()
    head = summary.split("\n## ")[1]
    assert head.startswith("Measured compute multipliers (best runs, no fit)")
    assert "## Training noise: seed-to-seed scatter vs bootstrap intervals" in summary
    assert "10 replicated run(s) (20 runs)" in summary
    assert "### Compute multipliers extrapolated from fitted frontiers; not a measurement" in summary
    assert summary.index("Measured compute multipliers") < summary.index("extrapolated from fitted frontiers")
    assert "20 replica run(s)" not in summary and "10 replica run(s) of seed index >= 1" in summary
