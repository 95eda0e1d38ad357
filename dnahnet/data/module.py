"""The LightningDataModule: genomes -> store -> train stream + fixed validation/test windows."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from dnahnet.data.config import DataConfig
from dnahnet.data.ingest import prepare_store
from dnahnet.data.paths import default_inputs, resolve_data_dir
from dnahnet.data.splits import HOLDOUT, TEST, TRAIN, VAL
from dnahnet.data.store import TokenStore
from dnahnet.data.windows import FixedWindows, TrainWindows

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # label of a position that is not scored (dnahnet.lit.IGNORE_INDEX)


class _CountingLoader(DataLoader):
    """A DataLoader over the training stream that counts the batches it yields.

    Iterating starts the stream at ``counter["yielded"]`` (0, or where ``load_state_dict`` put it) and
    resets ``counter["trained"]`` (batches handed to a training step, counted by the DataModule) to the same
    position. Counting happens in the main process, so batches prefetched by workers but never yielded are
    not counted (they will be produced again).
    """

    def __init__(self, *args, counter: dict[str, int], **kwargs):
        super().__init__(*args, **kwargs)
        self.counter = counter

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self.dataset.start_batch = self.counter["trained"] = self.counter["yielded"]
        for batch in super().__iter__():
            self.counter["yielded"] += 1
            yield batch


class EvalShardSampler(DistributedSampler):
    """Splits fixed evaluation windows over the ranks so that every window is scored exactly once.

    Lightning's default for evaluation loaders is a DistributedSampler that pads the dataset to a multiple
    of the world size by *repeating* windows: with 5 windows on 2 ranks, window 0 is scored twice and a
    2-process run reports a different loss than a 1-process run on the same windows. Here rank r takes
    windows r, r + W, r + 2W, ... (no repeats, no shuffling). Every rank still yields the same number of
    indices (ceil(n / W)), because under FSDP each forward is a collective: a rank short of a window gets
    index n + k, which `MaskedPadding` serves as a window whose labels are all ignored (0 tokens, 0 loss).
    The validation step sums losses and token counts across ranks (`dnahnet.lit.LitLM`).

    A DistributedSampler subclass, so that Lightning leaves it in place instead of wrapping it.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.n = len(dataset)
        self.num_samples = -(-self.n // num_replicas)  # ceil: equal per rank
        self.total_size = self.num_samples * num_replicas

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))  # >= n: padding indices

    def __len__(self) -> int:
        return self.num_samples


class MaskedPadding(Dataset):
    """A map-style dataset of windows, extended past its end with padding items: index n + k is window k
    with every label set to IGNORE_INDEX (same shapes, so batches stack; nothing is scored) and window
    index -1."""

    def __init__(self, windows: Dataset):
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        n = len(self.windows)
        if i < n:
            return self.windows[i]
        item = dict(self.windows[i % n])
        item["labels"] = torch.full_like(item["labels"], IGNORE_INDEX)
        if "window" in item:
            item["window"] = torch.tensor(-1)  # no window: its (zero) loss is not recorded
        return item


