"""Files written whole or not at all: text, YAML and figures go to a temporary file in the target's
directory and are moved into place with `os.replace`, so a reader (or a crash) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml


def _umask() -> int:
    """The process's umask: Linux reports it in /proc (no change to the process); elsewhere it is read by setting
    it and at once restoring it (there is no getter)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_file(path: Path) -> tuple[int, str]:
    """A temporary file beside `path` with the mode a plain `open(path, "w")` would give (0666 & ~umask);
    `mkstemp` makes it 0600, and os.replace would carry that onto the run's files."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    except OSError:  # a filesystem without modes
        pass
    return fd, tmp


def _named(exc: OSError, path: Path) -> OSError:
    """The error with the target's name instead of the temporary file's (gone by the time anyone reads it)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return type(exc)(exc.errno, exc.strerror or str(exc), str(path))
    return exc


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that readers see the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _named(exc, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_savefig(fig, path: str | os.PathLike, **savefig_kwargs) -> None:
    """Save a matplotlib figure through a temporary file and `os.replace` (never half a PNG/PDF).

    The format comes from `path`'s suffix unless `format=` is given; the figure is left open."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    savefig_kwargs.setdefault("format", path.suffix.lstrip(".") or None)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        fig.savefig(tmp, **savefig_kwargs)
        os.replace(tmp, path)
    except OSError as exc:
        raise _named(exc, path) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_yaml(path: str | os.PathLike, data: dict) -> None:
    """`data` as block-style YAML, keys in insertion order, written atomically."""
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
