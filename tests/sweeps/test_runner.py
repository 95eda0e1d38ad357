"""results.csv bookkeeping (atomic, locked, one row per run) and failure handling of `execute_run`."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from dnahnet.train import RunResult
from sweeps import ladders as lad
from sweeps.plan import plan_family
from sweeps.runner import (
    RESULT_COLUMNS,
    describe,
    execute_run,
    read_results,
    record_result,
    results_by_id,
)


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        record_result(Path(path), {"run_id": f"w{worker}-r{i}", "status": "ok", "val_loss": i})
        record_result(Path(path), {"run_id": "shared", "status": "ok", "val_loss": worker})


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    """Read-modify-write from 4 processes at once: without the file lock, rows get lost."""
    path = tmp_path / "results.csv"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 25)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    rows = read_results(path)
    ids = [r["run_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4 * 25 + 1
    assert list(rows[0].keys()) == list(RESULT_COLUMNS)
    assert not list(tmp_path.glob(".results.csv.*"))  # no temporary file left behind


def test_record_replaces_the_row_of_a_run(tmp_path):
    path = tmp_path / "results.csv"
    record_result(path, {"run_id": "a", "status": "failed", "error": "boom"})
    record_result(path, {"run_id": "b", "status": "ok"})
    record_result(path, {"run_id": "a", "status": "ok", "error": ""})
    rows = results_by_id(path)
    assert set(rows) == {"a", "b"} and rows["a"]["status"] == "ok" and rows["a"]["error"] == ""


@pytest.fixture(scope="module")
def spec():
    return plan_family("transformer", None, lad.get_ladder("cpu-smoke"))[0]


def test_a_raising_run_is_recorded_as_failed(tmp_path, spec):
    def exploding(*args, **kwargs):
        raise FloatingPointError("non-finite training loss nan at step 3")

    row = execute_run(spec, tmp_path, train_fn=exploding)
    assert row["status"] == "failed" and "FloatingPointError" in row["error"]
    stored = results_by_id(tmp_path / "results.csv")[spec.run_id]
    assert stored["status"] == "failed" and "nan at step 3" in stored["error"]
    assert "FloatingPointError" in (tmp_path / "runs" / spec.run_id / "error.log").read_text()
    assert describe(stored).endswith("FAILED (FloatingPointError: non-finite training loss nan at step 3)")


def test_an_ok_run_records_its_result(tmp_path, spec):
    seen = {}

    def fake(run, run_dir, **kwargs):
        seen.update(family=run.family, steps=run.train.max_steps, batch=run.data.batch_size, run_dir=run_dir)
        return RunResult("ok", 1.25, 1.25 / 0.6931471805599453, spec.tokens, spec.flops * 1.01, spec.flops,
                         spec.params, spec.params_non_embedding, spec.steps, 3.0)

    row = execute_run(spec, tmp_path, train_fn=fake)
    assert seen == {"family": "transformer", "steps": spec.steps, "batch": spec.batch,
                    "run_dir": tmp_path.resolve() / "runs" / spec.run_id}
    stored = results_by_id(tmp_path / "results.csv")[spec.run_id]
    assert stored["status"] == "ok" and float(stored["val_loss"]) == 1.25
    assert float(stored["flops"]) == pytest.approx(spec.flops * 1.01)  # the run's actual FLOPs
    assert float(stored["budget"]) == spec.budget and stored["run_dir"] == str(seen["run_dir"])
    assert "val 1.2500 nats/nt" in describe(row)


def test_non_finite_validation_is_a_failure(tmp_path, spec):
    def nan_val(*args, **kwargs):
        return RunResult("ok", float("nan"), float("nan"), 1, 1.0, 1.0, 1, 1, 1, 1.0)

    assert execute_run(spec, tmp_path, train_fn=nan_val)["status"] == "failed"


def test_a_changed_config_is_refused_not_resumed(tmp_path, spec):
    import yaml

    run_dir = tmp_path / "runs" / spec.run_id
    run_dir.mkdir(parents=True)
    cfg = spec.run_config.to_dict()
    cfg["train"]["lr"] = spec.lr * 2
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    called = []
    row = execute_run(spec, tmp_path, train_fn=lambda *a, **k: called.append(1))
    assert not called and row["status"] == "failed" and "different configuration" in row["error"]
    assert "train.lr" in row["error"]


def test_the_recorded_resume_step_is_the_checkpoint_training_resumes_from(tmp_path, spec):
    """`resumed_from_step` comes from `dnahnet.rundir.resume_point`, the rule `dnahnet.train` resumes by:
    a truncated newest checkpoint is moved aside and the previous one counts; an unsafe one fails the run."""
    import os

    import torch

    from dnahnet.rundir import resume_point

    ckpts = tmp_path / "runs" / spec.run_id / "checkpoints"
    ckpts.mkdir(parents=True)
    torch.save({"global_step": 4}, ckpts / "step=4.ckpt")
    (ckpts / "step=8.ckpt").write_bytes(b"PK\x03\x04 truncated")
    os.symlink("step=8.ckpt", ckpts / "last.ckpt")
    seen = []

    def fake(run, run_dir, **kwargs):
        seen.append(resume_point(run_dir))  # what train_run would resume from
        return RunResult("ok", 1.0, 1.4, spec.tokens, spec.flops, spec.flops, spec.params,
                         spec.params_non_embedding, spec.steps, 1.0)

    row = execute_run(spec, tmp_path, train_fn=fake)
    assert int(row["resumed_from_step"]) == 4 == seen[0].step and seen[0].path.name == "step=4.ckpt"
    assert list(ckpts.glob("step=8.corrupt-*.ckpt")) and not (ckpts / "last.ckpt").exists()

    class Crafted:
        def __reduce__(self):
            return (print, ("this ran",))

    torch.save({"global_step": 9, "x": Crafted()}, ckpts / "step=9.ckpt")
    row = execute_run(spec, tmp_path, train_fn=fake)
    assert row["status"] == "failed" and "step=9.ckpt: refused" in row["error"] and len(seen) == 1


# ------------------------------------------------------------------------------------------------ exports


def _one_run_sweep(tmp_path: Path, *extra: str):
    """A one-run sweep (--only the smallest model of a 3-size ladder) on a synthetic corpus."""
    from sweeps import isoflop
    from tests.helpers.synthetic_corpus import markov_corpus

    data = tmp_path / "data"
    if not data.exists():
        markov_corpus(data, 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    out = tmp_path / ("sweep" + "".join(extra).replace("-", "_"))
    args = ["--model", "transformer", "--budgets", "1e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
            "--out", str(out), "--data-dir", str(data), "--no-progress", "--set", f"data.store_dir={tmp_path / 'store'}",
            "--set", "data.n_val_windows=4", "--set", "train.accelerator=cpu", *extra]
    plan = isoflop.plan_from_args(isoflop.build_parser().parse_args(args))
    run_id = min(plan, key=lambda s: s.params).run_id
    return isoflop.main([*args, "--only", run_id]), out, run_id


@pytest.mark.slow
def test_finished_runs_keep_their_final_weights_and_a_rerun_writes_a_missing_export(tmp_path, monkeypatch):
    import json
    import shutil

    import torch

    import dnahnet
    import dnahnet.train as trainlib
    from dnahnet.checkpoint import load_checkpoint_model

    rc, out, run_id = _one_run_sweep(tmp_path)
    assert rc == 0
    run_dir = out / "runs" / run_id
    folder = run_dir / "export"
    assert json.loads((out / "plan.json").read_text())["meta"]["export"] is True
    # The export holds last.ckpt's weights (the step training ended on): same logits.
    ids = torch.randint(0, 4, (2, 32))
    ref = load_checkpoint_model(run_dir / "checkpoints" / "last.ckpt").model.eval()
    torch.testing.assert_close(dnahnet.from_pretrained(folder)(ids).logits, ref(ids).logits, rtol=0, atol=0)
    config = json.loads((folder / "config.json").read_text())
    assert config["global_step"] == int(read_results(out / "results.csv")[0]["steps"])
    from dnahnet.data import DataConfig

    assert config["data"]["holdout"] == list(DataConfig().holdout)  # the run's data settings travel with it
    assert "NC_000913" in config["data"]["holdout"]

    shutil.rmtree(folder)  # as if the sweep died between recording the result and exporting
    called = []
    monkeypatch.setattr(trainlib, "train_run", lambda *a, **k: called.append(a) or pytest.fail("retrained"))
    rc, _, _ = _one_run_sweep(tmp_path)
    assert rc == 0 and called == []
    torch.testing.assert_close(dnahnet.from_pretrained(folder)(ids).logits, ref(ids).logits, rtol=0, atol=0)
    assert not list(run_dir.glob(".export.tmp-*"))  # the temporary folder was renamed into place


@pytest.mark.slow
def test_no_export_keeps_no_weights_and_is_recorded(tmp_path):
    import json

    rc, out, run_id = _one_run_sweep(tmp_path, "--no-export")
    assert rc == 0
    assert read_results(out / "results.csv")[0]["status"] == "ok"
    assert not (out / "runs" / run_id / "export").exists()
    assert json.loads((out / "plan.json").read_text())["meta"]["export"] is False


def test_hierarchy_usage_columns_come_from_the_runs_metrics(tmp_path, spec):
    """usage_stage{s} holds the run's final `val/usage_stage{s}` (dnaHNet); empty where a run has none."""
    def fake(usage):
        def run(run_config, run_dir, **kwargs):
            return RunResult("ok", 1.25, 1.8, spec.tokens, spec.flops, spec.flops, spec.params,
                             spec.params_non_embedding, spec.steps, 3.0,
                             metrics={"val/loss": 1.25, **{f"val/usage_stage{s}": v for s, v in usage.items()}})
        return run

    execute_run(spec, tmp_path / "a", train_fn=fake({0: 0.0123, 1: 0.0009}))
    row = results_by_id(tmp_path / "a" / "results.csv")[spec.run_id]
    assert float(row["usage_stage0"]) == 0.0123 and float(row["usage_stage1"]) == 0.0009
    assert row["usage_stage2"] == ""
    execute_run(spec, tmp_path / "b", train_fn=fake({}))
    row = results_by_id(tmp_path / "b" / "results.csv")[spec.run_id]
    assert row["usage_stage0"] == row["usage_stage1"] == "" and "usage_stage0" in RESULT_COLUMNS
