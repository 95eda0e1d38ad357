"""dnahnet.tracking: a tiny sweep with train.loggers=csv,tensorboard,mlflow,wandb (W&B offline); each tracker,
read back with its own reader, holds the loss series metrics.csv holds, the run's parameters and the sweep's
tags. Also: the resumable metrics.csv, a given MLflow URI, W&B's offline rule, a missing tracker package."""

from __future__ import annotations

import csv
import json
import os
import struct
import sys
from pathlib import Path

import pytest
import yaml

from dnahnet import tracking
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[1]

ALL = "csv,tensorboard,mlflow,wandb"


def needs_trackers(*names: str) -> None:
    for name in names:
        pytest.importorskip(name, reason='the tracking extra: pip install -e ".[tracking]"')


def sweep_args(root: Path, out: Path, loggers: str = ALL) -> list[str]:
    return ["--model", "transformer", "--budgets", "1e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
            "--out", str(out), "--data-dir", str(root / "data"), "--no-progress", "--set",
            f"data.store_dir={root / 'store'}", "--set", "data.n_val_windows=4", "--set", "train.accelerator=cpu",
            "--set", f"train.loggers={loggers}"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One tiny isoFLOP sweep (3 runs) logging to every tracker; shared by the tracker checks."""
    from sweeps import isoflop

    needs_trackers("tensorboard", "mlflow", "wandb")
    root = tmp_path_factory.mktemp("tracking")
    markov_corpus(root / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
            mp.setenv(name, str(root / "wandb-home"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        out = root / "sweep"
        assert isoflop.main(sweep_args(root, out)) == 0
    return out


def run_dirs(sweep: Path) -> list[Path]:
    dirs = sorted((sweep / "runs").iterdir())
    assert len(dirs) == 3
    return dirs


def csv_series(run: Path, key: str) -> dict[int, float]:
    """step -> value of `key` in metrics.csv (what the sweeps and the analysis read)."""
    with open(run / "metrics.csv", newline="") as fh:
        series = {int(r["step"]): float(r[key]) for r in csv.DictReader(fh) if r.get(key)}
    assert series, f"{run}: no {key} in metrics.csv"
    return series


def plan_row(sweep: Path, run: Path) -> dict:
    with open(sweep / "plan.csv", newline="") as fh:
        return next(r for r in csv.DictReader(fh) if r["run_id"] == run.name)


# ---------------------------------------------------------------------------------------- TensorBoard
def test_tensorboard_holds_the_loss_series_and_the_tags(sweep):
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    for run in run_dirs(sweep):
        events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
        events.Reload()
        for key in ("train/loss", "val/loss"):
            got = {e.step: e.value for e in events.Scalars(key)}
            want = csv_series(run, key)
            assert got.keys() == want.keys()
            assert all(got[s] == np.float32(v) for s, v in want.items())  # TensorBoard stores float32
        text = make_ndarray(events.Tensors("tags/text_summary")[-1].tensor_proto).item().decode()
        row = plan_row(sweep, run)
        assert "| family | transformer |" in text and "| budget | 1e+09 |" in text
        assert f"| sweep | {sweep.name} |" in text and f"| params | {row['params']} |" in text


# ---------------------------------------------------------------------------------------- MLflow
MLFLOW_READER = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
experiment = client.get_experiment_by_name(sys.argv[2])
runs = {}
for r in client.search_runs([experiment.experiment_id]):
    runs[r.info.run_name] = {"params": r.data.params, "tags": r.data.tags, "metrics": {
        key: {str(m.step): m.value for m in client.get_metric_history(r.info.run_id, key)}
        for key in ("train/loss", "val/loss")}}
print(json.dumps(runs))
"""


def test_mlflow_store_is_read_by_a_fresh_process_as_users_read_it(sweep):
    """The sweep's one SQLite store (SWEEP/mlflow.db), read by a new Python process whose environment holds
    no MLFLOW_* variable (what `mlflow ui --backend-store-uri sqlite:///SWEEP/mlflow.db` or a notebook's
    MlflowClient sees): the sweep's experiment lists every run, with its parameters, tags and metrics."""
    import subprocess

    store = sweep / "mlflow.db"
    assert store.is_file() and not any((run / "mlruns").exists() for run in run_dirs(sweep))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.run([sys.executable, "-c", MLFLOW_READER, f"sqlite:///{store}", sweep.name],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(runs) == [run.name for run in run_dirs(sweep)]  # one experiment per sweep, all its runs
    for run in run_dirs(sweep):
        found = runs[run.name]
        for key in ("train/loss", "val/loss"):
            assert {int(k): v for k, v in found["metrics"][key].items()} == csv_series(run, key)
        config = yaml.safe_load((run / "config.yaml").read_text())
        params = found["params"]
        assert params["model_config/d_model"] == str(config["model"]["d_model"])
        assert params["train_config/lr"] == str(config["train"]["lr"])
        assert params["data/seq_len"] == "32" and params["family"] == "transformer"
        row = plan_row(sweep, run)
        tags = found["tags"]
        assert (tags["family"], tags["budget"], tags["sweep"], tags["run_id"]) == ("transformer", "1e+09", sweep.name,
                                                                                   run.name)
        assert (tags["params"], tags["tokens"], tags["variant"]) == (row["params"], row["tokens"], "")
        assert tags["sweep_dir"] == str(sweep.resolve())


def test_a_single_runs_mlflow_store_is_sqlite_in_its_directory(tmp_path, monkeypatch):
    needs_trackers("mlflow")
    from mlflow.tracking import MlflowClient

    from dnahnet.lit import TrainConfig

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    cfg = TrainConfig(loggers=("csv", "mlflow"))
    loggers = tracking.build_loggers(cfg, tmp_path / "run", tags={"family": "dnahnet"})
    loggers[1].log_metrics({"val/loss": 1.25}, step=2)
    tracking.finish(loggers)
    assert "MLFLOW_TRACKING_URI" not in os.environ  # the default store is not left exported
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'run' / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("dnahnet").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "val/loss")] == [(2, 1.25)]
    assert found.info.run_name == "run"


