"""LitLM under DDP (2 processes, gloo, CPU): a non-finite loss on one rank stops every rank, in bounded
time, with a non-zero exit (issue 26: the rank that saw it used to raise while the others waited in the
gradient all-reduce until the NCCL timeout).

The case runs this file as a script in a subprocess (Lightning's DDP on CPU starts rank 1 by re-running
the command). Rank 1's loss is made infinite from step 2 on by wrapping `LitLM._train_loss`; rank 0's stays
finite. Each rank records how it ended in OUT/rank<r>.txt and exits 3 on FloatingPointError.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    import torch

    from dnahnet import typed_config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import LitLM, TrainConfig
    from dnahnet.registry import get_config
    from dnahnet.run_config import RunConfig
    from dnahnet.train import train_run
    from tests.helpers.multidevice import deterministic_datamodule

    torch.set_num_threads(1)
    rank = int(os.environ.get("LOCAL_RANK", 0))
    if rank == 1:
        original = LitLM._train_loss

        def poisoned(self, batch):
            nll, n, out = original(self, batch)
            return (nll * float("inf") if self.global_step >= 2 else nll), n, out

        LitLM._train_loss = poisoned
    model_cfg = get_config("transformer", "tiny", None, d_model=16, n_layers=1, n_heads=2, mlp_multiple=16)
    # log_every=5 and ckpt_every=50: the check at step 4 (a logged step) is the first after the poisoning.
    train_cfg = cfglib.replace(TrainConfig(), max_steps=12, ckpt_every=50, log_every=5, accelerator="cpu", devices=2,
                               strategy="ddp")
    data_cfg = cfglib.replace(DataConfig(), seq_len=16, batch_size=2, n_val_windows=4)
    out = Path(args.out)
    try:
        train_run(RunConfig("transformer", "tiny", None, model_cfg, train_cfg, data_cfg), out / "run", progress=False,
                  datamodule=deterministic_datamodule(seq_len=16, global_batch=4, n_val=4))
    except FloatingPointError as exc:
        (out / f"rank{rank}.txt").write_text(f"FloatingPointError: {exc}")
        return 3
    (out / f"rank{rank}.txt").write_text("finished")
    return 0


@pytest.mark.slow
def test_nonfinite_loss_on_one_rank_stops_both_ranks(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tests.test_lit_distributed", "--out", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=240)
    elapsed = time.monotonic() - start
    tail = proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.returncode != 0, tail
    for rank in (0, 1):
        record = tmp_path / f"rank{rank}.txt"
        assert record.is_file(), f"rank {rank} left no record\n{tail}"
        assert record.read_text().startswith("FloatingPointError: non-finite training loss at or before step 4")
    assert elapsed < 240  # bounded: no rank waited for a collective the other had left


if __name__ == "__main__":
    sys.exit(_script())
