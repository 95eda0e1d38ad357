"""Validation under several processes scores every fixed window exactly once.

The sweep compares runs on the same validation nucleotides. Lightning's default DistributedSampler pads
the windows to a multiple of the world size by repeating some, so 5 windows on 2 ranks would score
window 0 twice. `GenomeDataModule` shards them with `EvalShardSampler` instead (padding items carry only
ignored labels) and `LitLM` sums losses and token counts over the ranks.

Test: the same weights on the same 5 windows give the same validation loss in 1 process, in 2 gloo
processes with DDP and with FSDP2 (dnaHNet), and from a plain float64 loop over the windows (1e-5 nats);
likewise each window's loss (`val_windows.csv`, recorded during validation and gathered over the ranks)
and the hierarchy usage (`val/usage_stage{s}`, reduced over the ranks like the loss).
Lightning's DDP on CPU starts its ranks by re-running the command, so the 2-process case runs this file
as a script (`python -m tests.data.test_distributed_validation ...`), as tests/sweeps/test_multidevice.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEQ_LEN, N_VAL, EVAL_BATCH = 32, 5, 2
MODEL = dict(d_model=(16, 32, 32), d_intermediate=(0, 64, 64), n_heads=(2, 2, 2),
             layout=["m1", ["T1", ["T1"], "T1"], "m1"], chunk_size=16, ema_chunk_size=16)


def _data_config(data_dir: Path, store_dir: Path):
    from dnahnet.data import DataConfig

    return DataConfig(data_dir=str(data_dir), store_dir=str(store_dir), seq_len=SEQ_LEN, batch_size=2,
                      eval_batch_size=EVAL_BATCH, n_val_windows=N_VAL, holdout=[])


def _lit(weights: Path | None = None):
    import torch

    from dnahnet.data import DataConfig
    from dnahnet.lit import LitLM
    from dnahnet.registry import get_config
    from dnahnet.run_config import RunConfig
    from dnahnet.train_config import TrainConfig

    torch.manual_seed(0)
    lit = LitLM(RunConfig("dnahnet", "tiny", None, get_config("dnahnet", "tiny", None, **MODEL),
                          TrainConfig(accelerator="cpu"), DataConfig(seq_len=SEQ_LEN)))
    if weights is not None:
        lit.load_state_dict(torch.load(weights, weights_only=True))
    return lit


def _validate(devices: int, strategy: str, data_dir: Path, store_dir: Path, weights: Path,
              windows_csv: Path | None = None) -> dict:
    """`trainer.validate` with the project's data module; the reported val/* metrics. `windows_csv`: where
    rank 0 writes the gathered per-window losses (as `dnahnet.train` writes a run's val_windows.csv)."""
    import lightning as L

    from dnahnet import typed_config as cfglib
    from dnahnet.data import GenomeDataModule
    from dnahnet.lit import TrainConfig
    from dnahnet.train import _strategy

    train_cfg = cfglib.replace(TrainConfig(), accelerator="cpu", devices=devices, strategy=strategy)
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy=_strategy(train_cfg), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    lit = _lit(weights)
    (metrics,) = trainer.validate(lit, datamodule=GenomeDataModule(_data_config(data_dir, store_dir)), verbose=False)
    if windows_csv is not None and trainer.is_global_zero:
        from dnahnet.window_losses import write_window_losses

        write_window_losses(windows_csv, lit.window_losses.losses, lit.window_losses.tokens)
    return {k: float(v) for k, v in metrics.items()}


def _script(argv: list[str] | None = None) -> int:
    """Subprocess entry: validate with each strategy of --strategies on --devices processes."""
    p = argparse.ArgumentParser()
    for name in ("--data-dir", "--store-dir", "--weights", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--devices", type=int, default=2)
    p.add_argument("--strategies", default="ddp,fsdp2")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    out = Path(args.out)
    losses = {s: _validate(args.devices, s, Path(args.data_dir), Path(args.store_dir), Path(args.weights),
                           out.parent / f"val_windows-{s}.csv")
              for s in args.strategies.split(",")}
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        Path(args.out).write_text(json.dumps(losses))
    return 0


def _reference_loss(data_dir: Path, store_dir: Path, weights: Path) -> tuple[float, list[float]]:
    """Mean NLL over every position of the 5 fixed windows, one window at a time, summed in float64; and each
    window's own mean."""
    import torch

    from dnahnet.data import GenomeDataModule

    dm = GenomeDataModule(_data_config(data_dir, store_dir))
    dm.setup("validate")
    windows = dm.fixed_windows("val")
    model = _lit(weights).model.eval()
    total, count, per_window = 0.0, 0, []
    with torch.no_grad():
        for i in range(len(windows)):
            w = windows[i]
            logp = model(w["input_ids"][None]).logits[0].double().log_softmax(-1)  # (L, V)
            nll = -float(logp.gather(-1, w["labels"][:, None]).sum())
            total += nll
            count += int(w["labels"].numel())
            per_window.append(nll / w["labels"].numel())
    return total / count, per_window


@pytest.fixture(scope="module")
def setup_run(tmp_path_factory):
    """A synthetic corpus with its store built, and one set of weights saved for every process."""
    import torch

    from dnahnet.data import GenomeDataModule
    from tests.helpers.synthetic_corpus import markov_corpus

    root = tmp_path_factory.mktemp("ddp_val")
    data_dir = markov_corpus(root / "data", 4, 3000, 5, file_name="g{g}.fasta", header="G{g} synthetic {g}")
    store_dir = root / "store"
    GenomeDataModule(_data_config(data_dir, store_dir)).prepare_data()
    weights = root / "weights.pt"
    state = _lit().state_dict()
    # Sharper predictions than at init (logits x 30), so windows' losses differ by far more than 1e-5:
    # scoring one window twice shows.
    state["model.lm_head.weight"] = state["model.lm_head.weight"] * 30
    torch.save(state, weights)
    return data_dir, store_dir, weights


def test_eval_shard_sampler_takes_each_window_once_and_pads_with_ignored_labels():
    import torch

    from dnahnet.data.module import IGNORE_INDEX, EvalShardSampler, MaskedPadding
    from dnahnet.lit import IGNORE_INDEX as LIT_IGNORE

    assert IGNORE_INDEX == LIT_IGNORE
    windows = [{"input_ids": torch.full((4,), i), "labels": torch.full((4,), i)} for i in range(5)]
    for world in (1, 2, 3, 5, 7):
        shards = [list(EvalShardSampler(windows, world, r)) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # same number of items on every rank (FSDP collectives)
        real = sorted(i for s in shards for i in s if i < 5)
        assert real == list(range(5))  # each window exactly once
        padded = MaskedPadding(windows)
        for i in (i for s in shards for i in s if i >= 5):
            item = padded[i]
            assert (item["labels"] == IGNORE_INDEX).all() and item["input_ids"].shape == (4,)
    assert padded[3]["labels"].tolist() == [3, 3, 3, 3]


@pytest.mark.slow
def test_validation_loss_is_the_same_in_one_and_two_processes(setup_run, tmp_path):
    from dnahnet.window_losses import FILENAME

    data_dir, store_dir, weights = setup_run
    reference, per_window = _reference_loss(data_dir, store_dir, weights)
    assert len(per_window) == N_VAL  # 5 windows: not a multiple of 2 ranks, nor of the batch of 2
    one_csv = tmp_path / FILENAME
    one_metrics = _validate(1, "auto", data_dir, store_dir, weights, one_csv)
    one = one_metrics["val/loss"]
    assert abs(one - reference) < 1e-5, (one, reference)
    one_windows = _read_windows(one_csv)
    assert [w for w, _, _ in one_windows] == list(range(N_VAL))
    assert all(abs(loss - ref) < 1e-5 for (_, loss, _), ref in zip(one_windows, per_window, strict=True))
    assert len({round(loss, 3) for _, loss, _ in one_windows}) == N_VAL  # distinct: a swap or repeat would show

    out = tmp_path / "losses.json"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "tests.data.test_distributed_validation", "--devices", "2", "--strategies",
         "ddp,fsdp2", "--data-dir", str(data_dir), "--store-dir", str(store_dir), "--weights", str(weights),
         "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    two = json.loads(out.read_text())
    for strategy in ("ddp", "fsdp2"):
        assert abs(two[strategy]["val/loss"] - reference) < 1e-5, (strategy, two, reference)
        windows = _read_windows(tmp_path / f"val_windows-{strategy}.csv")
        assert [(w, n) for w, _, n in windows] == [(w, n) for w, _, n in one_windows], strategy
        assert max(abs(a[1] - b[1]) for a, b in zip(windows, one_windows, strict=True)) < 1e-5, strategy
        for s in (0, 1):  # hierarchy usage: the ranks' ablated losses reduce like the loss
            key = f"val/usage_stage{s}"
            assert abs(two[strategy][key] - one_metrics[key]) < 1e-5, (strategy, key)


def _read_windows(path: Path) -> list[tuple[int, float, int]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "window,loss,tokens"
    return [(int(w), float(loss), int(n)) for w, loss, n in (line.split(",") for line in lines[1:])]


if __name__ == "__main__":
    sys.exit(_script())
