"""Where the evaluation tests find the real data (test helper).

The evaluation tests need the directory at import time, for their `skipif` marks."""

from __future__ import annotations

import os
from pathlib import Path

from dnahnet.data.paths import ENV_DATA_DIR, resolve_data_dir
from dnahnet.data.store import DataError


def data_dir() -> Path:
    """The data directory as the package resolves it; where that fails (a $DNAHNET_DATA_DIR that does not
    exist, no data at all), the directory it would have been, so that the tests needing it skip."""
    try:
        return resolve_data_dir()
    except DataError:
        return Path(os.environ.get(ENV_DATA_DIR, Path(__file__).resolve().parents[3] / "shared" / "data"))
