"""`python -m dnahnet.train` under hostile or unlucky conditions: crafted and truncated checkpoints, a
changed recipe, SIGTERM, no validation windows, a second writer, a resume from the final checkpoint.

Every run is a tiny Transformer on a synthetic Markov corpus (seq_len 32, 4 validation windows)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dnahnet import train as trainlib
from dnahnet.checkpoint import find_resume_point
from tests.helpers.checkpoints import CreatesFile, crafted_checkpoint
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    markov_corpus(root / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    return root


def train_args(corpus: Path, out: Path, steps: int = 9, *extra: str) -> list[str]:
    return ["--out", str(out), "--data-dir", str(corpus / "data"), "--no-progress", "--threads", "1",
            "data.seq_len=32", "data.n_val_windows=4", "data.batch_size=4", f"data.store_dir={corpus / 'store'}",
            f"train.max_steps={steps}", "train.ckpt_every=3", "train.val_every=3", "train.accelerator=cpu", *extra]


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def row_kinds(run: Path) -> list[tuple[int, tuple[str, ...]]]:
    """(step, the columns a row fills) of every metrics.csv row. Each writer (the module's metrics, the
    validation, Lightning's learning-rate and throughput monitors) writes its own row at a step: a pair seen
    twice is a row written twice."""
    return [(int(float(r["step"])), tuple(sorted(k for k, v in r.items() if k != "step" and v not in ("", None))))
            for r in metrics_rows(run)]


def val_steps(run: Path) -> list[int]:
    return [int(float(r["step"])) for r in metrics_rows(run) if r.get("val/loss")]


def test_crafted_checkpoint_is_refused_by_generate_evals_and_train_resume(corpus, tmp_path, capsys):
    from dnahnet.evals import boundaries
    from dnahnet.evals.cli import run_main
    from dnahnet.sampling import main as generate_main

    marker = tmp_path / "pwned"
    evil = crafted_checkpoint(tmp_path / "evil.ckpt", marker)
    assert generate_main(["--checkpoint", str(evil), "--prompt", "ACGT", "--max-new-tokens", "2"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "evil.ckpt" in err and "refused" in err
    genome = tmp_path / "g.fasta"
    genome.write_text(">chr1\n" + "ACGT" * 50 + "\n")
    gff = tmp_path / "g.gff"
    gff.write_text("##gff-version 3\nchr1\t.\tgene\t10\t100\t.\t+\t.\tID=g1;locus_tag=b1\n")
    code = run_main(boundaries.main, ["--checkpoint", str(evil), "--genome", str(genome), "--annotation", str(gff),
                                      "--windows", "1", "--window-len", "64", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err and "Traceback" not in err, err
    # Train resume: the crafted file sits where a run's last checkpoint would be.
    run = tmp_path / "run"
    crafted_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    assert trainlib.main(train_args(corpus, run)) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "last.ckpt" in err
    assert (run / "checkpoints" / "last.ckpt").exists()  # refused, not "repaired" by moving it aside
    assert not marker.exists()


def test_crafted_distributed_checkpoint_index_is_refused(tmp_path):
    """An FSDP2 checkpoint directory's .metadata is a plain pickle (torch loads it unrestricted)."""
    import pickle

    from dnahnet.checkpoint import UnsafeCheckpoint, load_model

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / ".metadata").write_bytes(pickle.dumps(CreatesFile(marker)))
    torch.save({"global_step": 1}, ckpt / "meta.pt")
    with pytest.raises(UnsafeCheckpoint, match=r"\.metadata: refused"):
        load_model(tmp_path / "run")
    assert not marker.exists()


