"""A run directory's guards: one writer at a time, the same settings on every rerun, a clear stop on SIGTERM.

Used by `dnahnet.train` (a run directory) and the sweeps (a sweep directory). Refusals are exceptions
with one-line messages; the commands print them as `error: ...` and exit 2 (143 for SIGTERM).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import yaml

from dnahnet import checkpoint as ckptlib
from dnahnet import fileio
from dnahnet.run_config import RunConfig, config_differences


# ---------------------------------------------------------------------- refusals and stops
class RunRefused(ValueError):
    """A run that must not start (a bad config, no validation windows, a changed recipe): one line."""


class RunLocked(RunRefused):
    """Another process is writing into the run (or sweep) directory."""


class TrainingStopped(BaseException):
    """The run was stopped by SIGTERM; a rerun resumes it. A BaseException (like KeyboardInterrupt) so
    that a sweep stops instead of recording the run as failed."""

    exit_code = 128 + signal.SIGTERM  # 143, what a shell reports for a process killed by SIGTERM


def is_rank_zero() -> bool:
    """Whether this process is rank 0 of its run: the one that locks the run (or sweep) directory, moves
    unreadable checkpoints aside and records results.

    Lightning's `rank_zero_only.rank`: the global rank once a Trainer has set up its processes, and before
    that (when a command starts, before the lock is taken) the rank its launcher put in the environment
    (RANK, LOCAL_RANK, SLURM_PROCID). Lightning does not read NODE_RANK there: the process a user starts on
    node 1..M of a multi-node run reads as rank 0 until the Trainer sets it up, so node 0 is required too."""
    from lightning.fabric.plugins.environments import LightningEnvironment
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return rank_zero_only.rank == 0 and LightningEnvironment().node_rank() == 0


def _lock_holder(owner_file: Path) -> str:
    try:
        info = json.loads(owner_file.read_text())
        return f"pid {info['pid']} on host {info['host']} (since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no owner recorded)"


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, what: str = "run directory"):
    """Hold `directory/.lock` for the block; a second process gets RunLocked naming the holder (pid, host).

    The holder's identity goes into a separate `.lock.owner`: filelock truncates the lock file itself when
    another process opens it. The lock is the kernel's (flock), so a killed holder releases it."""
    from filelock import FileLock, Timeout

    directory = Path(directory)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunRefused(f"{directory}: cannot create the {what} ({exc.strerror or exc})") from None
    lock = FileLock(str(directory / ".lock"), timeout=0)
    owner = directory / ".lock.owner"
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(f"{directory}: the {what} is in use by {_lock_holder(owner)}; wait for it to finish or "
                        "use another --out") from None
    except OSError as exc:
        raise RunRefused(f"{directory}: cannot lock the {what} ({exc.strerror or exc})") from None
    try:
        fileio.atomic_write_text(owner, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()
        if created:  # a run refused before it wrote anything leaves no directory behind (only its lock was there)
            with contextlib.suppress(OSError):
                if {p.name for p in directory.iterdir()} <= {".lock"}:
                    (directory / ".lock").unlink(missing_ok=True)
                    directory.rmdir()


# ---------------------------------------------------------------------- resume point
def resume_point(run_dir: str | os.PathLike) -> ckptlib.ResumePoint | None:
    """The checkpoint a run in `run_dir` resumes from: its readable checkpoint with the highest step
    (`step=N.ckpt`, `last.ckpt` (a link to the newest), Lightning's `hpc_ckpt_*.ckpt`), or None (the run
    starts over). What `dnahnet.train` resumes from and what a sweep records as `resumed_from_step`.

    Rank 0 moves an unreadable (truncated) checkpoint aside as `*.corrupt-*.ckpt`; the other ranks of a
    multi-process run skip it without touching the files. A checkpoint that would run code when loaded is
    refused: RunRefused naming the file."""
    try:
        return ckptlib.find_resume_point(run_dir, set_aside_corrupt=is_rank_zero())
    except ckptlib.UnsafeCheckpoint as exc:
        raise RunRefused(str(exc)) from None


# ---------------------------------------------------------------------- run identity
def check_same_run(run_dir: Path, run: RunConfig) -> None:
    """Refuse to resume (or report) a run directory made with other settings, naming the keys (the one
    identity rule: `dnahnet.run_config.config_differences`). A directory with neither a result nor a
    checkpoint (e.g. a run that diverged at its first steps) has nothing to protect: it starts afresh with
    the new settings."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    if not (run_dir / "result.json").exists() and not ckptlib.find_resume_point(run_dir, set_aside_corrupt=False):
        return
    try:
        old = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, OSError) as exc:
        raise RunRefused(f"{path}: unreadable ({exc})") from None
    if not isinstance(old, dict):
        raise RunRefused(f"{path}: not a run config")
    diffs = config_differences(old, run.to_dict())
    if diffs:
        raise RunRefused(f"{run_dir} holds a run with other settings ({'; '.join(diffs[:5])}"
                         f"{f'; {len(diffs) - 5} more' if len(diffs) > 5 else ''}); rerun with the same settings to "
                         "resume it, use another --out, or pass --new-run to keep it aside and start afresh")


def move_run_aside(run_dir: Path) -> Path:
    """--new-run: rename an existing run directory to RUN.old-<time> (kept intact) so a new run starts."""
    with directory_lock(run_dir):  # refuses while another process trains in it
        pass
    for name in (".lock", ".lock.owner"):
        with contextlib.suppress(OSError):
            (run_dir / name).unlink()
    aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(run_dir, aside)
    return aside


# ---------------------------------------------------------------------- SIGTERM
def stop_on_sigterm() -> None:
    """Turn SIGTERM outside `trainer.fit` into TrainingStopped (exit 143 with a line) instead of a silent kill.

    Inside fit, Lightning's own handler runs first and calls this one too: then it returns, and Lightning
    stops at the next step boundary (train_run turns that into TrainingStopped with the step)."""

    def handler(signum, frame):
        if signal.getsignal(signal.SIGTERM) is not handler:  # Lightning is handling it (inside fit)
            return
        raise TrainingStopped("stopped by SIGTERM before training started or after it ended; rerun the same "
                              "command to resume")

    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, handler)
