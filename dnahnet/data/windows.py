"""Windows of ``seq_len + 1`` tokens from a token store, as training/evaluation batches.

A window w of seq_len + 1 tokens gives ``input_ids = w[:-1]`` and ``labels = w[1:]``.

Choices (ours):
- **Windows never straddle records.** Records shorter than a window are *skipped* (not padded):
  every target is then a real nucleotide, no compute is spent on padding, and at 8,192 nt only
  small plasmids are lost (how much is logged). Labels therefore never hold -100.
- **Uniform over valid windows.** A training window is drawn uniformly among all valid start
  positions of the split, which samples each record with weight (length - window + 1), i.e. by
  length. All starts of a batch are drawn at once and gathered with one fancy index from the
  memory map (a strided sliding-window view, so each row is one contiguous copy).
- **One random stream per (rank, batch index).** Batch b on rank r is drawn from
  ``default_rng([seed, r, b])``. Dataloader worker k of K produces batches b = start + k, start +
  k + K, ...; the DataLoader returns workers' batches round-robin, so a rank sees batches start,
  start + 1, ... in order whatever the worker count. Resuming sets ``start`` to the number of
  batches already drawn: the stream continues instead of replaying.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from dnahnet.data.store import DataError, TokenStore
from dnahnet.tokenizer import reverse_complement_np

log = logging.getLogger(__name__)

_STREAM_TAG = 0x5EED  # separates the training stream from other uses of the same seed


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def to_batch(windows: np.ndarray) -> dict[str, torch.Tensor]:
    """(..., L + 1) uint8 windows -> {"input_ids": (..., L) int64, "labels": (..., L) int64}.

    Both tensors are contiguous halves of one fresh int64 buffer. Why one buffer and numpy casts:
    two separate multi-MB allocations make glibc return the memory to the OS after every batch
    (~1,000 page faults per 32 x 8192 batch, a 10x slowdown), and torch's intra-op thread pool
    costs more than the copy itself at these sizes when the cores are busy.
    """
    out = np.empty((2, *windows.shape[:-1], windows.shape[-1] - 1), dtype=np.int64)  # (2, ..., L)
    np.copyto(out[0], windows[..., :-1])
    np.copyto(out[1], windows[..., 1:])
    return {"input_ids": torch.from_numpy(out[0]), "labels": torch.from_numpy(out[1])}


class WindowIndex:
    """Valid window starts of a set of records, and vectorised gathering from the store."""

    def __init__(self, store: TokenStore, record_indices: np.ndarray, window: int, what: str = "windows"):
        self.store = store
        self.window = int(window)
        idx = np.asarray(record_indices, dtype=np.int64)
        lengths = store.lengths[idx]
        keep = lengths >= self.window
        if not keep.all():
            log.info(
                "%s: skipping %d of %d records shorter than the %d-nt window (%s nt of %s)",
                what,
                int((~keep).sum()),
                len(idx),
                self.window,
                f"{int(lengths[~keep].sum()):,}",
                f"{int(lengths.sum()):,}",
            )
        if not keep.any():
            longest = int(lengths.max()) if len(lengths) else 0
            raise DataError(
                f"{what}: no record is at least {self.window} nt long (longest {longest}); "
                "use a shorter seq_len or more genomes"
            )
        self.record_indices = idx[keep]  # (R,)
        self.offsets = store.offsets[self.record_indices]  # (R,) record start in tokens.bin
        self.n_starts = store.lengths[self.record_indices] - self.window + 1  # (R,) valid starts
        self.cum_starts = np.cumsum(self.n_starts)  # (R,)
        self.total_starts = int(self.cum_starts[-1])

    def sample_starts(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n window starts (absolute token offsets), uniform over all valid windows. (n,) int64"""
        u = rng.integers(0, self.total_starts, size=n)  # (n,) global window number
        r = np.searchsorted(self.cum_starts, u, side="right")  # (n,) record of each window
        return self.offsets[r] + (u - (self.cum_starts[r] - self.n_starts[r]))

    def gather(self, starts: np.ndarray) -> np.ndarray:
        """Windows at ``starts``: (n, window) uint8."""
        view = np.lib.stride_tricks.sliding_window_view(self.store.tokens, self.window)  # (T - W + 1, W)
        return view[starts]

    def record_of(self, starts: np.ndarray) -> np.ndarray:
        """Store record index of each absolute start (for tests and diagnostics)."""
        return np.searchsorted(self.store.offsets, starts, side="right") - 1


