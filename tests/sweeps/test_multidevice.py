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
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEQ_LEN, GLOBAL_BATCH, STEPS, N_VAL = 32, 8, 40, 8


def _markov_windows(generator, n: int, length: int):
    """Order-2 Markov DNA (a learnable signal): x_t depends on (x_{t-2}, x_{t-1}). (n, length) int64"""
    import torch

    table = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0], [2, 3, 0, 1], [3, 0, 1, 2]])  # (4, 4) favoured next token
    x = torch.empty(n, length, dtype=torch.long)
    x[:, :2] = torch.randint(0, 4, (n, 2), generator=generator)
    noise = torch.rand(n, length, generator=generator)
    rand = torch.randint(0, 4, (n, length), generator=generator)
    for t in range(2, length):
        favoured = table[x[:, t - 2], x[:, t - 1]]
        x[:, t] = torch.where(noise[:, t] < 0.8, favoured, rand[:, t])
    return x


def deterministic_datamodule(seq_len: int = SEQ_LEN, global_batch: int = GLOBAL_BATCH, n_val: int = N_VAL):
    import lightning as L
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class _Train(IterableDataset):
        def __iter__(self):
            rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) \
                if torch.distributed.is_initialized() else (0, 1)
            per = global_batch // world
            for b in itertools.count():
                w = _markov_windows(torch.Generator().manual_seed(1000 + b), global_batch, seq_len + 1)
                w = w[rank * per:(rank + 1) * per]  # this rank's rows of the global batch
                yield {"input_ids": w[:, :-1], "labels": w[:, 1:]}

    val_windows = _markov_windows(torch.Generator().manual_seed(7), n_val, seq_len + 1)
    val = [{"input_ids": w[:-1], "labels": w[1:]} for w in val_windows]

    class _DM(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(_Train(), batch_size=None)

        def val_dataloader(self):  # map-style: Lightning shards it over the ranks (DistributedSampler)
            return DataLoader(val, batch_size=2, shuffle=False)

    return _DM()


def _script(argv: list[str] | None = None) -> int:
    """Subprocess entry: train one tiny run and write result + final weights to --out."""
    p = argparse.ArgumentParser()
    p.add_argument("--family", default="transformer")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--strategy", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    from dnahnet import config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import TrainConfig
    from dnahnet.registry import get_config
    from dnahnet.train import train_run

    torch.set_num_threads(1)
    overrides = {"transformer": dict(d_model=32, n_layers=2, n_heads=2, mlp_multiple=16),
                 "dnahnet": dict(d_model=(16, 32, 32), d_intermediate=(0, 64, 64), n_heads=(2, 2, 2),
                                 layout=["m1", ["T1", ["T1"], "T1"], "m1"], chunk_size=16, ema_chunk_size=16)}[args.family]
    model_cfg = get_config(args.family, "tiny", None, **overrides)
    train_cfg = cfglib.replace(TrainConfig(), lr=1e-2, max_steps=STEPS, ckpt_every=STEPS, log_every=4,
                               accelerator="cpu", devices=args.devices, strategy=args.strategy, warmup_fraction=0.1)
    data_cfg = cfglib.replace(DataConfig(), seq_len=SEQ_LEN, batch_size=GLOBAL_BATCH // args.devices, n_val_windows=N_VAL)
    out = Path(args.out)
    result = train_run(args.family, model_cfg, train_cfg, data_cfg, out / "run", progress=False,
                       datamodule=deterministic_datamodule())
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        (out / "result.json").write_text(json.dumps(result.__dict__))
    return 0


def _train(tmp_path: Path, name: str, **kw) -> tuple[dict, Path]:
    out = tmp_path / name
    out.mkdir()
    args = [f"--{k}={v}" for k, v in kw.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.sweeps.test_multidevice", "--out", str(out), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "result.json").read_text()), out / "run"


def _weights(run_dir: Path) -> dict:
    import torch

    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


@pytest.mark.slow
def test_ddp_two_processes_match_one(tmp_path):
    single, single_dir = _train(tmp_path, "single", devices=1, strategy="auto")
    ddp, ddp_dir = _train(tmp_path, "ddp", devices=2, strategy="ddp")
    assert single["status"] == ddp["status"] == "ok"
    assert single["steps"] == ddp["steps"] == STEPS
    # Same tokens seen: the global batch is the same (2 ranks x 4 windows = 8 windows).
    assert single["tokens"] == ddp["tokens"] == STEPS * GLOBAL_BATCH * SEQ_LEN
    assert abs(single["val_loss"] - ddp["val_loss"]) < 1e-4, (single["val_loss"], ddp["val_loss"])
    # It learned (the order-2 Markov source is far below log 4 = 1.386 nats): the comparison is not vacuous.
    assert single["val_loss"] < 1.3
    a, b = _weights(single_dir), _weights(ddp_dir)
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff < 1e-4, diff


@pytest.mark.slow
def test_fsdp2_two_processes_train_dnahnet(tmp_path):
    pytest.importorskip("dnahnet.model")
    single, _ = _train(tmp_path, "single", family="dnahnet", devices=1, strategy="auto")
    fsdp2, fsdp2_dir = _train(tmp_path, "fsdp2", family="dnahnet", devices=2, strategy="fsdp2")
    assert fsdp2["status"] == "ok" and fsdp2["steps"] == STEPS
    assert fsdp2["tokens"] == STEPS * GLOBAL_BATCH * SEQ_LEN
    # Sharded training is the same optimisation as one process on the global batch (up to rounding).
    assert abs(single["val_loss"] - fsdp2["val_loss"]) < 1e-3, (single["val_loss"], fsdp2["val_loss"])
    assert fsdp2["val_loss"] < 1.3
    assert (fsdp2_dir / "checkpoints" / "last.ckpt").exists()  # a distributed (sharded) checkpoint


if __name__ == "__main__":
    sys.exit(_script())
