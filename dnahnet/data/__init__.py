"""Data pipeline: genome files -> token store -> windows -> batches.

Batches are dicts ``{"input_ids": LongTensor (B, L), "labels": LongTensor (B, L)}`` (a window of
L + 1 nucleotides shifted by one). ``GenomeDataModule`` (Lightning) is imported lazily so that the
store, ingestion and CLI do not pay for importing Lightning.
"""

from dnahnet.data.ingest import InputFile, build_store, discover_inputs, prepare_store, store_key
from dnahnet.data.paths import cache_root, default_inputs, resolve_data_dir
from dnahnet.data.splits import HOLDOUT, SPLITS, TEST, TRAIN, VAL, SplitConfig, assign_splits
from dnahnet.data.store import DataError, RecordInfo, StoreWriter, TokenStore
from dnahnet.data.windows import FixedWindows, TrainWindows, WindowIndex
from dnahnet.logs import log_repeats_once

# Every run of a sweep sets up the same data: say where it comes from once per process, not per run.
log_repeats_once("dnahnet.data.ingest", "dnahnet.data.module", "dnahnet.data.splits", "dnahnet.data.paths")

_LAZY = {"DataConfig", "GenomeDataModule"}


def __getattr__(name: str):
    if name in _LAZY:
        from dnahnet.data import module

        return getattr(module, name)
    raise AttributeError(f"module 'dnahnet.data' has no attribute {name!r}")


__all__ = [
    "DataConfig",
    "DataError",
    "FixedWindows",
    "GenomeDataModule",
    "HOLDOUT",
    "InputFile",
    "RecordInfo",
    "SPLITS",
    "SplitConfig",
    "StoreWriter",
    "TEST",
    "TRAIN",
    "TokenStore",
    "TrainWindows",
    "VAL",
    "WindowIndex",
    "assign_splits",
    "build_store",
    "cache_root",
    "default_inputs",
    "discover_inputs",
    "prepare_store",
    "resolve_data_dir",
    "store_key",
]