class TrainWindows(IterableDataset):
    """An infinite stream of random training batches (dicts), one batch per item.

    Use with ``DataLoader(..., batch_size=None)``. ``start_batch`` is the first batch index to
    produce (set from the DataModule's state when resuming).
    """

    def __init__(
        self,
        store: TokenStore,
        record_indices: np.ndarray,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rc_prob: float = 0.0,
        rank: int | None = None,
    ):
        self.index = WindowIndex(store, record_indices, seq_len + 1, what="train windows")
        self.seq_len, self.batch_size, self.seed, self.rc_prob = seq_len, batch_size, seed, rc_prob
        self.rank = rank  # None = torch.distributed's rank at iteration time
        self.start_batch = 0

    def windows(self, batch: int, rank: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(starts (B,), reverse-complemented (B,) bool, windows (B, L + 1) uint8) of one batch."""
        rng = np.random.default_rng([self.seed, _STREAM_TAG, rank, batch])
        starts = self.index.sample_starts(rng, self.batch_size)
        w = self.index.gather(starts)  # (B, L + 1), a fresh array
        flip = rng.random(self.batch_size) < self.rc_prob
        if flip.any():
            w[flip] = reverse_complement_np(w[flip])
        return starts, flip, w

    def batch(self, batch: int, rank: int = 0) -> dict[str, torch.Tensor]:
        return to_batch(self.windows(batch, rank)[2])

    def batch_indices(self) -> itertools.count:
        """Batch indices this (rank, worker) produces."""
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return itertools.count(self.start_batch + worker, n_workers)

    def __iter__(self):
        rank = self.rank if self.rank is not None else distributed_rank()[0]
        for b in self.batch_indices():
            yield self.batch(b, rank)


def fixed_window_starts(index: WindowIndex, n: int, seed: int) -> np.ndarray:
    """``n`` non-overlapping window starts, deterministic from ``seed``, sorted.

    Candidates are the tiles 0, W, 2W, ... of every record (non-overlapping by construction);
    n of them are chosen without replacement. Fewer candidates than n: all are used (logged).
    """
    W = index.window
    per_record = (index.n_starts - 1) // W + 1  # (R,) tiles that fit: floor(len / W)
    total = int(per_record.sum())
    if n > total:
        log.warning("asked for %d fixed windows of %d nt but the records hold only %d; using %d", n, W, total, total)
        n = total
    chosen = np.sort(np.random.default_rng([seed, _STREAM_TAG + 1]).choice(total, size=n, replace=False))
    cum = np.cumsum(per_record)
    r = np.searchsorted(cum, chosen, side="right")
    tile = chosen - (cum[r] - per_record[r])
    return index.offsets[r] + tile * W


class FixedWindows(Dataset):
    """A fixed, deterministic set of non-overlapping windows (validation / test): map-style."""

    def __init__(
        self,
        store: TokenStore,
        record_indices: np.ndarray,
        seq_len: int,
        n_windows: int,
        seed: int = 0,
        what: str = "fixed windows",
    ):
        self.index = WindowIndex(store, record_indices, seq_len + 1, what=what)
        self.starts = fixed_window_starts(self.index, n_windows, seed)  # (n,)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        """Window i as {"input_ids": (L,), "labels": (L,), "window": () int64 = i}; the default collate stacks
        them. "window" lets validation key each window's loss by its index whatever rank scored it."""
        return {**to_batch(self.index.gather(self.starts[i : i + 1])[0]), "window": torch.tensor(i)}
