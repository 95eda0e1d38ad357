"""A deterministic data module for multi-process training on CPU (test helper): global batch b is the same
tensor whatever the world size, and rank r trains on rows [r B/W, (r+1) B/W) of it (tests/sweeps/test_multidevice.py
explains the tolerances that rely on it)."""

from __future__ import annotations

import itertools

SEQ_LEN, GLOBAL_BATCH, N_VAL = 32, 8, 8


def markov_windows(generator, n: int, length: int):
    """First-order Markov DNA (a learnable signal): with probability 0.8 the next nucleotide is the
    successor of the previous one (A->C->G->T->A), else uniform. Entropy ~0.59 nats. (n, length) int64"""
    import torch

    x = torch.empty(n, length, dtype=torch.long)
    x[:, 0] = torch.randint(0, 4, (n,), generator=generator)
    keep = torch.rand(n, length, generator=generator) < 0.8
    rand = torch.randint(0, 4, (n, length), generator=generator)
    for t in range(1, length):
        x[:, t] = torch.where(keep[:, t], (x[:, t - 1] + 1) % 4, rand[:, t])
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
                w = markov_windows(torch.Generator().manual_seed(1000 + b), global_batch, seq_len + 1)
                w = w[rank * per:(rank + 1) * per]  # this rank's rows of the global batch
                yield {"input_ids": w[:, :-1], "labels": w[:, 1:]}

    val_windows = markov_windows(torch.Generator().manual_seed(7), n_val, seq_len + 1)
    val = [{"input_ids": w[:-1], "labels": w[1:]} for w in val_windows]

    class _DM(L.LightningDataModule):
        def train_dataloader(self):
            return DataLoader(_Train(), batch_size=None)

        def val_dataloader(self):  # map-style: Lightning shards it over the ranks (DistributedSampler)
            return DataLoader(val, batch_size=2, shuffle=False)

    return _DM()