def test_truncated_last_checkpoint_resumes_from_the_previous_one(corpus, tmp_path, caplog):
    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run)) == 0
    reference = json.loads((run / "result.json").read_text())
    rows_before = metrics_rows(run)
    # An unfinished run whose newest checkpoint was cut short (a full disk, a kill mid-write).
    (run / "result.json").unlink()
    last = (run / "checkpoints" / "last.ckpt").resolve()
    last.write_bytes(last.read_bytes()[:2000])
    with caplog.at_level("INFO"):
        assert trainlib.main(train_args(corpus, run)) == 0
    assert "moved aside" in caplog.text and "resuming" in caplog.text and "step 6" in caplog.text
    assert list((run / "checkpoints").glob("*.corrupt-*.ckpt"))  # kept for inspection
    rows_after = metrics_rows(run)
    assert rows_after[: len(rows_before) - 1] == rows_before[:-1]  # earlier rows kept, as written
    assert val_steps(run) == [2, 5, 8]
    result = json.loads((run / "result.json").read_text())
    assert result["val_loss"] == reference["val_loss"]  # the resume is exact: same data, same weights


def test_every_checkpoint_unreadable_starts_over_and_says_so(corpus, tmp_path, caplog):
    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run, 6)) == 0
    (run / "result.json").unlink()
    for ckpt in (run / "checkpoints").glob("step=*.ckpt"):
        ckpt.write_bytes(b"")
    with caplog.at_level("INFO"):
        assert trainlib.main(train_args(corpus, run, 6)) == 0
    assert "starts over" in caplog.text
    assert val_steps(run) == [2, 5]  # a fresh log, no duplicated rows


def test_resume_from_the_final_checkpoint_adds_no_validation_row(corpus, tmp_path):
    """Killed after the last checkpoint but before result.json: the rerun reports the logged validation."""
    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run, 6)) == 0
    reference = json.loads((run / "result.json").read_text())
    windows = (run / "val_windows.csv").read_text()
    rows = metrics_rows(run)
    (run / "result.json").unlink()
    (run / "val_windows.csv").unlink()
    assert trainlib.main(train_args(corpus, run, 6)) == 0
    assert metrics_rows(run) == rows
    assert json.loads((run / "result.json").read_text())["val_loss"] == reference["val_loss"]
    assert (run / "val_windows.csv").read_text() == windows  # validated again, silently, for its windows


def test_last_checkpoint_holds_the_final_weights_when_steps_are_not_a_multiple(corpus, tmp_path):
    """7 steps, a checkpoint every 3: last.ckpt is step 7, not step 6, and its weights score exactly the
    validation loss the run reports (what export, generation and the evaluations read)."""
    from dnahnet import window_losses as wl
    from dnahnet.checkpoint import global_step, load_model
    from dnahnet.data import DataConfig, GenomeDataModule

    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run, 7)) == 0
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_symlink() and last.resolve().name == "step=7.ckpt"
    assert global_step(last) == 7
    # the two newest step checkpoints are kept, as the periodic saves keep them
    assert sorted(p.name for p in (run / "checkpoints").glob("step=*.ckpt")) == ["step=6.ckpt", "step=7.ckpt"]
    result = json.loads((run / "result.json").read_text())
    dm = GenomeDataModule(DataConfig(data_dir=str(corpus / "data"), store_dir=str(corpus / "store"), seq_len=32,
                                     n_val_windows=4, batch_size=4))
    dm.prepare_data()
    dm.setup("fit")
    losses, tokens = wl.window_losses(load_model(run), dm.val_dataloader())
    assert float((losses * tokens).sum() / tokens.sum()) == pytest.approx(result["val_loss"], abs=1e-6)
    # val_windows.csv, recorded during the final validation, holds the same windows' losses
    recorded = [line.split(",") for line in (run / "val_windows.csv").read_text().splitlines()[1:]]
    assert [int(n) for _, _, n in recorded] == tokens.tolist()
    assert [float(x) for _, x, _ in recorded] == pytest.approx(losses.tolist(), abs=1e-6)
    # and a rerun interrupted before result.json resumes from the final checkpoint without training
    rows = metrics_rows(run)
    (run / "result.json").unlink()
    assert trainlib.main(train_args(corpus, run, 7)) == 0
    assert metrics_rows(run) == rows
    assert json.loads((run / "result.json").read_text())["val_loss"] == result["val_loss"]


