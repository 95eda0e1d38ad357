"""The shell every sweep command shares (`sweeps/isoflop.py`, `python -m sweeps.lr_sweep`): one sweep process
per directory under its lock, and one exit protocol.

Exit codes: 0 done; 2 bad input, a refused rerun or a full disk (one `error:` line naming what); 130 Ctrl-C and
`TrainingStopped.exit_code` for SIGTERM (one `stopped:` line saying how many runs are recorded and that the
same command continues). The run in progress resumes from its last checkpoint on a rerun.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dnahnet.rundir import RunRefused, TrainingStopped, directory_lock, is_rank_zero, stop_on_sigterm
from sweeps.runner import DiskFull, results_by_id

T = TypeVar("T")


def recorded(out: Path) -> int:
    """How many runs OUT/results.csv records (0 without one)."""
    return len(results_by_id(out / "results.csv")) if (out / "results.csv").is_file() else 0


def run_command(out: Path, what: str, plan: Callable[[], list[T]], body: Callable[[list[T]], int]) -> int:
    """`plan()` (before anything is written: bad input leaves no directory behind), then `body(specs)` under
    OUT's sweep-directory lock (rank zero takes it; the other ranks of a multi-device sweep run under it), with
    SIGTERM turned into `TrainingStopped`; `body`'s return value, or the exit code of what stopped either.
    `what` names the command in messages ("sweep", "learning-rate sweep")."""
    stop_on_sigterm()
    specs: list[T] = []
    try:
        specs = plan()
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out}: is a file, not a sweep directory")
        with directory_lock(out, what="sweep directory") if is_rank_zero() else contextlib.nullcontext():
            return body(specs)
    except TrainingStopped as exc:
        print(f"stopped: {what} {out} ({recorded(out)} of {len(specs)} runs recorded): {exc}", file=sys.stderr)
        return TrainingStopped.exit_code
    except KeyboardInterrupt:
        print(f"stopped: {what} {out} interrupted (SIGINT) with {recorded(out)} of {len(specs)} runs recorded; "
              "rerun the same command to continue (finished runs are skipped, the interrupted one resumes)",
              file=sys.stderr)
        return 130
    except (RunRefused, DiskFull, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out on a read-only filesystem, a permission problem
        print(f"error: {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
