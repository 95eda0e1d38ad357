"""Launchers: where and how the runs of a sweep execute.

- `local` (default): one run after another in this process. A multi-device run (`--devices N` or
  `--num-nodes M` > 1) runs in a fresh worker process per run (`python -m sweeps.runner`), so that
  Lightning's DDP/FSDP launcher starts (and, on failure, tears down) its ranks for that run alone.
  With `--jobs N` (N > 1), N worker processes run at once, one CPU thread each by default: the CPU
  ladders' models are far too small for intra-op threads to pay (see `runner.cpu_threads`), so N
  single-threaded runs use N cores where one run could not. The longest runs (most tokens) start first.
- `local-gpus`: a work queue over the GPUs of this machine: `--gpus N` GPUs, `N // devices` worker
  processes at a time, each with its own `CUDA_VISIBLE_DEVICES`; a finished worker's GPUs take the next
  run. (On a CPU-only machine the workers train on the CPU, which is how the tests exercise it.)
- `slurm`: one submitit job per run, or one job array (`--slurm-array`); each job has `--num-nodes`
  nodes x `--devices` tasks (one per GPU: Lightning reads its ranks from SLURM). Jobs are requeued on
  timeout or preemption and resume from their last checkpoint (`submitit.helpers.Checkpointable`).
  `--slurm-executor local` runs the same jobs through submitit's LocalExecutor (subprocesses on this
  machine) and `debug` in this process: for tests, or a machine without SLURM.

Every worker records its own row in results.csv (file-locked); the launcher records a failed row for a
worker that died without one (killed, out of memory, timed out).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sweeps.plan import RunSpec
from sweeps.runner import (
    _result_row,
    describe,
    execute_run,
    record_result,
    results_by_id,
    run_dir_of,
    step_bar_callback,
)

log = logging.getLogger("sweeps")

LAUNCHERS = ("local", "local-gpus", "slurm")
REPO_ROOT = Path(__file__).resolve().parents[1]


def _bar(total: int, initial: int, desc: str, enabled: bool, position: int = 0):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="run", disable=not enabled, position=position,
                leave=True, dynamic_ncols=True)


def _worker_env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Never inherit a parent's distributed identity (nor a SLURM allocation's, e.g. a sweep started inside
    # sbatch): the worker's Lightning starts its own ranks.
    for key in [k for k in env if k.startswith("SLURM_")] + [
            "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT", "GROUP_RANK",
            "LOCAL_WORLD_SIZE"]:
        env.pop(key, None)
    env.update(extra or {})
    return env


def _finish(spec: RunSpec, sweep_dir: Path, returncode: int | None, why: str = "") -> dict:
    """The row a worker wrote, or a failed row when it wrote none. A worker stopped by SIGTERM (exit 143,
    or killed by it: Popen's returncode -SIGTERM) stops the sweep instead: its run is not failed, a rerun
    resumes it."""
    from dnahnet.rundir import TrainingStopped

    row = results_by_id(sweep_dir / "results.csv").get(spec.run_id)
    if row is None and returncode in (TrainingStopped.exit_code, -signal.SIGTERM):
        raise TrainingStopped(f"{spec.run_id}: its worker was stopped by SIGTERM; rerun the same command to resume")
    if row is None:
        error = why or f"worker exited with code {returncode} without recording a result"
        row = _result_row(spec, run_dir_of(spec, sweep_dir), "failed", error=error)
        record_result(sweep_dir / "results.csv", row)
    return row


# ------------------------------------------------------------------------------------ local
def _log_path(spec: RunSpec, sweep_dir) -> Path:
    """runs/<run_id>.log (not `with_suffix`: run ids hold dots, e.g. "-lr0.003" or "-v3.2")."""
    run_dir = run_dir_of(spec, sweep_dir)
    return run_dir.with_name(run_dir.name + ".log")


def run_local(specs: list[RunSpec], sweep_dir: Path, done: int, total: int, progress: bool = True,
              threads: int | None = None, jobs: int = 1) -> list[dict]:
    """One run after another; multi-device runs each in a fresh worker process. `threads`: CPU threads
    per process (None: torch's default). `jobs` > 1: that many single-device runs at once, each in its
    own worker process (a work queue, longest runs first)."""
    import torch

    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if jobs > 1:
        if any(s.world_size > 1 for s in specs):
            raise ValueError("--jobs runs single-device runs side by side; with --devices/--num-nodes > 1 use --jobs 1")
        # Longest processing time first: the queue then ends with short runs filling the gaps.
        ordered = sorted(specs, key=lambda s: s.tokens, reverse=True)
        threads_env = {"OMP_NUM_THREADS": str(threads or 1)}
        slots = [(f"job {i}", threads_env) for i in range(jobs)]
        return _run_queue(ordered, sweep_dir, done, total, slots, f"runs ({jobs} at once)", progress)
    rows = []
    bar = _bar(total, done, "runs", progress)
    steps = _bar(0, 0, "steps", progress, position=1)
    steps.unit = "step"
    saved_threads = torch.get_num_threads()
    env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
    try:
        if threads:
            torch.set_num_threads(threads)
        for spec in specs:
            bar.set_description(f"runs ({spec.run_id})")
            if spec.world_size > 1:
                row = _run_subprocess(spec, sweep_dir, env)
            else:
                row = execute_run(spec, sweep_dir, callbacks=[step_bar_callback(steps)] if progress else [])
            rows.append(row)
            (log.info if row["status"] == "ok" else log.warning)("[%d/%d] %s", done + len(rows), total, describe(row))
            bar.update(1)
    finally:
        torch.set_num_threads(saved_threads)
        steps.close()
        bar.close()
    return rows


def _worker_cmd(spec: RunSpec, sweep_dir: Path) -> list[str]:
    return [sys.executable, "-m", "sweeps.runner", "--sweep-dir", str(sweep_dir), "--run-id", spec.run_id]


def _run_subprocess(spec: RunSpec, sweep_dir: Path, env: dict | None = None) -> dict:
    log_path = _log_path(spec, sweep_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as fh:
        proc = subprocess.Popen(_worker_cmd(spec, sweep_dir), env=_worker_env(env), cwd=REPO_ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = proc.wait()
        except BaseException:
            _terminate(proc)
            raise
    return _finish(spec, sweep_dir, code, "" if code == 0 else f"worker exited with code {code} (log: {log_path})")


def _terminate(proc: subprocess.Popen) -> None:
    """Stop a worker we started (and its Lightning ranks: its own process group)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# ------------------------------------------------------------------------------------ local GPUs
def run_local_gpus(specs: list[RunSpec], sweep_dir: Path, done: int, total: int, gpus: int | None = None,
                   progress: bool = True, poll_s: float = 0.5, threads: int | None = None) -> list[dict]:
    """A work queue over `gpus` GPUs: one worker process per run, `devices` GPUs per worker."""
    if gpus is None:
        import torch

        gpus = torch.cuda.device_count()
    if gpus < 1:
        raise ValueError("--launcher local-gpus needs --gpus N (N >= 1); no CUDA device was found")
    per_run = max(1, specs[0].train.get("devices", 1)) if specs else 1
    if specs and any(s.train.get("num_nodes", 1) > 1 for s in specs):
        raise ValueError("--launcher local-gpus runs on one machine: --num-nodes must be 1 (use --launcher slurm)")
    if per_run > gpus:
        raise ValueError(f"--devices {per_run} per run but only --gpus {gpus}")
    n_slots = gpus // per_run
    # CPU threads per worker: share the cores instead of oversubscribing them (spinning OpenMP threads of
    # concurrent workers slow each other down by orders of magnitude on a small machine).
    per_worker = threads or (None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // n_slots))
    threads_env = {"OMP_NUM_THREADS": str(per_worker)} if per_worker else {}
    slots = []
    for i in range(n_slots):
        gpu_ids = ",".join(map(str, range(i * per_run, (i + 1) * per_run)))
        slots.append((f"GPU(s) [{gpu_ids.replace(',', ', ')}]", {"CUDA_VISIBLE_DEVICES": gpu_ids, **threads_env}))
    return _run_queue(specs, sweep_dir, done, total, slots, f"runs on {gpus} GPU(s)", progress, poll_s)


def _run_queue(specs: list[RunSpec], sweep_dir: Path, done: int, total: int, slots: list[tuple[str, dict]],
               desc: str, progress: bool, poll_s: float = 0.5) -> list[dict]:
    """Run `specs` in worker processes, one per free slot; a slot is (its name for the log, the
    environment its worker gets). A finished worker's slot takes the next run."""
    free, queue, running, rows = list(slots), deque(specs), {}, []
    bar = _bar(total, done, desc, progress)
    try:
        while queue or running:
            while queue and free:
                spec, (name, slot_env) = queue.popleft(), free.pop(0)
                log_path = _log_path(spec, sweep_dir)
                log_path.parent.mkdir(parents=True, exist_ok=True)
                fh = open(log_path, "ab")
                proc = subprocess.Popen(_worker_cmd(spec, sweep_dir), env=_worker_env(slot_env), cwd=REPO_ROOT,
                                        stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
                running[proc] = (spec, (name, slot_env), fh, log_path)
                log.info("started %s on %s (pid %d, log %s)", spec.run_id, name, proc.pid, log_path)
            time.sleep(poll_s)
            for proc in [p for p in running if p.poll() is not None]:
                spec, slot, fh, log_path = running.pop(proc)
                fh.close()
                free.append(slot)
                code = proc.returncode
                row = _finish(spec, sweep_dir, code, "" if code == 0 else f"worker exited with code {code} (log: {log_path})")
                rows.append(row)
                (log.info if row["status"] == "ok" else log.warning)("[%d/%d] %s", done + len(rows), total, describe(row))
                bar.update(1)
    except BaseException:
        for proc, (_, _, fh, _) in running.items():
            _terminate(proc)
            fh.close()
        raise
    finally:
        bar.close()
    return rows


# ------------------------------------------------------------------------------------ SLURM
@dataclass
class SlurmOptions:
    partition: str | None = None  # --slurm-partition
    time_min: int = 24 * 60  # --slurm-time (minutes, or [D-]HH:MM[:SS])
    gpus_per_node: int | None = None  # --slurm-gpus-per-node (default: --devices)
    cpus_per_task: int = 8  # --slurm-cpus-per-task
    mem_gb: int | None = None  # --slurm-mem-gb
    array: bool = False  # --slurm-array: one job array instead of one job per run
    array_parallelism: int = 64  # --slurm-array-parallelism: array tasks running at once
    executor: str = "slurm"  # "slurm" | "local" (submitit LocalExecutor) | "debug" (in process)
    wait: bool = True  # wait for the jobs (progress bar), else submit and return
    extra: dict | None = None  # further submitit parameters (e.g. {"slurm_account": "..."})


def parse_slurm_time(text: str | int) -> int:
    """"90" -> 90 min; "12:00:00" -> 720; "1-00:00" -> 1440."""
    if isinstance(text, int):
        return text
    s = str(text).strip()
    try:
        if ":" not in s and "-" not in s:
            return int(float(s))
        days, _, rest = s.rpartition("-") if "-" in s else ("0", "", s)
        parts = [int(p) for p in rest.split(":")]
        if len(parts) == 2:
            parts = parts + [0]
        h, m, sec = parts
        return int(days or 0) * 1440 + h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise ValueError(f"--slurm-time {text!r}: expected minutes or [D-]HH:MM[:SS]") from None


class RunJob:
    """The callable a SLURM job runs: one planned run. Requeued (resuming from its checkpoint) when the
    job times out or is preempted."""

    def __call__(self, sweep_dir: str, spec_json: dict) -> dict:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        from sweeps.runner import quiet_lightning

        quiet_lightning()
        row = execute_run(RunSpec.from_json(spec_json), sweep_dir)
        log.info("%s", describe(row))
        return row

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(RunJob(), *args, **kwargs)


def build_executor(sweep_dir: Path, specs: list[RunSpec], opts: SlurmOptions):
    """A configured submitit executor for the runs (one job = one run)."""
    try:
        import submitit
    except ImportError:  # pragma: no cover - optional dependency
        raise ValueError("--launcher slurm needs submitit: pip install submitit (or .[slurm])") from None
    if opts.executor not in ("slurm", "local", "debug"):
        raise ValueError(f"--slurm-executor must be slurm|local|debug, got {opts.executor!r}")
    devices = max(s.train.get("devices", 1) for s in specs)
    nodes = max(s.train.get("num_nodes", 1) for s in specs)
    try:
        executor = submitit.AutoExecutor(folder=str(sweep_dir / "slurm" / "%j"), cluster=opts.executor)
    except RuntimeError as exc:  # submitit: 'Could not detect "srun"'
        raise ValueError(f"--launcher slurm: {exc} (on a machine without SLURM use --slurm-executor local)") from None
    # On SLURM each job has one task per device and Lightning reads its ranks from SLURM; on this machine
    # (local/debug) a job is one process and Lightning starts the ranks of a multi-device run itself.
    params = dict(timeout_min=opts.time_min, nodes=nodes if opts.executor == "slurm" else 1,
                  tasks_per_node=devices if opts.executor == "slurm" else 1, name=f"isoflop-{specs[0].family}")
    if opts.executor == "slurm":
        params["cpus_per_task"] = opts.cpus_per_task
        params["gpus_per_node"] = opts.gpus_per_node if opts.gpus_per_node is not None else devices
        params["slurm_setup"] = [f"export PYTHONPATH={REPO_ROOT}:$PYTHONPATH"]
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.array:
            params["slurm_array_parallelism"] = opts.array_parallelism
        if opts.mem_gb:
            params["mem_gb"] = opts.mem_gb
    params.update(opts.extra or {})
    executor.update_parameters(**params)
    return executor


def submit_jobs(specs: list[RunSpec], sweep_dir: Path, opts: SlurmOptions, threads: int | None = None):
    """Submit one job per run (or one array); returns [(spec, job)] and writes DIR/slurm_jobs.csv."""
    import csv

    import torch

    executor = build_executor(sweep_dir, specs, opts)
    # Jobs unpickle `sweeps`: make it importable; local jobs inherit this environment at submission.
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "OMP_NUM_THREADS")}
    os.environ["PYTHONPATH"] = _worker_env()["PYTHONPATH"]
    if opts.executor == "local" and threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    if opts.executor == "debug" and threads:  # debug jobs run in this process
        torch.set_num_threads(threads)
    args = [(str(sweep_dir), s.to_json()) for s in specs]
    try:
        if opts.array:
            with executor.batch():
                jobs = [executor.submit(RunJob(), *a) for a in args]
        else:
            jobs = [executor.submit(RunJob(), *a) for a in args]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    path = sweep_dir / "slurm_jobs.csv"
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(["run_id", "job_id", "submitted"])
        for s, j in zip(specs, jobs, strict=True):
            w.writerow([s.run_id, j.job_id, time.strftime("%Y-%m-%d %H:%M:%S")])
    log.info("submitted %d %s (%s); job ids in %s", len(jobs), "array tasks" if opts.array else "jobs",
             opts.executor, path)
    return list(zip(specs, jobs, strict=True))


def run_slurm(specs: list[RunSpec], sweep_dir: Path, done: int, total: int, opts: SlurmOptions,
              progress: bool = True, poll_s: float = 2.0, threads: int | None = None) -> list[dict]:
    submitted = submit_jobs(specs, sweep_dir, opts, threads if opts.executor != "slurm" else None)
    if not opts.wait:
        return []
    rows, pending = [], list(submitted)
    bar = _bar(total, done, f"runs ({opts.executor})", progress)
    try:
        while pending:
            # A debug job runs in this process when its result is asked for: ask in order.
            ready = pending[:1] if opts.executor == "debug" else [p for p in pending if p[1].done()]
            for spec, job in ready:
                pending.remove((spec, job))
                try:
                    result = job.result()
                    why = ""
                    if isinstance(result, list):  # multi-task jobs return one row per task
                        result = result[0]
                except Exception as exc:  # the job died (timeout without requeue, node failure, ...)
                    why = f"job {job.job_id} failed: {str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__}"
                row = _finish(spec, sweep_dir, None, why or f"job {job.job_id} recorded no result")
                rows.append(row)
                (log.info if row["status"] == "ok" else log.warning)("[%d/%d] %s", done + len(rows), total, describe(row))
                bar.update(1)
            if pending:
                time.sleep(poll_s)
    finally:
        bar.close()
    return rows