def test_rerun_with_other_settings_is_refused_unless_new_run(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run, 3)) == 0
    config, result = (run / "config.yaml").read_text(), (run / "result.json").read_text()
    capsys.readouterr()
    assert trainlib.main(train_args(corpus, run, 3, "train.lr=0.002", "model.n_layers=1")) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "train.lr: 0.001 -> 0.002" in err and "model.n_layers" in err
    assert (run / "config.yaml").read_text() == config and (run / "result.json").read_text() == result
    assert trainlib.main(train_args(corpus, run, 3, "train.lr=0.002", "--new-run")) == 0
    (old,) = tmp_path.glob("run.old-*")
    assert (old / "config.yaml").read_text() == config and (old / "result.json").read_text() == result
    assert "lr: 0.002" in (run / "config.yaml").read_text()
    # The same settings again: nothing to refuse, the finished run is reported.
    assert trainlib.main(train_args(corpus, run, 3, "train.lr=0.002")) == 0


@pytest.mark.parametrize("setting", ["data.n_val_windows=0", "one-genome"])
def test_no_validation_windows_is_refused_before_training(corpus, tmp_path, capsys, setting):
    args = train_args(corpus, tmp_path / "run")
    if setting == "one-genome":
        one = tmp_path / "one"
        markov_corpus(one, 1, 5_000, 1, "genome{g}.fasta", "G{g}_chr only genome")
        args = [a if not a.startswith(str(corpus / "data")) else str(one) for a in args]
        args = [a for a in args if not a.startswith("data.store_dir")] + [f"data.store_dir={tmp_path / 'store'}"]
    else:
        args.append(setting)
    assert trainlib.main(args) == 2
    err = capsys.readouterr().err
    assert "validation windows" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.csv").exists()


def _spawn_training(corpus: Path, run: Path, steps: int, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "dnahnet.train", *train_args(corpus, run, steps, *extra)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigterm_exits_143_and_the_rerun_resumes(corpus, tmp_path, caplog):
    run = tmp_path / "run"
    slow_steps = ("train.val_every=100", "train.ckpt_every=20")
    proc = _spawn_training(corpus, run, 300, *slow_steps)
    _wait_for(lambda: len(list((run / "checkpoints").glob("step=*.ckpt"))) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]  # 143, as a shell reports it
    assert "stopped by SIGTERM at step" in err and "rerun the same command to resume" in err
    assert not (run / "result.json").exists()
    point = find_resume_point(run)
    first_segment = torch.load(point.path, weights_only=True)["callbacks"]["WallClock"]["wall_s"]
    assert first_segment > 0
    with caplog.at_level("INFO"):
        assert trainlib.main(train_args(corpus, run, 300, *slow_steps)) == 0
    assert f"(step {point.step})" in caplog.text
    result = json.loads((run / "result.json").read_text())
    assert result["steps"] == 300 and result["wall_s"] > first_segment  # wall time sums both segments
    kinds = row_kinds(run)
    assert len(kinds) == len(set(kinds))  # the resumed segment logged its steps once, not on top of the first
    assert {step for step, columns in kinds if "train/loss" in columns} == set(range(9, 300, 10))


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder(corpus, tmp_path, capsys):
    run = tmp_path / "run"
    proc = _spawn_training(corpus, run, 1000, "train.val_every=250")
    _wait_for(lambda: (run / ".lock.owner").exists() and (run / "config.yaml").exists(), proc)
    assert trainlib.main(train_args(corpus, run, 1000, "train.val_every=250")) == 2
    err = capsys.readouterr().err
    assert f"pid {proc.pid}" in err and "in use" in err and err.count("error:") == 1
    _, first_err = proc.communicate(timeout=300)
    assert proc.returncode == 0, first_err[-2000:]
    kinds = row_kinds(run)
    assert len(kinds) == len(set(kinds))  # no interleaved duplicate rows
    assert not (run / ".lock.owner").exists()


def test_a_run_that_diverged_before_any_checkpoint_can_rerun_with_other_settings(corpus, tmp_path, capsys):
    """Nothing to protect (no checkpoint, no result): new settings are not refused."""
    run = tmp_path / "run"
    assert trainlib.main(train_args(corpus, run, 6, "train.lr=1e30")) == 2
    assert "diverged" in capsys.readouterr().err
    assert trainlib.main(train_args(corpus, run, 6)) == 0
    assert json.loads((run / "result.json").read_text())["status"] == "ok"
