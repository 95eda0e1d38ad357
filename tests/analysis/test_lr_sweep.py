"""analysis.lr_sweep: reading lr_sweep.csv, the chosen rate per family, its table, figure and CLI wiring."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analysis.__main__ import main
from analysis.collect import ResultsError
from analysis.lr_sweep import chosen, find_lr_sweeps, load_lr_sweeps, lr_json, lr_sweep_figure, summary_lines
from tests.helpers.synthetic_scaling import CHINCHILLA, synthetic_sweep


def _rows(family, variant, mults, losses, lrs=(1e-3, 3e-3, 1e-2)):
    """One run per (multiplier setting, lr); losses[mult] lists the losses over lrs."""
    rows = []
    for mult in mults:
        for lr, loss in zip(lrs, losses[mult], strict=True):
            rows.append({"family": family, "variant": variant, "budget": 1e12, "size": "d16x4", "params": 2e4,
                         "params_non_embedding": 1.9e4, "lr": lr, "lr_multipliers": mult, "val_loss": loss,
                         "run_id": f"lr-{family}-{lr:g}-{mult.replace(',', '_')}"})
    return rows


DNAHNET = _rows("dnahnet", "3,2", ["1,1,1", "2,1.5,1"], {"1,1,1": [1.40, 1.37, 1.39],
                                                          "2,1.5,1": [1.38, 1.36, 1.41]})
TRANSFORMER = _rows("transformer", "", [""], {"": [1.45, 1.41, 1.42]})


def test_chosen_rate_and_multipliers_per_family(tmp_path):
    path = tmp_path / "lr_sweep.csv"
    pd.DataFrame(DNAHNET + TRANSFORMER).to_csv(path, index=False)
    table = load_lr_sweeps([path])
    best = chosen(table).set_index("key")
    assert best.loc["dnahnet/3,2", "lr"] == 3e-3 and best.loc["dnahnet/3,2", "lr_multipliers"] == "2,1.5,1"
    assert best.loc["dnahnet/3,2", "val_loss"] == 1.36
    assert best.loc["transformer", "lr"] == 3e-3 and best.loc["transformer", "lr_multipliers"] == ""
    lines = summary_lines(table, [path])
    text = "\n".join(lines)
    assert lines[0] == "## Learning-rate sweep"
    row = next(line for line in lines if line.startswith("| dnahnet/3,2 | 2,1.5,1 |"))
    assert "1.3600*" in row and row.endswith("| 0.003 | 2,1.5,1 |")
    assert "| transformer | - | d16x4 |" in text and "1.4100*" in text
    assert sum(line.count("*") for line in lines if line.startswith("| ")) == 2  # one chosen run per family
    fits = lr_json(table, [path])
    assert fits["chosen"]["dnahnet/3,2"]["lr_multipliers"] == "2,1.5,1" and len(fits["runs"]) == 9
    written = lr_sweep_figure(table, tmp_path / "lr_sweep")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in written)


def test_files_beside_and_above_results_and_duplicates(tmp_path):
    family_dir = tmp_path / "cpu" / "dnahnet"
    family_dir.mkdir(parents=True)
    results = family_dir / "results.csv"
    results.write_text("x\n")
    assert find_lr_sweeps([results]) == []  # none: skipped
    pd.DataFrame(DNAHNET).to_csv(family_dir / "lr_sweep.csv", index=False)
    changed = [dict(r, val_loss=r["val_loss"] + 1) if r["lr"] == 3e-3 else r for r in DNAHNET]
    pd.DataFrame(changed + TRANSFORMER).to_csv(tmp_path / "cpu" / "lr_sweep.csv", index=False)
    paths = find_lr_sweeps([results])
    assert paths == [family_dir / "lr_sweep.csv", tmp_path / "cpu" / "lr_sweep.csv"]
    table = load_lr_sweeps(paths)
    assert len(table) == 9  # a run_id read twice keeps its last row
    assert chosen(table).set_index("key").loc["dnahnet/3,2", "lr"] == 1e-3
    with pytest.raises(ResultsError, match="--lr-sweep .*nope.csv: no such file"):
        find_lr_sweeps([results], [tmp_path / "nope.csv"])


@pytest.mark.parametrize("edit, pattern", [
    (lambda t: t.drop(columns="lr_multipliers"), r"missing column\(s\) lr_multipliers"),
    (lambda t: t.assign(lr=["fast"] + list(t["lr"][1:])), r"line 2, column lr: non-numeric value 'fast'"),
    (lambda t: t.assign(lr_multipliers=["2,x,1"] + list(t["lr_multipliers"][1:])),
     r"line 2, column lr_multipliers: non-numeric value 'x'"),
])
def test_bad_file_is_one_error(tmp_path, edit, pattern):
    path = tmp_path / "lr_sweep.csv"
    edit(pd.DataFrame(DNAHNET)).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=pattern):
        load_lr_sweeps([path])


def test_failed_runs_are_dropped(tmp_path):
    rows = [dict(r) for r in TRANSFORMER]
    rows[1]["val_loss"] = ""
    path = tmp_path / "lr_sweep.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    table = load_lr_sweeps([path])
    assert len(table) == 2 and chosen(table)["lr"].iloc[0] == 1e-2


def test_cli_draws_and_tabulates_the_lr_sweep_and_rejects_a_bad_one(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=5).to_csv(sweep / "results.csv", index=False)
    pd.DataFrame(TRANSFORMER).to_csv(tmp_path / "lr_sweep.csv", index=False)  # one folder up
    out = tmp_path / "out"
    assert main(["--results", str(sweep / "results.csv"), "--out", str(out), "--bootstrap", "0",
                 "--a3-grid", "coarse", "--quiet"]) == 0
    assert (out / "figures" / "lr_sweep.png").exists()
    assert "## Learning-rate sweep" in (out / "summary.md").read_text()
    fits = json.loads((out / "fits.json").read_text())
    assert fits["comparisons"]["lr_sweep"]["chosen"]["transformer"]["lr"] == 3e-3
    bad = tmp_path / "bad.csv"
    bad.write_text("family,lr\nx,1\n")
    assert main(["--results", str(sweep / "results.csv"), "--out", str(tmp_path / "o2"), "--lr-sweep", str(bad),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.csv: missing column(s)" in err and "\n" not in err
