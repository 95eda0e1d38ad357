"""Data pipeline: genome files -> token store -> windows -> batches.

Batches are dicts ``{"input_ids": LongTensor (B, L), "labels": LongTensor (B, L)}`` (a window of
L + 1 nucleotides shifted by one). What imports torch (``GenomeDataModule``, the
window datasets) is imported lazily: the store, ingestion, the CLI and a run's configuration (``DataConfig``)
do not pay for importing torch and Lightning.
"""

import importlib

from dnahnet.data.config import DataConfig, data_key
from dnahnet.data.ingest import InputFile, build_store, discover_inputs, prepare_store, store_key
from dnahnet.data.paths import cache_root, default_inputs, resolve_data_dir
from dnahnet.data.splits import HOLDOUT, SPLITS, TEST, TRAIN, VAL, SplitConfig, assign_splits
from dnahnet.data.store import DataError, RecordInfo, StoreWriter, TokenStore
from dnahnet.logs import log_repeats_once

# Every run of a sweep sets up the same data: say where it comes from once per process, not per run.
log_repeats_once("dnahnet.data.ingest", "dnahnet.data.module", "dnahnet.data.splits", "dnahnet.data.paths")

_LAZY = {"GenomeDataModule": "module", "FixedWindows": "windows", "TrainWindows": "windows", "WindowIndex": "windows"}


def __getattr__(name: str):
    if name in _LAZY:  # torch: imported on first use (see above)
        module = importlib.import_module(f"dnahnet.data.{_LAZY[name]}")
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
    "data_key",
    "cache_root",
    "default_inputs",
    "discover_inputs",
    "prepare_store",
    "resolve_data_dir",
    "store_key",
]