# ---------------------------------------------------------------------------------------- W&B
def wandb_records(path: Path):
    """The protobuf records of a W&B run file: LevelDB's log format (32 KiB blocks; each chunk a 7-byte header
    crc32/length/type, type 1 full, 2 first, 3 middle, 4 last) after a 7-byte ':W&B' file header."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record


def test_wandb_offline_run_holds_the_history_and_the_tags(sweep):
    for run in run_dirs(sweep):
        (offline,) = (run / "wandb").glob("offline-run-*")  # offline: nothing left the machine
        (path,) = offline.glob("run-*.wandb")
        history, tags, config = [], [], {}
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.history.item})
            elif kind == "run":
                tags = list(record.run.tags)
                config.update({i.key: json.loads(i.value_json) for i in record.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in record.config.update})
        for key in ("train/loss", "val/loss"):
            got = {h["trainer/global_step"]: h[key] for h in history if key in h}
            assert got == csv_series(run, key)
        assert {"family=transformer", "budget=1e+09", f"sweep={sweep.name}"} <= set(tags)
        assert config["tags"]["run_id"] == run.name and config["model_config"]["d_model"] > 0


# ---------------------------------------------------------------------------------------- no tracker
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    import importlib.util

    from dnahnet import train
    from sweeps import isoflop

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    assert train.main(["--out", str(tmp_path / "run"), "train.loggers=csv,wandb"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['error: train.loggers=wandb: the wandb package is not installed; install the tracking extra: '
                   'pip install -e ".[tracking]"']
    assert not (tmp_path / "run").exists()
    assert isoflop.main(sweep_args(tmp_path, tmp_path / "sweep", "csv,mlflow,wandb")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'pip install -e ".[tracking]"' in err[0] and not (tmp_path / "sweep").exists()
    assert train.main(["--out", str(tmp_path / "run"), "train.loggers=csv,neptune"]) == 2
    assert "unknown tracker 'neptune'; choose from csv, tensorboard, wandb, mlflow" in capsys.readouterr().err


def test_check_trackers_puts_csv_first_once():
    needs_trackers("mlflow", "tensorboard")  # check_trackers refuses a tracker whose package is missing
    assert tracking.check_trackers("mlflow,csv,tensorboard,mlflow") == ("csv", "mlflow", "tensorboard")
    assert tracking.check_trackers(("csv",)) == ("csv",) and tracking.check_trackers([]) == ("csv",)


# ---------------------------------------------------------------------------------------- pieces
def test_metrics_csv_keeps_the_rows_before_the_resume_step(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train/loss\n" + "".join(f"0,{s},{1 + s / 10}\n" for s in range(8)))
    logger = tracking.RunCSVLogger(tmp_path, resume_step=5)
    logger.log_metrics({"train/loss": 0.25, "epoch": 0}, step=5)
    logger.log_metrics({"val/loss": 0.5, "epoch": 0}, step=5)  # a new column: the header grows
    logger.save()
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert reader.fieldnames == ["epoch", "step", "train/loss", "val/loss"]
    assert [(r["step"], r["train/loss"], r["val/loss"]) for r in rows] == \
        [(str(s), str(1 + s / 10), "") for s in range(5)] + [("5", "0.25", ""), ("5", "", "0.5")]
    fresh = tracking.RunCSVLogger(tmp_path, resume_step=None)  # a fresh start: a fresh file
    fresh.log_metrics({"train/loss": 2.0}, step=0)
    fresh.finalize("success")
    assert path.read_text().splitlines() == ["step,train/loss", "0,2.0"]


def test_mlflow_logs_to_a_given_tracking_uri(tmp_path, monkeypatch):
    needs_trackers("mlflow")
    from mlflow.tracking import MlflowClient

    from dnahnet.lit import TrainConfig

    uri = f"sqlite:///{tmp_path / 'server.db'}"
    cfg = TrainConfig(loggers=("csv", "mlflow"), mlflow_uri=uri)
    loggers = tracking.build_loggers(cfg, tmp_path / "run", tags={"family": "dnahnet"}, params={"data": {"seq_len": 8}})
    loggers[1].log_metrics({"val/loss": 1.5}, step=3)
    tracking.finish(loggers)
    client = MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("dnahnet").experiment_id])
    assert [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "val/loss")] == [(3, 1.5)]
    assert found.data.params == {"data/seq_len": "8"} and found.data.tags["family"] == "dnahnet"
    assert not (tmp_path / "run" / "mlflow.db").exists()  # the given URI, not the run directory's store


def test_wandb_goes_offline_without_a_server(monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{port}")
    assert tracking._wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert tracking._wandb_offline() is True
    monkeypatch.setenv("WANDB_MODE", "online")
    assert tracking._wandb_offline() is False


def test_tune_tags_each_trial_with_its_study_and_budget(monkeypatch, tmp_path):
    from sweeps import optuna_study, tune

    seen = {}
    monkeypatch.setattr(optuna_study, "train_run", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs) or "done")
    run = tune.tagged_train_run("dnahnet-tiny-3e11", 3e11)
    assert run("the run's config", tmp_path / "trials" / "trial_4", progress=False) == "done"
    assert seen["args"] == ("the run's config", tmp_path / "trials" / "trial_4")
    # sweep_dir: the study's folder, where the trials' MLflow store (mlflow.db) lives
    assert seen["kwargs"] == {"progress": False, "tags": {"sweep": "dnahnet-tiny-3e11", "budget": "3e+11",
                                                          "run_id": "trial_4", "sweep_dir": str(tmp_path)}}
