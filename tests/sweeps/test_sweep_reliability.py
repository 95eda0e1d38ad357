"""isoFLOP sweeps under hostile or unlucky conditions: a changed recipe on rerun, a crafted checkpoint,
a second sweep on one directory, a full disk, SIGTERM."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sweeps import isoflop
from sweeps import runner as runnerlib
from sweeps.runner import read_results, results_by_id
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[2]


def sweep_args(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    data = tmp_path / "data"
    if not data.exists():
        markov_corpus(data, 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    return ["--model", "transformer", "--budgets", "4e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
            "--out", str(out), "--data-dir", str(data), "--no-progress", "--set", f"data.store_dir={tmp_path / 'store'}",
            "--set", "data.n_val_windows=4", "--set", "train.accelerator=cpu", *extra]


def test_rerun_with_a_changed_learning_rate_is_refused(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out)
    plan = isoflop.plan_from_args(isoflop.build_parser().parse_args(args))
    first = plan[0].run_id
    assert isoflop.main([*args, "--only", first]) == 0
    before = (out / "results.csv").read_text()
    capsys.readouterr()
    assert isoflop.main([*args, "--set", "train.lr_scale=0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "train.lr" in err and "Traceback" not in err
    assert (out / "results.csv").read_text() == before  # nothing reported under the new recipe
    assert isoflop.main([*args, "--set", "train.lr_scale=0.5", "--dry-run"]) == 2  # nor planned over the old one


def test_crafted_checkpoint_is_refused_by_sweep_resume(tmp_path):
    from tests.helpers.checkpoints import crafted_checkpoint

    out = tmp_path / "sweep"
    spec = isoflop.plan_from_args(isoflop.build_parser().parse_args(sweep_args(tmp_path, out)))[0]
    marker = tmp_path / "pwned"
    crafted_checkpoint(out / "runs" / spec.run_id / "checkpoints" / "last.ckpt", marker)
    row = runnerlib.execute_run(spec, out)
    assert row["status"] == "failed" and "refused" in row["error"]
    assert not marker.exists()


def test_a_second_sweep_on_one_directory_is_refused(tmp_path, capsys):
    from dnahnet.rundir import directory_lock

    out = tmp_path / "sweep"
    with directory_lock(out, what="sweep directory"):  # a first sweep holds it
        assert isoflop.main(sweep_args(tmp_path, out)) == 2
    err = capsys.readouterr().err
    assert f"pid {os.getpid()}" in err and "sweep directory is in use" in err
    assert not (out / "plan.csv").exists()


def test_full_disk_records_what_it_can_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out)

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "runs" / "x" / "checkpoints"))

    real_write = Path.write_text

    def failing_write(self, *a, **k):
        if self.name == "error.log":
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, *a, **k)

    import dnahnet.train as trainlib

    monkeypatch.setattr(trainlib, "train_run", no_space)
    monkeypatch.setattr(Path, "write_text", failing_write)
    assert isoflop.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "disk is full" in err and "Traceback" not in err
    (row,) = read_results(out / "results.csv")  # the failed row fit; the second run never started
    assert row["status"] == "failed" and "No space left" in row["error"]


@pytest.mark.slow
def test_sigterm_stops_a_sweep_with_143_and_the_rerun_resumes(tmp_path):
    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out, "--set", "train.ckpt_every=5")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "sweeps/isoflop.py", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not list((out / "runs").glob("*/checkpoints/step=*.ckpt")) if (out / "runs").exists() else True:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]  # 143, as a shell reports it
    assert "stopped" in err and "SIGTERM" in err and "rerun the same command to resume" in err
    recorded = results_by_id(out / "results.csv") if (out / "results.csv").exists() else {}
    assert all(r["status"] == "ok" for r in recorded.values())  # the interrupted run is not marked failed
    assert isoflop.main(args) == 0
    rows = read_results(out / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert any(int(float(r["resumed_from_step"])) > 0 for r in rows)


def test_a_worker_stopped_by_sigterm_stops_the_sweep_without_a_failed_row(tmp_path):
    from dnahnet.rundir import TrainingStopped
    from sweeps.launch import _finish

    out = tmp_path / "sweep"
    spec = isoflop.plan_from_args(isoflop.build_parser().parse_args(sweep_args(tmp_path, out)))[0]
    for returncode in (128 + signal.SIGTERM, -signal.SIGTERM):  # exited 143, or killed by the signal itself
        with pytest.raises(TrainingStopped, match="SIGTERM"):
            _finish(spec, out, returncode)
    assert not (out / "results.csv").exists()  # not failed: a rerun resumes it
    assert _finish(spec, out, 1)["status"] == "failed"  # any other death is a failure


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_with_130_and_a_line_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    """SIGINT at step 2 of the first run, delivered as a terminal's Ctrl-C is (Python's KeyboardInterrupt inside
    Lightning's fit, which Lightning turns into sys.exit(1)): the sweep exits 130 saying where it stopped, records
    no failed row, and the rerun trains every run (issue 25: it exited 1 with no message)."""
    from lightning.pytorch.callbacks import Callback

    from dnahnet import train as trainlib

    class CtrlCAtStep2(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    real = trainlib.train_run

    def interrupted(*args, callbacks=(), **kwargs):
        return real(*args, callbacks=[*callbacks, CtrlCAtStep2()], **kwargs)

    out = tmp_path / "sweep"
    args = sweep_args(tmp_path, out)
    monkeypatch.setattr(trainlib, "train_run", interrupted)
    # Ctrl-C raises KeyboardInterrupt, as in a terminal (a shell's background job starts with SIGINT ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = isoflop.main(args)
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert code == 130, err[-3000:]
    assert "stopped: sweep" in err and "interrupted (SIGINT)" in err and "0 of 3 runs recorded" in err
    assert "rerun the same command" in err and "Traceback" not in err
    assert not (out / "results.csv").exists()  # the interrupted run is not recorded as failed
    monkeypatch.setattr(trainlib, "train_run", real)
    assert isoflop.main(args) == 0
    rows = read_results(out / "results.csv")
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
