"""Hierarchy usage: how much a dnaHNet's validation loss rises when a stage's inner network is silenced.

For chunking stage s (0 = outermost), usage_s = L(z'_s = 0) - L: the validation loss with the output z' of
the stage's inner network (stage s + 1, or the main network) replaced by zeros before dechunking, so that
only the residual path W_res carries information past stage s, minus the real loss (nats per nucleotide,
the same windows and weights). About 0: the model predicts as well without its hierarchy below s (it
learned a shallow model around it); large: the inner stages carry what it predicts with.

Every dnaHNet run measures it at its final validation (`dnahnet.lit.LitLM`, logged `val/usage_stage{s}`,
kept in result.json and a sweep's results.csv as `usage_stage{s}`); `hierarchy_usage(model, loader)` measures
it for any model object, e.g. an export (`dnahnet.from_pretrained`) or a checkpoint, on a loader of
validation batches; `python -m dnahnet.hierarchy_usage MODEL --data-dir ... --seq-len ... --n-val-windows ...`
does so on a run's fixed validation windows.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dnahnet.checkpoint import load_model
from dnahnet.data import DataConfig, GenomeDataModule
from dnahnet.data.module import IGNORE_INDEX
from dnahnet.data.store import DataError
from dnahnet.export import from_pretrained

log = logging.getLogger(__name__)


def usage_stages(model: torch.nn.Module) -> list[int]:
    """The stages whose usage a model can report: every chunking stage of a dnaHNet, none otherwise."""
    if hasattr(model, "inner_output_zeroed") and hasattr(model, "n_stages"):
        return list(range(int(model.n_stages)))
    return []


def column(stage: int) -> str:
    """results.csv / metric name of one stage's usage."""
    return f"usage_stage{stage}"


@dataclass
class WindowNLL:
    """Summed NLL and scored tokens of each window of a batch."""

    nll_sum: torch.Tensor  # (B,) float64, nats
    tokens: torch.Tensor  # (B,) int64, labels != IGNORE_INDEX


def window_nll(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> WindowNLL:
    """One forward pass: each window's summed next-nucleotide NLL and its scored-token count."""
    logits = model(input_ids).logits.float()  # (B, L, V)
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")  # (B, L)
    return WindowNLL(nll.double().sum(-1), (labels != IGNORE_INDEX).sum(-1))


def ablated_nll_sums(model: torch.nn.Module, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[int, float]:
    """Stage -> the batch's summed NLL with that stage's inner output zeroed (empty for non-dnaHNet)."""
    out = {}
    for s in usage_stages(model):
        with model.inner_output_zeroed(s):
            out[s] = window_nll(model, input_ids, labels).nll_sum.sum()
    return out


@torch.no_grad()
def hierarchy_usage(model: torch.nn.Module, loader, progress: bool = False) -> dict[int, float]:
    """Stage -> validation loss with the stage's inner output zeroed minus the real loss (nats/nt), over all
    batches of `loader` (dicts with input_ids and labels). {} for a model without chunking stages."""
    stages = usage_stages(model)
    if not stages:
        return {}
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    real, tokens = 0.0, 0
    ablated = dict.fromkeys(stages, 0.0)
    try:
        for batch in tqdm(loader, desc="hierarchy usage", disable=not progress, leave=False):
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, L) each
            w = window_nll(model, ids, labels)
            real += float(w.nll_sum.sum())
            tokens += int(w.tokens.sum())
            for s, v in ablated_nll_sums(model, ids, labels).items():
                ablated[s] += float(v)
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("no validation tokens to score")
    return {s: (ablated[s] - real) / tokens for s in stages}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dnahnet.hierarchy_usage", description=__doc__.splitlines()[0])
    parser.add_argument("model", help="an export folder (model.safetensors + config.json), a checkpoint or a run dir")
    parser.add_argument("--data-dir", help="genome data directory (default: as training resolves it)")
    parser.add_argument("--seq-len", type=int, default=512, help="context of the validation windows (default 512)")
    parser.add_argument("--n-val-windows", type=int, default=512, help="fixed validation windows (default 512)")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass (default 16)")
    parser.add_argument("--split-seed", type=int, default=0, help="genome split and window seed (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from pathlib import Path

    path = Path(args.model)
    try:
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            model = from_pretrained(path)
        else:
            model = load_model(path, map_location="cpu")
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        why = str(err.args[0] if err.args else err).splitlines()[0]
        print(f"error: cannot load a model from {args.model}: {why}", file=sys.stderr)
        return 2
    if not usage_stages(model):
        print(f"error: {args.model}: not a dnaHNet (no chunking stages to ablate)", file=sys.stderr)
        return 2
    try:
        dm = GenomeDataModule(DataConfig(data_dir=args.data_dir, seq_len=args.seq_len, batch_size=args.batch_size,
                                         n_val_windows=args.n_val_windows, split_seed=args.split_seed))
        dm.setup()
        loader = dm.val_dataloader()
    except (DataError, ValueError) as err:
        print(f"error: data: {err}", file=sys.stderr)
        return 2
    usage = hierarchy_usage(model, loader, progress=True)
    print(json.dumps({column(s): round(v, 6) for s, v in usage.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
