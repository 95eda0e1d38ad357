"""Per-window validation losses: the unit of measurement noise a sweep's bootstrap resamples.

Every run of a sweep is scored on the same fixed validation windows (same genomes, same positions).
A run's validation loss is the mean over those windows; saving each window's own mean loss lets the
analysis resample the windows (paired across runs, since they share them) to put a standard error on
each loss and an interval on each fitted exponent, instead of treating the losses as exact.

File format (`val_windows.csv`, one per run directory): one row per window in window order (the index of
the fixed validation windows), `window,loss,tokens` with `loss` the window's mean NLL in nats per
nucleotide. A run records them during its final validation, on every rank, gathered to rank 0
(`dnahnet.lit.LitLM.window_losses`); `window_losses` below scores a model object in one process.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dnahnet import fileio
from dnahnet.data.module import IGNORE_INDEX

FILENAME = "val_windows.csv"


@torch.no_grad()
def window_losses(model: torch.nn.Module, loader) -> tuple[np.ndarray, np.ndarray]:
    """(mean NLL per window in nats, scored tokens per window), in the loader's window order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    losses, counts = [], []
    try:
        for batch in loader:
            ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)  # (B, L) each
            logits = model(ids).logits.float()  # (B, L, V)
            nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")  # (B, L)
            n = (labels != IGNORE_INDEX).sum(-1)  # (B,)
            losses.append((nll.sum(-1) / n.clamp_min(1)).double().cpu())
            counts.append(n.cpu())
    finally:
        model.train(was_training)
    if not losses:
        raise ValueError("no validation windows to score")
    return torch.cat(losses).numpy(), torch.cat(counts).numpy()


def write_window_losses(path: str | Path, losses: np.ndarray, tokens: np.ndarray) -> None:
    buf = io.StringIO()
    buf.write("window,loss,tokens\n")
    for i, (loss, n) in enumerate(zip(losses, tokens, strict=True)):
        buf.write(f"{i},{loss:.7f},{int(n)}\n")
    fileio.atomic_write_text(path, buf.getvalue())

