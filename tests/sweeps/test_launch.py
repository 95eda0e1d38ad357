"""Launchers: a work queue over local GPUs (on CPU here), SLURM jobs through submitit (built for SLURM;
run through submitit's LocalExecutor), and a multi-device run reaching the Trainer from the CLI."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest

from sweeps import isoflop
from sweeps.launch import SlurmOptions, build_executor, parse_slurm_time
from sweeps.plan import plan_family
from sweeps.runner import read_results
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[2]


def make_corpus(root: Path, genomes: int = 4, length: int = 20_000, seed: int = 1) -> Path:
    """Synthetic Markov genomes (the successor nucleotide with probability 0.7), one FASTA each."""
    return markov_corpus(root, genomes, length, seed, file_name="g{g}.fasta", header="S{g} synthetic {g}")


def args_for(tmp_path: Path, out: Path, *extra: str) -> list[str]:
    data = tmp_path / "data"
    if not data.exists():
        make_corpus(data)
    return ["--model", "transformer", "--budgets", "3e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "64",
            "--out", str(out), "--data-dir", str(data), "--no-progress", "--set", f"data.store_dir={tmp_path / 'store'}",
            "--set", "data.n_val_windows=8", "--set", "train.accelerator=cpu", *extra]


def _all_ok(out: Path, n: int) -> list[dict]:
    rows = read_results(out / "results.csv")
    assert len(rows) == n and len({r["run_id"] for r in rows}) == n
    for r in rows:
        assert r["status"] == "ok", r
        assert math.isfinite(float(r["val_loss"]))
    return rows


@pytest.mark.slow
def test_local_gpus_work_queue(tmp_path, caplog):
    """Two worker processes at a time, each with its own CUDA_VISIBLE_DEVICES; a third run waits for a
    free slot. (No GPU here: the workers train on the CPU.)"""
    out = tmp_path / "sweep"
    caplog.set_level(logging.INFO, logger="sweeps")
    assert isoflop.main(args_for(tmp_path, out, "--launcher", "local-gpus", "--gpus", "2")) == 0
    rows = _all_ok(out, 3)
    started = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("started ")]
    assert len(started) == 3
    assert sum("on GPU(s) [0]" in m for m in started) >= 1 and sum("on GPU(s) [1]" in m for m in started) >= 1
    for r in rows:  # each worker wrote its log next to its run directory
        assert Path(r["run_dir"]).with_suffix(".log").exists()


@pytest.mark.slow
def test_slurm_launcher_through_submitit_local_executor(tmp_path, monkeypatch):
    pytest.importorskip("submitit", reason='the slurm extra: pip install -e ".[slurm]"')

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the local jobs run at once: one thread each
    out = tmp_path / "sweep"
    only = ["--only", "transformer-C3e9-d8x4", "--only", "transformer-C3e9-d16x4"]
    assert isoflop.main(args_for(tmp_path, out, "--launcher", "slurm", "--slurm-executor", "local",
                                 "--slurm-array", "--slurm-time", "10", *only)) == 0
    _all_ok(out, 2)
    jobs = (out / "slurm_jobs.csv").read_text().splitlines()
    assert jobs[0] == "run_id,job_id,submitted" and len(jobs) == 3
    assert list((out / "slurm").iterdir())  # submitit's job folders (pickles, logs)


@pytest.mark.slow
def test_slurm_launcher_debug_executor_runs_in_process(tmp_path):
    pytest.importorskip("submitit", reason='the slurm extra: pip install -e ".[slurm]"')

    out = tmp_path / "sweep"
    assert isoflop.main(args_for(tmp_path, out, "--launcher", "slurm", "--slurm-executor", "debug",
                                 "--only", "transformer-C3e9-d16x4")) == 0
    (row,) = _all_ok(out, 1)
    assert row["run_id"] == "transformer-C3e9-d16x4"


def test_slurm_jobs_are_built_for_the_cluster(tmp_path, monkeypatch):
    """The executor a real cluster gets: partition, time, nodes x tasks (one per GPU), array parallelism,
    and the repository on PYTHONPATH - checked on the sbatch file submitit would submit."""
    submitit = pytest.importorskip("submitit", reason='the slurm extra: pip install -e ".[slurm]"')

    from sweeps.ladders import get_ladder

    with pytest.raises(ValueError, match="--slurm-executor local"):  # no srun on this machine
        build_executor(tmp_path, plan_family("transformer", None, get_ladder("cpu-smoke")), SlurmOptions())
    # Pretend to be on a cluster (submitit only checks that srun exists) to inspect the sbatch file.
    monkeypatch.setattr(submitit.slurm.slurm.SlurmExecutor, "affinity", classmethod(lambda cls: 1))

    specs = plan_family("transformer", None, get_ladder("cpu-smoke"), devices=4, num_nodes=2, strategy="ddp")
    opts = SlurmOptions(partition="gpu", time_min=parse_slurm_time("1-02:30:00"), cpus_per_task=6, array=True,
                        array_parallelism=5, executor="slurm", mem_gb=64)
    executor = build_executor(tmp_path, specs, opts)
    text = executor._executor._make_submission_file_text("python -m submitit.core._submit X", "UID")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=1590", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=6", "#SBATCH --mem=64GB"):
        assert line in text, (line, text)
    assert f"export PYTHONPATH={REPO}:$PYTHONPATH" in text
    assert executor._executor.parameters["array_parallelism"] == 5
    assert parse_slurm_time("90") == 90 and parse_slurm_time("12:00:00") == 720
    with pytest.raises(ValueError, match="slurm-time"):
        parse_slurm_time("soon")


@pytest.mark.slow
def test_devices_reach_the_trainer_from_the_cli(tmp_path):
    """--devices 2 --strategy ddp: the run trains on 2 CPU processes (a worker process per run)."""
    out = tmp_path / "sweep"
    argv = args_for(tmp_path, out, "--devices", "2", "--strategy", "ddp", "--only", "transformer-C3e9-d8x4")
    assert isoflop.main(argv) == 0
    (row,) = _all_ok(out, 1)
    import yaml

    cfg = yaml.safe_load((Path(row["run_dir"]) / "config.yaml").read_text())
    assert cfg["train"]["devices"] == 2 and cfg["train"]["strategy"] == "ddp"
    spec = isoflop.plan_from_args(isoflop.build_parser().parse_args(argv))[0]
    assert cfg["data"]["batch_size"] * 2 == spec.batch
    assert int(row["tokens"]) == spec.tokens  # both ranks' tokens counted: the global batch
    assert "(2 training processes)" in Path(row["run_dir"]).with_suffix(".log").read_text()


@pytest.mark.slow
def test_local_jobs_run_side_by_side_and_match_sequential(tmp_path, caplog):
    """--jobs 2: two single-threaded worker processes at once, the run with the most tokens first; each
    run's validation loss equals the one the sequential in-process launcher gets (same seed, same data)."""
    caplog.set_level(logging.INFO, logger="sweeps")
    only = ["--only", "transformer-C3e9-d8x4", "--only", "transformer-C3e9-d16x4"]
    parallel, sequential = tmp_path / "parallel", tmp_path / "sequential"
    assert isoflop.main(args_for(tmp_path, parallel, "--jobs", "2", *only)) == 0
    started = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("started ")]
    assert [m.split()[1] for m in started] == ["transformer-C3e9-d8x4", "transformer-C3e9-d16x4"]  # most tokens first
    assert {m.split(" on ")[1].split(" (")[0] for m in started} == {"job 0", "job 1"}
    assert isoflop.main(args_for(tmp_path, sequential, *only)) == 0
    got = {r["run_id"]: float(r["val_loss"]) for r in _all_ok(parallel, 2)}
    want = {r["run_id"]: float(r["val_loss"]) for r in _all_ok(sequential, 2)}
    assert got == want


def test_jobs_only_with_the_local_launcher(tmp_path, capsys):
    assert isoflop.main(args_for(tmp_path, tmp_path / "s", "--jobs", "2", "--launcher", "local-gpus")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --jobs is for --launcher local") and "\n" not in err
