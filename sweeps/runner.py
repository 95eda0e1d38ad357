"""Executing planned runs and recording them in `DIR/results.csv`.

Each run trains with `dnahnet.train.train_run` into `DIR/runs/<run_id>` (which skips a finished run and
resumes an interrupted one from `checkpoints/last.ckpt`). When it ends, one row goes into results.csv:
read, replace any row of the same run_id, write a temporary file, `os.replace` - under an exclusive file
lock on `results.csv.lock` (`filelock`), so concurrent workers (local GPUs, SLURM jobs on one filesystem)
never lose or duplicate a row. A run that raises (a NaN loss raises FloatingPointError) is recorded as
`failed` with its error (the traceback goes to `<run_dir>/error.log`) and the sweep moves on.

A finished run also leaves its final weights as an export (`<run_dir>/export/`: model.safetensors +
config.json, `dnahnet.export`), written from checkpoints/last.ckpt (which holds the step training ended on)
right after the run, before its row is recorded; so a sweep can be evaluated later without retraining
(`python -m dnahnet.evals.sweep`). plan.json's `meta.export` (false after `isoflop.py --no-export`) turns it
off; `backfill_exports` writes the export of a finished run that lacks it (a crash between the two).

Also the entry point of one worker process (the local-gpus and multi-device launchers):

    python -m sweeps.runner --sweep-dir DIR --run-id RUN_ID
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import logging
import math
import os
import sys
import time
import traceback
from pathlib import Path

import yaml

from dnahnet import train as trainlib
from dnahnet.checkpoint import is_exported
from dnahnet.export import WEIGHTS_FILE, export
from dnahnet.fileio import atomic_write_text
from dnahnet.run_config import config_differences
from dnahnet.rundir import RunLocked, TrainingStopped, is_rank_zero, resume_point
from dnahnet.tracking import sweep_tags
from sweeps.plan import RunSpec, read_plan

log = logging.getLogger("sweeps")

# dnaHNet's hierarchy usage per chunking stage (dnahnet/hierarchy_usage.py: validation loss with the stage's
# inner output zeroed minus the real loss, nats/nt); empty for other families and for stages a model lacks.
USAGE_COLUMNS = ("usage_stage0", "usage_stage1", "usage_stage2")
RESULT_COLUMNS = (
    "run_id", "family", "variant", "budget", "size", "params", "params_non_embedding", "tokens", "flops",
    "flops_planned", "val_loss", "val_bpn", "status", "steps", "planned_steps", "resumed_from_step", "batch",
    "lr", "seq_len", "tokens_per_param", "wall_s", "run_dir", "error", *USAGE_COLUMNS, "seed",
)

# ------------------------------------------------------------------------------------ results.csv
def read_results(path: str | os.PathLike) -> list[dict]:
    """Rows of a results.csv (empty list when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def results_by_id(path: str | os.PathLike) -> dict[str, dict]:
    return {r["run_id"]: r for r in read_results(path)}


def record_result(path: str | os.PathLike, row: dict) -> None:
    """Insert or replace the row of `row["run_id"]` in results.csv: locked, read, write temp, os.replace."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(path.with_name(path.name + ".lock")):  # waits for the other writers; released if we die
        rows = [r for r in read_results(path) if r.get("run_id") != row["run_id"]]
        rows.append({k: row.get(k, "") for k in RESULT_COLUMNS})
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(RESULT_COLUMNS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------ one run
def cpu_threads(requested: int | None = None) -> int | None:
    """Intra-op CPU threads for training: `requested`, else $OMP_NUM_THREADS, else 1 on a machine without
    CUDA (None: leave torch's default, for GPU runs).

    Why 1: the sweep's CPU models are tiny, and torch's OpenMP threads spin-wait at every parallel region;
    on a small machine shared with other work, two threads made tiny-model steps ~50x slower than one.
    """
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be >= 1, got {requested}")
        return int(requested)
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    import torch

    return None if torch.cuda.is_available() else 1


def run_dir_of(spec: RunSpec, sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir).resolve() / "runs" / spec.run_id


def _check_identity(spec: RunSpec, run_dir: Path) -> None:
    """Refuse to resume a run directory made with other settings (the one identity rule,
    `dnahnet.run_config.config_differences`: a different model, recipe, data window or genomes)."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    diffs = config_differences(yaml.safe_load(path.read_text()) or {}, spec.run_config.to_dict())
    if diffs:
        raise ValueError(f"{run_dir} was made with a different configuration ({'; '.join(diffs[:6])}); "
                         "use another --out directory for a changed sweep")


def _result_row(spec: RunSpec, run_dir: Path, status: str, **values) -> dict:
    row = {
        "run_id": spec.run_id, "family": spec.family, "variant": spec.variant or "", "budget": spec.budget,
        "size": spec.size, "params": spec.params, "params_non_embedding": spec.params_non_embedding,
        "tokens": "", "flops": "", "flops_planned": spec.flops, "val_loss": "", "val_bpn": "", "status": status,
        "steps": "", "planned_steps": spec.steps, "resumed_from_step": 0, "batch": spec.batch, "lr": spec.lr,
        "seq_len": spec.seq_len, "tokens_per_param": "", "wall_s": "", "run_dir": str(run_dir), "error": "",
        "seed": spec.seed,
    }
    row.update(values)
    return row


# ------------------------------------------------------------------------------------ exports
EXPORT_DIR = "export"  # <run_dir>/export: the run's final weights (dnahnet.export's format)


def exports_enabled(sweep_dir: str | os.PathLike) -> bool:
    """Whether the sweep keeps its models: plan.json's meta.export (absent: True; `--no-export` writes False)."""
    import json

    path = Path(sweep_dir) / "plan.json"
    try:
        meta = json.loads(path.read_text()).get("meta") or {}
    except (OSError, ValueError, AttributeError):
        return True
    return bool(meta.get("export", True))


def export_run(run_dir: str | os.PathLike) -> Path | None:
    """Write `<run_dir>/export/` from the run's final checkpoint (atomic: a temporary folder renamed into
    place by `dnahnet.export.export`); returns it, or None when the run has no checkpoint to export."""
    run_dir = Path(run_dir)
    if not (run_dir / "checkpoints" / "last.ckpt").exists():
        return None
    return export(run_dir, run_dir / EXPORT_DIR)


def has_export(run_dir: str | os.PathLike) -> bool:
    """Whether the run's export is complete (config.json and model.safetensors)."""
    folder = Path(run_dir) / EXPORT_DIR
    return is_exported(folder) and (folder / WEIGHTS_FILE).is_file()


def _export_quietly(run_id: str, run_dir: Path) -> None:
    """Export a finished run; a failure is logged, not fatal (the run's result stands; a rerun of the sweep
    writes the missing export)."""
    try:
        if export_run(run_dir) is None:
            log.warning("%s: no checkpoints/last.ckpt to export", run_id)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded; its export is retried by a rerun
        log.warning("%s: could not export its weights (%s); rerun the sweep to write %s", run_id, _short(exc),
                    run_dir / EXPORT_DIR)


def backfill_exports(specs: list[RunSpec], sweep_dir: str | os.PathLike, rows: dict[str, dict]) -> int:
    """Export every finished (ok) run of `specs` that lacks its export; returns how many were written."""
    written = 0
    for spec in specs:
        run_dir = run_dir_of(spec, sweep_dir)
        if rows.get(spec.run_id, {}).get("status") == "ok" and not has_export(run_dir):
            log.info("%s: writing its missing export", spec.run_id)
            _export_quietly(spec.run_id, run_dir)
            written += has_export(run_dir)
    return written


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").strip()
    return text[:400]


def execute_run(spec: RunSpec, sweep_dir: str | os.PathLike, callbacks=(), datamodule=None, record: bool = True,
                train_fn=None) -> dict:
    """Train one run (or resume it, or read its finished result) and record its row; returns the row.

    Never raises for a failed run (it is recorded as failed); KeyboardInterrupt propagates.
    """
    train_fn = train_fn or trainlib.train_run
    sweep_dir = Path(sweep_dir).resolve()
    run_dir = run_dir_of(spec, sweep_dir)
    start = time.perf_counter()
    resumed_from = 0
    try:
        _check_identity(spec, run_dir)
        if not (run_dir / "result.json").exists():
            point = resume_point(run_dir)  # the checkpoint train_fn resumes from
            if point is not None:
                resumed_from = point.step
                log.info("%s: resuming from its checkpoint at step %d", spec.run_id, point.step)
        # Tracker tags (train.loggers): the sweep, the plan row's budget, size, parameters and tokens.
        tags = sweep_tags(sweep_dir.name, spec.budget, spec.run_id, sweep_dir=sweep_dir, size=spec.size,
                          params=spec.params, tokens=spec.tokens)
        result = train_fn(spec.run_config, run_dir, callbacks=list(callbacks), progress=False, datamodule=datamodule,
                          tags=tags)
        status, error = result.status, result.error
        if status == "ok" and not math.isfinite(result.val_loss):
            status, error = "failed", f"non-finite validation loss {result.val_loss}"
        if status == "ok" and is_rank_zero() and exports_enabled(sweep_dir) and not has_export(run_dir):
            _export_quietly(spec.run_id, run_dir)
        row = _result_row(
            spec, run_dir, status, tokens=result.tokens, flops=result.flops, flops_planned=result.flops_planned,
            val_loss=result.val_loss, val_bpn=result.val_bpn, steps=result.steps, resumed_from_step=resumed_from,
            tokens_per_param=result.tokens / max(1, result.params), params=result.params,
            params_non_embedding=result.params_non_embedding, wall_s=round(result.wall_s, 2), error=error,
            **{c: result.metrics[f"val/{c}"] for c in USAGE_COLUMNS if f"val/{c}" in result.metrics},
        )
    except KeyboardInterrupt:
        raise
    except RunLocked:  # another process trains this run: it records the row, not us
        raise
    except Exception as exc:
        full = _disk_full(exc)
        if is_rank_zero():
            full = _try_write(run_dir / "error.log", traceback.format_exc()) or full
        log.error("%s failed: %s", spec.run_id, _short(exc))
        row = _result_row(spec, run_dir, "failed", error=_short(exc), resumed_from_step=resumed_from,
                          wall_s=round(time.perf_counter() - start, 2))
        if full is not None:  # every later run would fail the same way: record what fits, then stop
            if record and is_rank_zero():
                _try_record(sweep_dir / "results.csv", row)
            raise DiskFull(f"{full.filename or sweep_dir}: the disk is full ({full.strerror}); {spec.run_id} is "
                           "recorded as failed where that was possible; free space and rerun with --retry-failed") from None
    if record and is_rank_zero():
        try:
            record_result(sweep_dir / "results.csv", row)
        except OSError as exc:
            if _disk_full(exc) is None:
                raise
            raise DiskFull(f"{sweep_dir / 'results.csv'}: the disk is full ({exc.strerror}); {spec.run_id} "
                           f"finished ({row['status']}) but could not be recorded; free space and rerun") from None
    return row


class DiskFull(OSError):
    """The sweep's disk is full: the sweep stops with one line (what could be recorded was)."""


def _disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error behind `exc` (itself or its cause), if any."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _try_write(path: Path, text: str) -> OSError | None:
    """Best effort (a failure handler must not fail): returns the disk-full error, if that is what stopped it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as exc:
        log.warning("could not write %s: %s", path, exc.strerror or exc)
        return _disk_full(exc)
    return None


def _try_record(path: Path, row: dict) -> None:
    try:
        record_result(path, row)
    except OSError as exc:
        log.warning("could not record %s in %s: %s", row["run_id"], path, exc.strerror or exc)


def describe(row: dict) -> str:
    """One readable line per finished run."""
    if row.get("status") != "ok":
        return f"{row['run_id']}: FAILED ({row.get('error') or 'no error recorded'})"
    params, tokens = float(row["params"]), float(row["tokens"])
    resumed = int(float(row.get("resumed_from_step") or 0))
    return (f"{row['run_id']}: val {float(row['val_loss']):.4f} nats/nt ({float(row['val_bpn']):.4f} bits/nt), "
            f"{params / 1e6:.3g}M params, {tokens / 1e6:.3g}M tokens, {float(row['flops']):.3g} FLOPs, "
            f"{float(row['wall_s']):.0f} s" + (f", resumed from step {resumed}" if resumed > 0 else ""))


# ------------------------------------------------------------------------------------ progress
def step_bar_callback(bar):
    """A Lightning callback moving a tqdm bar over the current run's optimizer steps."""
    from lightning.pytorch.callbacks import Callback

    class _StepBar(Callback):
        def on_train_start(self, trainer, pl_module):
            bar.reset(total=trainer.max_steps)
            bar.update(trainer.global_step)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            bar.n = trainer.global_step
            loss = trainer.callback_metrics.get("loss")
            if loss is not None:
                bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)
            bar.refresh()

    return _StepBar()


# ------------------------------------------------------------------------------------ worker CLI
def worker_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweeps.runner", description="Run one planned run of a sweep.")
    parser.add_argument("--sweep-dir", required=True, help="the sweep directory (holds plan.json)")
    parser.add_argument("--run-id", required=True, help="the run to execute")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_lightning()
    specs = {s.run_id: s for s in read_plan(args.sweep_dir)}
    if args.run_id not in specs:
        print(f"error: run {args.run_id!r} is not in {Path(args.sweep_dir) / 'plan.json'}", file=sys.stderr)
        return 2

    try:
        row = execute_run(specs[args.run_id], args.sweep_dir)
    except TrainingStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return TrainingStopped.exit_code
    except (RunLocked, DiskFull) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if is_rank_zero():
        log.info("%s (%d training process%s)", describe(row), world, "" if world == 1 else "es")
    return 0 if row["status"] == "ok" else 1


def quiet_lightning() -> None:
    """Lightning's per-run banners (GPU available, LOCAL_RANK, ...) drown the sweep's own log."""
    import warnings

    import lightning.pytorch  # noqa: F401  (importing it sets its loggers to INFO: import first, then quiet)

    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*GPU available but not used.*", ".*exists and is not empty.*",
                    ".*srun.*", ".*Checkpoint directory.*exists and is not empty.*", ".*LeafSpec.*",
                    ".*sync_dist=True.*"):
        warnings.filterwarnings("ignore", message=pattern)


if __name__ == "__main__":
    sys.exit(worker_main())
