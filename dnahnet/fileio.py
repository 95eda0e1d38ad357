"""Files written whole or not at all: text, YAML and figures go to a temporary file in the target's
directory and are moved into place with `os.replace`, so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savefig(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure through a temporary file and `os.replace` (never half a PNG/PDF).

    The format comes from `path`'s suffix unless `format=` is given; the figure is left open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, **savefig_kwargs)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_yaml(path: str | os.PathLike, data: dict) -> None:
    """`data` as block-style YAML, keys in insertion order, written atomically."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
