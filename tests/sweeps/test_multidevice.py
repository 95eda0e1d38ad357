"""Multi-process training on CPU (gloo): DDP matches one process with the same global batch; FSDP2
(`strategy="fsdp2"`: ModelParallelStrategy + `LitLM.configure_model`'s fully_shard) trains a tiny dnaHNet.

Lightning's DDP on CPU starts its ranks by re-running the command, so each case runs this file as a
script in a subprocess (`python -m tests.sweeps.test_multidevice --strategy ... --out ...`), which
trains one run with `dnahnet.train.train_run` on a deterministic data module: global batch b is the same
tensor whatever the world size, and rank r trains on rows [r B/W, (r+1) B/W) of it.

Why the tolerances: with equal tokens per rank, DDP's averaged gradient equals the one-process gradient
of the whole batch up to float32 summation order (~1e-7 relative); over 16 AdamW steps those rounding
differences stay at the 1e-6 level (Adam normalises each coordinate, so a tiny gradient difference moves
a weight by at most ~lr x relative difference per step). We allow 1e-4 nats on the validation loss and
1e-4 on any weight: three orders of magnitude above the rounding, and far below the differences a wrong
reduction would cause (e.g. summing instead of averaging the ranks' gradients changes the loss by > 1e-2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.multidevice import GLOBAL_BATCH, N_VAL, SEQ_LEN, deterministic_datamodule

REPO = Path(__file__).resolve().parents[2]
STEPS = 40


def _train_one(family: str, devices: int, strategy: str, out: Path) -> dict:
    """Train one tiny run with `train_run` on the deterministic data; returns its RunResult as a dict."""
    from dnahnet import typed_config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import TrainConfig
    from dnahnet.registry import get_config
    from dnahnet.run_config import RunConfig
    from dnahnet.train import train_run

    overrides = {"transformer": dict(d_model=32, n_layers=2, n_heads=2, mlp_multiple=16),
                 "dnahnet": dict(d_model=(16, 32, 32), d_intermediate=(0, 64, 64), n_heads=(2, 2, 2),
                                 layout=["m1", ["T1", ["T1"], "T1"], "m1"], chunk_size=16, ema_chunk_size=16)}[family]
    model_cfg = get_config(family, "tiny", None, **overrides)
    train_cfg = cfglib.replace(TrainConfig(), lr=1e-2, max_steps=STEPS, ckpt_every=STEPS, log_every=4,
                               accelerator="cpu", devices=devices, strategy=strategy, warmup_fraction=0.1)
    data_cfg = cfglib.replace(DataConfig(), seq_len=SEQ_LEN, batch_size=GLOBAL_BATCH // devices, n_val_windows=N_VAL)
    result = train_run(RunConfig(family, "tiny", None, model_cfg, train_cfg, data_cfg), out, progress=False,
                       datamodule=deterministic_datamodule())
    return dict(result.__dict__)


def _script(argv: list[str] | None = None) -> int:
    """Subprocess entry: `--jobs family:strategy,...` on 2 processes, each into OUT/<family>-<strategy>/.

    Lightning re-runs this command for rank 1, so both ranks run the jobs in the same order; the process
    group made by the first job is reused by the next ones."""
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", required=True)
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    for job in args.jobs.split(","):
        family, strategy = job.split(":")
        out = Path(args.out) / f"{family}-{strategy}"
        result = _train_one(family, args.devices, strategy, out / "run")
        if int(os.environ.get("LOCAL_RANK", 0)) == 0:
            (out / "result.json").write_text(json.dumps(result))
    return 0


def _weights(run_dir: Path) -> dict:
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory) -> Path:
    """One 2-process launch (gloo) training: transformer with DDP, dnaHNet with DDP and with FSDP2."""
    out = tmp_path_factory.mktemp("multidevice")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.sweeps.test_multidevice", "--out", str(out), "--devices", "2",
         "--jobs", "transformer:ddp,dnahnet:ddp,dnahnet:fsdp2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
def test_ddp_two_processes_match_one(two_process_runs, tmp_path):
    ddp = json.loads((two_process_runs / "transformer-ddp" / "result.json").read_text())
    single = _train_one("transformer", 1, "auto", tmp_path / "single")
    assert single["status"] == ddp["status"] == "ok"
    assert single["steps"] == ddp["steps"] == STEPS
    # Same tokens seen: the global batch is the same (2 ranks x 4 windows = 8 windows).
    assert single["tokens"] == ddp["tokens"] == STEPS * GLOBAL_BATCH * SEQ_LEN
    assert abs(single["val_loss"] - ddp["val_loss"]) < 1e-4, (single["val_loss"], ddp["val_loss"])
    # It learned (the Markov source's entropy, 0.59 nats, is far below log 4 = 1.386): not vacuous.
    assert single["val_loss"] < 1.0
    a, b = _weights(tmp_path / "single"), _weights(two_process_runs / "transformer-ddp" / "run")
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff < 1e-4, diff


@pytest.mark.slow
def test_fsdp2_two_processes_train_dnahnet(two_process_runs):
    """FSDP2 shards parameters, gradients and optimizer state but is the same optimisation as DDP on the
    same per-rank batches: equal to DDP up to rounding. (Not to one process exactly: dnaHNet's ratio loss
    is a nonlinear function of each rank's batch statistics F and G, like batch norm.)"""
    ddp = json.loads((two_process_runs / "dnahnet-ddp" / "result.json").read_text())
    fsdp2 = json.loads((two_process_runs / "dnahnet-fsdp2" / "result.json").read_text())
    assert fsdp2["status"] == "ok" and fsdp2["steps"] == STEPS
    assert fsdp2["tokens"] == STEPS * GLOBAL_BATCH * SEQ_LEN
    assert abs(ddp["val_loss"] - fsdp2["val_loss"]) < 1e-4, (ddp["val_loss"], fsdp2["val_loss"])
    assert fsdp2["val_loss"] < 1.0
    ckpt = two_process_runs / "dnahnet-fsdp2" / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_dir() and (ckpt / ".metadata").exists()  # a distributed (sharded) checkpoint


if __name__ == "__main__":
    sys.exit(_script())