def _world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group, or (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class GenomeDataModule(L.LightningDataModule):
    """Genome windows for pretraining and evaluation.

    - ``prepare_data`` (rank 0 of each node): build the token store unless it is up to date;
    - ``setup``: open it, split genomes (train / val / test / holdout), index the windows;
    - ``train_dataloader``: an infinite stream (train with ``max_steps``; give ``val_check_interval``
      as a step count); ``val_dataloader`` / ``test_dataloader``: fixed windows;
    - ``state_dict`` / ``load_state_dict``: how many training batches were drawn, so a resumed run
      continues the window stream instead of replaying it.
    """

    def __init__(self, cfg: DataConfig | None = None):
        super().__init__()
        self.cfg = cfg or DataConfig()
        # Stream position, shared with the training DataLoader: batches it yielded, and batches that reached
        # a training step (`on_after_batch_transfer`); they differ by what Lightning fetched ahead.
        self.counter = {"yielded": 0, "trained": 0}
        self.store: TokenStore | None = None
        self.split_of: dict[str, str] = {}
        self._train: TrainWindows | None = None
        self._fixed: dict[str, FixedWindows | None] = {}

    # -- store -------------------------------------------------------------------------------
    def _open_store(self) -> TokenStore:
        data_dir = resolve_data_dir(self.cfg.data_dir)
        inputs = self.cfg.inputs if self.cfg.inputs is not None else default_inputs(data_dir)
        return prepare_store(
            inputs, base_dir=data_dir, store_dir=self.cfg.store_dir, split=self.cfg.split_config(), progress=True
        )

    def prepare_data(self) -> None:
        self._open_store()

    def setup(self, stage: str | None = None) -> None:
        if self.store is not None:
            return
        self.store = self._open_store()  # after prepare_data this only opens the store
        self.split_of = self.store.split_of()
        for split in (TRAIN, VAL, TEST, HOLDOUT):
            names = sorted(g for g, s in self.split_of.items() if s == split)
            log.info("%-7s genomes (%d): %s", split, len(names), ", ".join(names) or "-")

    def records(self, split: str) -> np.ndarray:
        """Store record indices of one split."""
        assert self.store is not None, "call setup() first"
        return self.store.indices_of_genomes([g for g, s in self.split_of.items() if s == split])

    @property
    def train_windows(self) -> TrainWindows:
        if self._train is None:
            c = self.cfg
            self._train = TrainWindows(
                self.store,
                self.records(TRAIN),
                c.seq_len,
                c.batch_size,
                seed=c.seed,
                rc_prob=c.rc_prob if c.rc_augment else 0.0,
            )
        return self._train

    def fixed_windows(self, split: str, n_windows: int | None = None) -> FixedWindows | None:
        """The fixed windows of ``split`` (val, test or holdout); None when the split has no genome."""
        if split not in self._fixed:
            n = (
                n_windows
                if n_windows is not None
                else (
                    self.cfg.n_test_windows
                    if split == TEST and self.cfg.n_test_windows is not None
                    else self.cfg.n_val_windows
                )
            )
            idx = self.records(split)
            self._fixed[split] = (
                FixedWindows(self.store, idx, self.cfg.seq_len, n, seed=self.cfg.split_seed, what=f"{split} windows")
                if len(idx) and n
                else None
            )
        return self._fixed[split]

    # -- loaders -----------------------------------------------------------------------------
    def _loader_kwargs(self) -> dict[str, Any]:
        w = self.cfg.num_workers
        return {
            "num_workers": w,
            "pin_memory": torch.cuda.is_available(),
            "persistent_workers": False,
            **({"prefetch_factor": 4} if w else {}),
        }

    def train_dataloader(self) -> DataLoader:
        return _CountingLoader(self.train_windows, batch_size=None, counter=self.counter, **self._loader_kwargs())

    def _eval_loader(self, split: str) -> DataLoader | list:
        """The fixed windows of `split`; with several processes, each rank's share (`EvalShardSampler`:
        every window scored once over all ranks, none repeated)."""
        ds = self.fixed_windows(split)
        if ds is None:
            log.warning("no %s genomes: the %s dataloader is empty", split, split)
            return []
        rank, world = _world()
        sampler = EvalShardSampler(ds, world, rank) if world > 1 else None
        return DataLoader(
            MaskedPadding(ds) if sampler is not None else ds,
            batch_size=self.cfg.eval_batch_size or self.cfg.batch_size,
            shuffle=False,
            sampler=sampler,
            drop_last=False,
            **self._loader_kwargs(),
        )

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader(VAL)

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader(TEST)

    # -- checkpointing -----------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Counts the training batches that reach a training step (Lightning calls this hook for every batch
        right before its step, after moving it to the device). Lightning's fit loop fetches one batch ahead
        of the step it runs (to see the end of an iterable); that batch is yielded but not trained on, so a
        run resumed from a checkpoint saved now must draw it again."""
        if self.trainer is not None and self.trainer.training:
            self.counter["trained"] += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        # While fitting, the batches trained on; without a Trainer (iterating the loader directly), the
        # batches the loader yielded.
        fitting = self.trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        return {
            "batches_drawn": self.counter["trained" if fitting else "yielded"],
            "seed": self.cfg.seed,
            "seq_len": self.cfg.seq_len,
            "batch_size": self.cfg.batch_size,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key in ("seed", "seq_len", "batch_size"):
            if key in state_dict and state_dict[key] != getattr(self.cfg, key):
                log.warning(
                    "resuming with %s=%s but the checkpoint used %s", key, getattr(self.cfg, key), state_dict[key]
                )
        self.counter["yielded"] = self.counter["trained"] = int(state_dict["batches_drawn"])
        log.info("data stream resumes after %d batches", self.counter["yielded"])
