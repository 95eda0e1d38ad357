"""analysis.collect: validation of sweep results files and run keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.collect import REQUIRED_COLUMNS, ResultsError, load_results, run_key
from tests.helpers.synthetic_scaling import CHINCHILLA, synthetic_sweep


def _write(tmp_path, table, name="results.csv"):
    path = tmp_path / name
    table.to_csv(path, index=False)
    return path


def test_keys_variants_and_failed_runs(tmp_path):
    plain = synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=4, family="transformer")
    staged = synthetic_sweep(CHINCHILLA, budgets=(1e18,), sizes=4, family="hnet", variant="2stage")
    staged.loc[1, ["status", "val_loss"]] = ["failed", np.nan]
    collected = load_results([_write(tmp_path, plain, "a.csv"), _write(tmp_path, staged, "b.csv")])
    assert collected.keys == ["hnet/2stage", "transformer"]
    assert collected.n_failed == {"hnet/2stage": 1}
    counts = collected.runs.groupby("key").size().to_dict()
    assert counts == {"hnet/2stage": 3, "transformer": 8}
    runs = collected.runs
    assert np.allclose(runs["N"], runs["params"]) and np.allclose(runs["L"], runs["val_loss"])
    assert run_key("x", float("nan")) == "x" and run_key("x", " ") == "x" and run_key("x", "v") == "x/v"


def test_params_column_choice(tmp_path):
    path = _write(tmp_path, synthetic_sweep(CHINCHILLA, budgets=(1e18,), sizes=3))
    runs = load_results([path], params_column="params_non_embedding").runs
    assert np.allclose(runs["N"], runs["params_non_embedding"])


def test_rerecorded_run_dir_keeps_last_row(tmp_path):
    table = synthetic_sweep(CHINCHILLA, budgets=(1e18,), sizes=3)
    again = table.iloc[[0]].assign(val_loss=9.0)
    collected = load_results([_write(tmp_path, table, "a.csv"), _write(tmp_path, again, "b.csv")])
    assert collected.duplicates_dropped == 1
    assert (collected.runs["L"] == 9.0).sum() == 1 and len(collected.runs) == 3


@pytest.mark.parametrize("case, pattern", [
    ("missing_column", r"bad\.csv: missing column\(s\) val_loss"),
    ("empty_file", r"bad\.csv: empty file \(no header"),
    ("header_only", r"bad\.csv: empty file \(a header but no runs\)"),
    ("non_numeric", r"bad\.csv: line 3, column params: non-numeric value 'big'"),
    ("all_failed", r"bad\.csv: all 3 runs failed"),
    ("bad_status", r"bad\.csv: line 2, column status: 'running' is not one of ok, failed"),
    ("ok_without_loss", r"bad\.csv: line 4, column val_loss: an ok run needs a positive number"),
    ("no_such_file", r"nowhere\.csv: no such file"),
    ("bad_seed", r"bad\.csv: line 3, column seed: expected a seed index 0, 1, 2, \.\.\., got '1\.5'"),
    ("only_replicas", r"bad\.csv: no usable run of seed 0"),
])
def test_bad_input_names_file_line_and_column(tmp_path, case, pattern):
    table = synthetic_sweep(CHINCHILLA, budgets=(1e18,), sizes=3).astype({"params": object})
    path = tmp_path / "bad.csv"
    if case == "missing_column":
        table.drop(columns="val_loss").to_csv(path, index=False)
    elif case == "empty_file":
        path.write_text("")
    elif case == "header_only":
        path.write_text(",".join(REQUIRED_COLUMNS) + "\n")
    elif case == "non_numeric":
        table.loc[1, "params"] = "big"
        table.to_csv(path, index=False)
    elif case == "all_failed":
        table.assign(status="failed").to_csv(path, index=False)
    elif case == "bad_status":
        table.loc[0, "status"] = "running"
        table.to_csv(path, index=False)
    elif case == "ok_without_loss":
        table.loc[2, "val_loss"] = np.nan
        table.to_csv(path, index=False)
    elif case == "no_such_file":
        path = tmp_path / "nowhere.csv"
    elif case == "bad_seed":
        table.assign(seed=["0", "1.5", "0"]).to_csv(path, index=False)
    elif case == "only_replicas":
        table.assign(seed=1).to_csv(path, index=False)
    with pytest.raises(ResultsError, match=pattern):
        load_results([path])


def test_seed_column_splits_replicas_from_the_main_ladder(tmp_path):
    """seed 0 (or no seed column, or an empty field): the main ladder, fitted; seed >= 1: replicas, kept apart."""
    main = synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=3)
    old = load_results([_write(tmp_path, main, "old.csv")])
    assert (old.runs["seed"] == 0).all() and old.replicas.empty
    rep = main.iloc[[0, 1]].assign(seed=1, val_loss=main["val_loss"].iloc[[0, 1]] + 0.01,
                                   run_dir=lambda t: t["run_dir"] + "-s1")
    failed_rep = main.iloc[[2]].assign(seed=2, status="failed", val_loss=np.nan, run_dir="x-s2")
    table = pd.concat([main.assign(seed=""), rep, failed_rep], ignore_index=True)
    collected = load_results([_write(tmp_path, table, "new.csv")])
    assert len(collected.runs) == len(main) and (collected.runs["seed"] == 0).all()
    assert np.allclose(collected.runs["L"], old.runs["L"])
    assert len(collected.replicas) == 2 and (collected.replicas["seed"] == 1).all()
    assert {"N", "D", "C", "L", "key"} <= set(collected.replicas.columns)
    assert collected.replicas_failed == 1 and collected.n_failed == {}
