"""isoFLOP sweeps end to end on CPU: a tiny sweep, idempotent reruns, a failing run, a NaN run, and a
sweep killed mid-run (SIGKILL) that resumes the interrupted run from its checkpoint."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps import isoflop
from sweeps.runner import read_results, results_by_id
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[2]


def make_corpus(root: Path, genomes: int = 4, length: int = 30_000, seed: int = 0) -> Path:
    """Synthetic genomes with learnable structure (first-order Markov: the successor nucleotide with
    probability 0.7), one FASTA per genome: 2 train, 1 validation, 1 test genome."""
    return markov_corpus(root, genomes, length, seed, file_name="genome{g}.fasta", header="G{g}_chr synthetic genome {g}")


def sweep_args(tmp_path: Path, out: Path, budgets: str = "4e9,8e9", *extra: str) -> list[str]:
    data = tmp_path / "data"
    if not data.exists():
        make_corpus(data)
    return ["--model", "transformer", "--budgets", budgets, "--rules", "cpu-smoke", "--sizes", "3",
            "--seq-len", "64", "--out", str(out), "--data-dir", str(data), "--no-progress",
            "--set", f"data.store_dir={tmp_path / 'store'}", "--set", "data.n_val_windows=8",
            "--set", "train.accelerator=cpu", *extra]


@pytest.fixture
def counting_train_run(monkeypatch):
    """Wrap dnahnet.train.train_run: count calls and optimizer steps actually taken per run; optionally
    make chosen runs raise."""
    from lightning.pytorch.callbacks import Callback

    import dnahnet.train as trainlib

    real = trainlib.train_run
    state = {"calls": [], "steps": {}, "explode": set()}

    class _Count(Callback):
        def __init__(self, run_id):
            self.run_id = run_id

        def on_train_batch_end(self, *args, **kwargs):
            state["steps"][self.run_id] = state["steps"].get(self.run_id, 0) + 1

    def wrapped(run, run_dir, **kwargs):
        run_id = Path(run_dir).name
        state["calls"].append(run_id)
        if run_id in state["explode"]:
            raise FloatingPointError(f"injected failure in {run_id}")
        kwargs["callbacks"] = [*kwargs.get("callbacks", ()), _Count(run_id)]
        return real(run, run_dir, **kwargs)

    monkeypatch.setattr(trainlib, "train_run", wrapped)
    return state


@pytest.mark.slow
def test_tiny_sweep_end_to_end_then_idempotent(tmp_path, counting_train_run, capsys):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out)
    plan = isoflop.plan_from_args(isoflop.build_parser().parse_args(args))
    assert len(plan) == 6 and len({s.budget for s in plan}) == 2
    failing = plan[1].run_id
    counting_train_run["explode"] = {failing}

    assert isoflop.main(args) == 0
    rows = read_results(out / "results.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(s.run_id for s in plan)  # every run, once
    by_id = {r["run_id"]: r for r in rows}
    assert by_id[failing]["status"] == "failed" and "injected failure" in by_id[failing]["error"]
    for spec in plan:
        if spec.run_id == failing:
            continue
        r = by_id[spec.run_id]
        assert r["status"] == "ok", r
        assert math.isfinite(float(r["val_loss"])) and float(r["val_loss"]) < math.log(4)  # it learned
        assert int(r["steps"]) == spec.steps and int(r["tokens"]) == spec.tokens
        assert abs(float(r["flops"]) / spec.budget - 1) <= 0.02  # actual FLOPs on budget
        assert counting_train_run["steps"][spec.run_id] == spec.steps
        run_dir = Path(r["run_dir"])
        assert (run_dir / "result.json").exists() and (run_dir / "metrics.csv").exists()
    # The sweep went on after the failure: runs planned after it trained.
    assert all(by_id[s.run_id]["status"] == "ok" for s in plan[2:])
    printed = capsys.readouterr().out
    assert "1 failed" in printed and failing in printed

    # Rerun: nothing trains again, no row is duplicated.
    calls = len(counting_train_run["calls"])
    assert isoflop.main(args) == 0
    assert len(counting_train_run["calls"]) == calls
    assert len(read_results(out / "results.csv")) == len(plan)

    # --retry-failed reruns the failed run only (now without the injected failure).
    counting_train_run["explode"] = set()
    assert isoflop.main(args + ["--retry-failed"]) == 0
    assert counting_train_run["calls"][calls:] == [failing]
    rows = read_results(out / "results.csv")
    assert len(rows) == len(plan) and all(r["status"] == "ok" for r in rows)


@pytest.mark.slow
def test_nan_loss_is_recorded_as_failed(tmp_path):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out, "4e9", "--set", "train.lr=1e30")
    plan = isoflop.plan_from_args(isoflop.build_parser().parse_args(args + ["--only", "transformer-C4e9-d16x4"]))
    rows = isoflop.run_sweep(plan, out, progress=False)
    assert len(rows) == 1 and rows[0]["status"] == "failed"
    assert "FloatingPointError" in rows[0]["error"] and "non-finite training loss" in rows[0]["error"]


@pytest.mark.slow
def test_killed_sweep_resumes_the_interrupted_run(tmp_path, counting_train_run):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out, "1.6e10")  # runs of 150-470 steps, a checkpoint every 15%
    plan = isoflop.plan_from_args(isoflop.build_parser().parse_args(args))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    log_path = tmp_path / "sweep.log"
    log_fh = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "sweeps.isoflop", *args], cwd=REPO, env=env,
                            stdout=log_fh, stderr=subprocess.STDOUT, start_new_session=True)
    interrupted, ckpt_step = None, None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and interrupted is None:
            assert proc.poll() is None, "the sweep ended before it could be interrupted: " + log_path.read_text()[-2000:]
            for spec in plan:
                run_dir = out / "runs" / spec.run_id
                if (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "result.json").exists():
                    interrupted = spec
                    break
            time.sleep(0.02)
        assert interrupted is not None, "no checkpoint appeared in time"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep we started, and nothing else
        proc.wait(30)
        log_fh.close()
    import torch

    ckpt_step = torch.load(out / "runs" / interrupted.run_id / "checkpoints" / "last.ckpt", map_location="cpu",
                           weights_only=False)["global_step"]
    assert 0 < ckpt_step < interrupted.steps
    assert interrupted.run_id not in results_by_id(out / "results.csv")

    # Rerun the same command: it completes, one row per run, the interrupted run resumed from its checkpoint.
    assert isoflop.main(args) == 0
    rows = read_results(out / "results.csv")
    assert sorted(r["run_id"] for r in rows) == sorted(s.run_id for s in plan)
    assert all(r["status"] == "ok" for r in rows)
    row = results_by_id(out / "results.csv")[interrupted.run_id]
    assert int(row["resumed_from_step"]) == ckpt_step
    assert int(row["steps"]) == interrupted.steps and int(row["tokens"]) == interrupted.tokens
    # Only the remaining steps were trained in the second process (it did not restart from step 0).
    assert counting_train_run["steps"][interrupted.run_id] == interrupted.steps - ckpt_step
    # metrics.csv keeps the rows logged before the kill and holds each step once.
    with open(out / "runs" / interrupted.run_id / "metrics.csv", newline="") as fh:
        train_steps = [int(r["step"]) for r in csv.DictReader(fh) if r.get("train/loss")]
    assert len(train_steps) == len(set(train_steps))
    assert min(train_steps) < ckpt_step <= max(train_steps)


def test_only_takes_several_run_ids_and_leaves_settings_to_the_settings(tmp_path):
    args = sweep_args(tmp_path, tmp_path / "sweep", "4e9")
    full = isoflop.plan_from_args(isoflop.parse_args(args))
    ids = [s.run_id for s in full][:2]
    parsed = isoflop.parse_args(args + ["--only", *ids, "train.weight_decay=0.05"])
    assert parsed.only == ids and parsed.assignments[-1] == "train.weight_decay=0.05"
    plan = isoflop.plan_from_args(parsed)
    assert [s.run_id for s in plan] == ids
    assert all(s.run_config.train.weight_decay == 0.05 for s in plan)
    repeated = isoflop.parse_args(args + ["--only", ids[0], "--only", ids[1]])
    assert repeated.only == ids
