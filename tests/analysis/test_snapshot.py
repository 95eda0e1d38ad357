"""analysis.snapshot: a sweep's logs (possibly split over directories) gathered for committing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from analysis.collect import load_results
from analysis.snapshot import main, snapshot


def fake_sweep(root: Path, runs: dict[str, list[float]], budget: float = 1e12) -> Path:
    root.mkdir(parents=True)
    rows = []
    for run_id, losses in runs.items():
        run_dir = root / "runs" / run_id
        run_dir.mkdir(parents=True)
        text = "window,loss,tokens\n" + "".join(f"{i},{v},512\n" for i, v in enumerate(losses))
        (run_dir / "val_windows.csv").write_text(text)
        rows.append({"run_id": run_id, "family": "transformer", "variant": "", "budget": budget, "params": 1000 * (len(rows) + 1),
                     "params_non_embedding": 900, "tokens": 1e6, "flops": 1e12, "val_loss": sum(losses) / len(losses),
                     "val_bpn": 2.0, "status": "ok", "wall_s": 1.0, "run_dir": str(run_dir)})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    pd.DataFrame([{"run_id": r["run_id"], "budget": budget} for r in rows]).to_csv(root / "plan.csv", index=False)
    return root


def test_split_sweeps_merge_and_their_window_losses_travel_with_them(tmp_path):
    a = fake_sweep(tmp_path / "a", {"r1": [1.0, 2.0, 3.0], "r2": [1.5, 1.5, 1.5]})
    b = fake_sweep(tmp_path / "b", {"r3": [0.5, 1.0, 1.5]})
    out = tmp_path / "out"
    snapshot([a, b], out)
    assert list(pd.read_csv(out / "results.csv")["run_id"]) == ["r1", "r2", "r3"]
    assert list(pd.read_csv(out / "plan.csv")["run_id"]) == ["r1", "r2", "r3"]
    # The analysis finds the gathered windows beside results.csv, without the run directories.
    for p in (a, b):
        for f in p.glob("runs/*/val_windows.csv"):
            f.unlink()
    collected = load_results([out / "results.csv"])
    assert collected.windows["r1"].tolist() == [1.0, 2.0, 3.0] and collected.windows["r3"].tolist() == [0.5, 1.0, 1.5]
    assert collected.window_matrix(collected.runs).shape == (3, 3)


def test_a_run_in_two_directories_or_a_missing_file_is_one_error_line(tmp_path, capsys):
    a = fake_sweep(tmp_path / "a", {"r1": [1.0]})
    b = fake_sweep(tmp_path / "b", {"r1": [2.0]})
    assert main([str(a), str(b), str(tmp_path / "out")]) == 2
    assert "'r1' appears in more than one" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere"), str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no such file" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main([])


def test_directories_of_one_sweep_may_each_hold_the_whole_plan(tmp_path, capsys):
    """Runs split with --only over two directories: each holds the sweep's whole plan; the snapshot lists each
    planned run once, and a run planned differently in the two is an error."""
    a = fake_sweep(tmp_path / "a", {"r1": [1.0], "r2": [2.0]})
    b = fake_sweep(tmp_path / "b", {"r3": [3.0]})
    whole = pd.DataFrame([{"run_id": r, "budget": 1e12} for r in ("r1", "r2", "r3")])
    for d in (a, b):
        whole.to_csv(d / "plan.csv", index=False)
    snapshot([a, b], tmp_path / "out")
    assert list(pd.read_csv(tmp_path / "out" / "plan.csv")["run_id"]) == ["r1", "r2", "r3"]
    whole.assign(budget=[1e12, 1e12, 2e12]).to_csv(b / "plan.csv", index=False)
    assert main([str(a), str(b), str(tmp_path / "out2")]) == 2
    assert "'r3' appears in more than one" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["best", "all", "none"])
def test_evals_and_the_chosen_exports_travel_with_the_logs(tmp_path, which):
    # r1 (mean loss 2.0) and r2 (1.5) share a budget: r2 is its best; r3 is the best of b's budget.
    a = fake_sweep(tmp_path / "a", {"r1": [1.0, 2.0, 3.0], "r2": [1.5, 1.5, 1.5]})
    b = fake_sweep(tmp_path / "b", {"r3": [0.5, 1.0, 1.5]}, budget=2e12)
    for sweep in (a, b):
        for run_dir in (sweep / "runs").iterdir():
            (run_dir / "export").mkdir()
            (run_dir / "export" / "config.json").write_text(json.dumps({"run": run_dir.name}))
            (run_dir / "export" / "model.safetensors").write_bytes(run_dir.name.encode())
    pd.DataFrame([{"run_id": "r1", "spearman": 0.1, "export": str(a / "runs" / "r1" / "export"), "settings_id": "s"},
                  {"run_id": "r2", "spearman": 0.2, "export": str(a / "runs" / "r2" / "export"), "settings_id": "s"}]
                 ).to_csv(a / "evals.csv", index=False)
    (a / "evals.json").write_text('{"s": {"variants": 1000}}')
    out = tmp_path / "out"
    snapshot([a, b], out, exports=which)
    expected = {"best": {"r2", "r3"}, "all": {"r1", "r2", "r3"}, "none": set()}[which]
    copied = {p.name for p in (out / "exports").iterdir()} if (out / "exports").exists() else set()
    assert copied == expected
    for run_id in copied:
        assert (out / "exports" / run_id / "model.safetensors").read_bytes() == run_id.encode()
    evals = pd.read_csv(out / "evals.csv", keep_default_na=False)
    assert list(evals["run_id"]) == ["r1", "r2"]
    assert list(evals["export"]) == [f"exports/{r}" if r in expected else "" for r in ("r1", "r2")]
    assert (out / "evals.json").read_text().count("variants") == 1
    assert not list(out.rglob(".*tmp*"))


def test_a_bad_exports_choice_is_one_error_line(tmp_path, capsys):
    a = fake_sweep(tmp_path / "a", {"r1": [1.0]})
    with pytest.raises(SystemExit) as exc:
        main([str(a), str(tmp_path / "out"), "--exports", "some"])
    assert exc.value.code == 2 and "--exports" in capsys.readouterr().err


def with_exports(sweep: Path) -> Path:
    for run_dir in (sweep / "runs").iterdir():
        (run_dir / "export").mkdir()
        (run_dir / "export" / "config.json").write_text(json.dumps({"run": run_dir.name}))
        (run_dir / "export" / "model.safetensors").write_bytes(run_dir.name.encode())
    return sweep


def test_a_budget_split_over_directories_keeps_the_export_of_its_best_run_overall(tmp_path):
    a = with_exports(fake_sweep(tmp_path / "a", {"r1": [2.0], "r2": [1.5]}))
    b = with_exports(fake_sweep(tmp_path / "b", {"r3": [1.2]}))  # the same budget: r3 beats r2
    snapshot([a, b], tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "exports").iterdir()) == ["r3"]


def test_new_runs_extend_an_earlier_snapshot_given_as_a_sweep_directory(tmp_path):
    """The committed reference, copied aside, is one SWEEP_DIR: its windows, exports and evals carry over
    without its run directories, a new budget's best export joins them, and an export that is no longer a
    budget's best leaves OUT_DIR."""
    old = with_exports(fake_sweep(tmp_path / "old", {"r1": [1.0, 3.0], "r2": [1.5, 1.5]}))
    pd.DataFrame([{"run_id": "r2", "spearman": 0.2, "export": "x", "settings_id": "s"}]).to_csv(old / "evals.csv", index=False)
    reference = tmp_path / "reference"
    snapshot([old], reference)
    shutil.rmtree(old)  # the old run directories are gone; only the committed snapshot is left
    aside = tmp_path / "aside"
    shutil.copytree(reference, aside)
    new = with_exports(fake_sweep(tmp_path / "new", {"r3": [0.5, 0.7]}, budget=2e12))
    snapshot([aside, new], reference)
    assert list(pd.read_csv(reference / "results.csv")["run_id"]) == ["r1", "r2", "r3"]
    assert sorted(p.name for p in (reference / "exports").iterdir()) == ["r2", "r3"]
    assert (reference / "exports" / "r2" / "model.safetensors").read_bytes() == b"r2"
    assert list(pd.read_csv(reference / "evals.csv", keep_default_na=False)["export"]) == ["exports/r2"]
    windows = load_results([reference / "results.csv"]).windows
    assert windows["r1"].tolist() == [1.0, 3.0] and windows["r3"].tolist() == [0.5, 0.7]
    # A better run of r2's budget arrives: r2's export leaves the reference.
    better = with_exports(fake_sweep(tmp_path / "better", {"r4": [0.1, 0.1]}))
    shutil.rmtree(aside)
    shutil.copytree(reference, aside)
    snapshot([aside, better], reference)
    assert sorted(p.name for p in (reference / "exports").iterdir()) == ["r3", "r4"]
