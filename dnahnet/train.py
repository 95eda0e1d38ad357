"""Train one model: the single-run CLI and the `train_run` function the sweeps call.

    python -m dnahnet.train --model transformer --preset tiny --out runs/tiny-tf \
        train.max_steps=300 data.seq_len=512 model.n_layers=4

Every run directory holds `config.yaml` (the resolved config), `metrics.csv` (Lightning's CSV log),
`checkpoints/last.ckpt` (the resume point) and, once finished, `result.json`. Rerunning the same command
resumes from the newest readable checkpoint (a truncated one is moved aside as `*.corrupt-*.ckpt`); a
finished run is not retrained. Rerunning with other settings is refused, naming the keys that differ
(`--new-run` keeps the old run as OUT.old-<time> and starts afresh). One process at a time trains into a
run directory (`.lock`; a second one is refused, naming the holder). Stopped by SIGTERM (a SLURM time
limit, preemption), the command exits 143 saying where it stopped; rerunning it resumes. Under SLURM with
`#SBATCH --signal=USR1@90`, Lightning saves `hpc_ckpt_*.ckpt` and requeues the job, which resumes from it.

Exit codes: 0 done, 2 refused (bad arguments or config, a held lock, a bad checkpoint or one that carries code,
a diverged run, a full disk: one `error:` line), 130 stopped by Ctrl-C (SIGINT), 143 stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dnahnet import checkpoint as ckptlib
from dnahnet import fileio, run_config, tracking
from dnahnet import typed_config as cfglib
from dnahnet import window_losses as wl
from dnahnet.data.module import GenomeDataModule
from dnahnet.lit import LitLM
from dnahnet.registry import build_model_from_config, list_families
from dnahnet.run_config import RunConfig
from dnahnet.rundir import (
    RunRefused,
    TrainingStopped,
    check_same_run,
    directory_lock,
    is_rank_zero,
    move_run_aside,
    resume_point,
    stop_on_sigterm,
)
from dnahnet.schedules import SCHEDULES
from dnahnet.tokenizer import VOCAB_SIZE
from dnahnet.tracking import check_trackers
from dnahnet.train_config import TrainConfig

log = logging.getLogger("dnahnet.train")


@dataclass
class RunResult:
    status: str  # "ok" or "failed"
    val_loss: float  # nats per nucleotide on the fixed validation windows
    val_bpn: float  # bits per nucleotide
    tokens: int  # training tokens seen
    flops: float  # training FLOPs (from measured quantities, e.g. dnaHNet's selection rates)
    flops_planned: float  # training FLOPs from the analytic per-token count
    params: int
    params_non_embedding: int
    steps: int
    wall_s: float
    error: str = ""
    metrics: dict = field(default_factory=dict)  # final validation metrics


def _precision(train_cfg: TrainConfig) -> str:
    if train_cfg.precision != "auto":
        return train_cfg.precision
    return "bf16-mixed" if _uses_cuda(train_cfg) else "32-true"


def _strategy(train_cfg: TrainConfig):
    """Lightning's strategy for `train.strategy`.

    `fsdp` is FSDP2, the same as `fsdp2` (ModelParallelStrategy + `LitLM.configure_model`'s fully_shard):
    Lightning's FSDP1 strategy cannot train these models as configured. Its precision plugin refuses
    gradient-norm clipping (`FSDPPrecision.clip_grad_by_norm` raises at the first optimizer step; clipping
    is on by default, train.grad_clip=1.0), and its bf16-mixed policy casts parameters *and buffers* to bf16,
    including what must stay fp32 (W_res, Mamba-2's A_log / dt_bias / D, rotary inv_freq). FSDP2 clips
    through `torch.nn.utils.clip_grad_norm_` on DTensors and casts only the groups we choose
    (dnahnet/sharding.py)."""
    name = train_cfg.strategy
    if name in ("auto", "ddp", "ddp_spawn"):
        return name
    if name == "fsdp":
        log.info("train.strategy=fsdp runs as FSDP2 (fully_shard), as fsdp2: FSDP1 refuses gradient clipping "
                 "and casts fp32-kept parameters and buffers")
        name = "fsdp2"
    if name == "fsdp2":
        from lightning.pytorch.strategies import ModelParallelStrategy

        return ModelParallelStrategy(data_parallel_size=train_cfg.devices * train_cfg.num_nodes, tensor_parallel_size=1)
    raise ValueError(f"train.strategy must be auto|ddp|fsdp|fsdp2, got {name!r}")


def _final_checkpoint(every_n_steps: int):
    """A callback that makes `checkpoints/last.ckpt` hold the weights training ended with.

    `ModelCheckpoint(every_n_train_steps=K)` saves only at multiples of K, so a run of 210 steps with K = 48
    would end with last.ckpt -> step=192.ckpt, and export, generation and every evaluation would score other
    weights than those the run's reported validation loss belongs to. At the end of training this saves
    `step=<final>.ckpt` (unless that step was just saved), points last.ckpt at it and keeps the two newest
    step checkpoints, as the periodic saves do."""
    import shutil

    from lightning.pytorch.callbacks import Callback

    class FinalCheckpoint(Callback):
        def on_train_end(self, trainer, pl_module):
            if trainer.global_step == 0 or trainer.global_step % max(1, every_n_steps) == 0:
                return  # no step taken, or the periodic save already holds the final weights
            ckpt_dir = Path(trainer.default_root_dir) / "checkpoints"
            final = ckpt_dir / f"step={trainer.global_step}.ckpt"
            trainer.save_checkpoint(final)  # a full (resumable) checkpoint; every rank: sharded strategies save together
            if trainer.is_global_zero:
                link = ckpt_dir / "last.ckpt"
                tmp = ckpt_dir / f".last.{os.getpid()}.tmp"
                tmp.unlink(missing_ok=True)
                os.symlink(final.name, tmp)
                os.replace(tmp, link)  # last.ckpt -> the final step, atomically
                steps = sorted((ckptlib.step_of_name(p), p) for p in ckpt_dir.glob("step=*.ckpt")
                               if ckptlib.step_of_name(p) is not None)
                for _, old in steps[:-2]:
                    shutil.rmtree(old) if old.is_dir() else old.unlink()
            trainer.strategy.barrier()

    return FinalCheckpoint()


def _uses_cuda(train_cfg: TrainConfig) -> bool:
    return train_cfg.accelerator in ("gpu", "cuda") or (train_cfg.accelerator == "auto" and torch.cuda.is_available())


def _enable_tf32(train_cfg: TrainConfig) -> bool:
    """TF32 for float32 matmuls and convolutions on CUDA (what stays fp32 under bf16-mixed: W_res, the torch
    SSD path's einsums; everything under 32-true): ~8x the fp32 tensor-core rate at a 10-bit mantissa,
    below the noise of training. Set once per process when a run uses CUDA; returns whether it was set."""
    if not _uses_cuda(train_cfg):
        return False
    torch.set_float32_matmul_precision("high")  # TF32 matmuls (torch's switch across versions)
    torch.backends.cudnn.allow_tf32 = True
    return True


def build_trainer(train_cfg: TrainConfig, run_dir: Path, callbacks=(), progress: bool = True,
                  resume_step: int | None = None, tags: dict | None = None, params: dict | None = None):
    """The run's Trainer. Its loggers (`dnahnet.tracking`): metrics.csv always (a resumed run keeps the rows
    before `resume_step`), then the trackers of `train.loggers`, tagged with `tags`, given `params`."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    # The two newest checkpoints are kept (step=N.ckpt) and last.ckpt links to the newest: a checkpoint cut
    # short (a full disk, a kill mid-write) leaves the previous one to resume from, at one write per save.
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", filename="{step}", monitor="step", mode="max", save_top_k=2,
        save_last="link", every_n_train_steps=max(1, train_cfg.ckpt_every), save_on_train_epoch_end=False,
    )
    _enable_tf32(train_cfg)
    return L.Trainer(
        accelerator=train_cfg.accelerator,
        accumulate_grad_batches=max(1, train_cfg.accumulate_grad_batches),
        devices=train_cfg.devices,
        num_nodes=train_cfg.num_nodes,
        strategy=_strategy(train_cfg),
        precision=_precision(train_cfg),
        max_steps=train_cfg.max_steps,
        max_epochs=-1,
        gradient_clip_val=train_cfg.grad_clip or None,
        # Validation every `val_every` steps, and always at the last step (the run's reported loss).
        val_check_interval=min(train_cfg.val_every or train_cfg.max_steps, train_cfg.max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=train_cfg.log_every,
        logger=tracking.build_loggers(train_cfg, run_dir, resume_step, tags=tags, params=params),
        callbacks=[checkpoint, _final_checkpoint(train_cfg.ckpt_every), *callbacks],
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )


# ---------------------------------------------------------------------- config checks
_POSITIVE_MODEL_FIELDS = ("d_model", "n_layers", "n_heads", "vocab_size", "d_state", "headdim", "expand",
                          "chunk_size", "ema_chunk_size", "mlp_multiple")
# Float fields that are scales, rates or standard deviations (a negative one fails deep inside the model's
# construction, or trains something else); li_p_init is a log-pole and may be negative.
_NONNEGATIVE_MODEL_FLOATS = ("init_std", "embedding_std", "alpha", "rotary_fraction", "rotary_base", "ratios",
                             "lr_multipliers", "mr_decay_min", "mr_decay_max", "li_gamma_min", "li_gamma_max",
                             "mr_small_init", "li_residue_scale", "norm_eps")
_PRECISIONS = ("auto", "32", "32-true", "16", "16-mixed", "16-true", "bf16", "bf16-mixed", "bf16-true", "64",
               "64-true", "transformer-engine", "transformer-engine-float16")


def _numbers(value):
    """The numbers in a config value (a number, or nested lists of them)."""
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)


def check_configs(run: RunConfig) -> None:
    """Refuse degenerate settings before anything is written or trained (RunRefused naming the key)."""
    t, model_cfg, data_cfg = run.train, run.model, run.data
    bad = []
    if t.max_steps < 1:
        bad.append(f"train.max_steps={t.max_steps}: must be >= 1 (a run of no step would be recorded as trained)")
    for name in ("lr", "min_lr_ratio", "warmup_fraction", "decay_fraction", "weight_decay", "beta1", "beta2",
                 "eps", "grad_clip"):
        value = getattr(t, name)
        if not math.isfinite(value) or value < 0:
            bad.append(f"train.{name}={value}: must be a finite number >= 0")
    if t.lr <= 0 and math.isfinite(t.lr):
        bad.append(f"train.lr={t.lr}: must be > 0")
    for name in ("warmup_fraction", "decay_fraction", "beta1", "beta2", "min_lr_ratio"):
        value = getattr(t, name)
        if math.isfinite(value) and value > 1:
            bad.append(f"train.{name}={value}: must lie in [0, 1]")
    for name, low in (("val_every", 0), ("ckpt_every", 0), ("log_every", 1), ("devices", 1), ("num_nodes", 1),
                      ("accumulate_grad_batches", 1)):
        if getattr(t, name) < low:
            bad.append(f"train.{name}={getattr(t, name)}: must be >= {low}")
    if t.schedule not in SCHEDULES:
        bad.append(f"train.schedule={t.schedule!r}: must be one of {', '.join(SCHEDULES)}")
    if str(t.precision) not in _PRECISIONS:
        bad.append(f"train.precision={t.precision!r}: must be one of auto, 32-true, bf16-mixed, 16-mixed, ...")
    if t.strategy not in ("auto", "ddp", "ddp_spawn", "fsdp", "fsdp2"):
        bad.append(f"train.strategy={t.strategy!r}: must be auto, ddp, fsdp or fsdp2")
    if t.strategy in ("fsdp", "fsdp2") and str(t.precision) in ("16", "16-mixed"):
        bad.append(f"train.precision={t.precision!r}: train.strategy={t.strategy} (FSDP2) takes 32-true, bf16-mixed "
                   "or bf16-true")
    if t.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
        bad.append(f"train.accelerator={t.accelerator!r}: must be auto, cpu, gpu or cuda")
    if data_cfg.n_val_windows < 1:
        bad.append(f"data.n_val_windows={data_cfg.n_val_windows}: a run needs validation windows (its reported "
                   "loss); use >= 1")
    for name, value in cfglib.to_dict(model_cfg).items():
        numbers = list(_numbers(value))
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            bad.append(f"model.{name}={value}: must be finite")
        elif name != "window" and any(isinstance(v, int) and v < 0 for v in numbers):
            bad.append(f"model.{name}={value}: must not be negative")
        elif name in _NONNEGATIVE_MODEL_FLOATS and any(v < 0 for v in numbers):
            bad.append(f"model.{name}={value}: must not be negative")
        elif name in _POSITIVE_MODEL_FIELDS and any(v == 0 for v in numbers):
            bad.append(f"model.{name}={value}: must be positive")
    vocab = getattr(model_cfg, "vocab_size", VOCAB_SIZE)
    if isinstance(vocab, int) and 0 < vocab < VOCAB_SIZE:  # token ids >= vocab_size would index past the embedding
        bad.append(f"model.vocab_size={vocab}: the tokenizer has {VOCAB_SIZE} ids (A C G T N <pad> <bos> <eos>); use "
                   f">= {VOCAB_SIZE}")
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        bad.append(f"train.accelerator={t.accelerator}: no CUDA GPU is visible on this machine (use cpu or auto)")
    elif t.accelerator == "mps" and not torch.backends.mps.is_available():
        bad.append("train.accelerator=mps: MPS is not available on this machine (use cpu or auto)")
    try:  # unknown trackers, or a tracker package not installed (names the extra)

        check_trackers(t.loggers)
    except ValueError as exc:
        bad.append(str(exc))
    if bad:
        raise RunRefused(f"{bad[0]}" + (f" (and {len(bad) - 1} more: {'; '.join(bad[1:3])})" if len(bad) > 1 else ""))


def check_model_builds(run: RunConfig) -> None:
    """Build the model on the meta device (no memory, no initialisation cost): a config that only its
    constructor rejects (n_heads not dividing d_model, a negative width, a layout that does not parse) is
    refused here, before the run directory exists, rather than as a traceback from inside the run."""
    try:
        with torch.device("meta"):
            build_model_from_config(run.family, run.model)
    except (ValueError, KeyError, TypeError, RuntimeError, ZeroDivisionError, AssertionError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunRefused(f"model: the {run.family} model cannot be built from this config ({text})") from None


def _check_model(lit) -> None:
    counts = lit.model.param_counts()
    if counts.non_embedding <= 0:
        raise RunRefused(f"the model has {counts.total} parameters ({counts.non_embedding} outside the embedding): "
                         "check model.d_model / model.n_layers")


def _check_data(dm) -> None:
    """Open the data before training so that an empty split or too long a window fails now, not at the end."""
    if isinstance(dm, GenomeDataModule):
        try:
            dm.prepare_data()
            dm.setup("fit")
            _ = dm.train_windows
            val = dm.fixed_windows("val")
        except (ValueError, FileNotFoundError) as exc:
            raise RunRefused(f"data: {exc}") from None
        if val is None or len(val) == 0:
            raise RunRefused("data: no validation windows (the data has no validation genome, or "
                             "data.n_val_windows=0); a run needs them for its reported loss")
        return
    loader = dm.val_dataloader()
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise RunRefused("data: the validation dataloader is empty; a run needs validation windows")


# ---------------------------------------------------------------------- wall time and final metrics
def _wall_clock():
    """A callback whose checkpointed state is the run's training wall time so far, so that `wall_s` sums
    every resumed segment (time after an interrupted segment's last checkpoint is redone, so counted once)."""
    from lightning.pytorch.callbacks import Callback

    class WallClock(Callback):
        def __init__(self):
            self.before = 0.0  # seconds of earlier segments, restored from the checkpoint
            self.start = time.perf_counter()

        @property
        def state_key(self) -> str:  # the key of its state in a checkpoint's "callbacks"
            return "WallClock"

        def total(self) -> float:
            return self.before + time.perf_counter() - self.start

        def state_dict(self):
            return {"wall_s": self.total()}

        def load_state_dict(self, state_dict):
            self.before = float(state_dict.get("wall_s", 0.0))

    return WallClock()


def _logged_validation(run_dir: Path, final_step: int) -> dict | None:
    """The val/* metrics metrics.csv holds for the validation of the weights after `final_step` optimizer steps,
    the last of a run (None: none logged). Lightning logs a validation inside `fit` at row step final_step - 1
    and one by `validate` after `fit` at final_step; no later step exists in a finished run."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/loss") and r.get("step") not in (None, "")
                and int(float(r["step"])) in (final_step - 1, final_step)]
    if not rows:
        return None
    return {k: float(v) for k, v in rows[-1].items() if k.startswith("val/") and v not in (None, "")}


def _validate(trainer, lit, dm, log_metrics: bool = True) -> dict:
    """`trainer.validate` (its val/* metrics); `log_metrics=False` keeps it out of the loggers."""
    loggers = trainer.loggers
    if not log_metrics:
        trainer.loggers = []
    try:
        return {k: float(v) for k, v in trainer.validate(lit, datamodule=dm, verbose=False)[0].items()}
    finally:
        trainer.loggers = loggers


def _check_resume_model(point, run: RunConfig) -> None:
    """Refuse a resume checkpoint of another model (a dnaHNet checkpoint copied into a Transformer++ run's
    checkpoints/): Lightning would fail deep inside with "Unexpected key(s) in state_dict". Keys that do not
    change the weights (kernel backends) may differ, and so may fields one side does not know."""
    family, model_cfg = run.family, run.model
    hparams = (ckptlib.verify(point.path) or {}).get("hyper_parameters") or {}
    plain = lambda d: json.loads(json.dumps(d, default=str))  # noqa: E731 - tuples and lists compare equal
    theirs, ours = plain(hparams.get("model_config") or {}), plain(cfglib.to_dict(model_cfg))
    # Keys both know: a field added to the config since the checkpoint was written is not a difference.
    diffs = [k for k in sorted(set(theirs) & set(ours))
             if cfglib.identity_rule(type(model_cfg), k) is True and theirs[k] != ours[k]]
    if hparams.get("family") != family or diffs:
        what = (f"a {hparams.get('family')} model" if hparams.get("family") != family else
                f"a model with other settings ({', '.join(f'{k}: {theirs.get(k)!r}' for k in diffs[:3])})")
        raise RunRefused(f"{point.path}: a checkpoint of {what}, not of this run's {family} model; move it out of "
                         f"{point.path.parent} (or pass --new-run to start afresh)")


def _stopped_message(run_dir: Path, trainer, max_steps: int) -> str:
    point = ckptlib.find_resume_point(run_dir, set_aside_corrupt=False)
    where = f"its last checkpoint is at step {point.step}" if point else "it has no checkpoint yet"
    return (f"{run_dir}: stopped by SIGTERM at step {trainer.global_step} of {max_steps}; {where}; rerun the same "
            "command to resume")


# Training FLOPs per second one CPU core reached in the committed CPU sweeps (analysis/reference/cpu: 1e9-4e10
# by family and width): what a warning about a long CPU run assumes.
CPU_FLOPS_PER_S = 1e10
LONG_CPU_RUN_S = 600.0


def warn_long_cpu_run(train_cfg: TrainConfig, planned_flops: float, planned_tokens: int) -> bool:
    """Warn (and return True) when a run on the CPU plans more than ~10 minutes of training at the rate the
    committed CPU sweeps measured: the presets' default context (8192) makes a bare command run for hours."""
    on_cpu = train_cfg.accelerator == "cpu" or (train_cfg.accelerator == "auto" and not torch.cuda.is_available())
    seconds = planned_flops / CPU_FLOPS_PER_S
    if not on_cpu or seconds <= LONG_CPU_RUN_S:
        return False
    log.warning("a long run for a CPU: %d steps, %.3g tokens, %.3g training FLOPs (~%.1f h at %.0e FLOP/s); for "
                "a short run pass e.g. train.max_steps=100 data.seq_len=512", train_cfg.max_steps, planned_tokens,
                planned_flops, seconds / 3600, CPU_FLOPS_PER_S)
    return True


def train_run(run: RunConfig, run_dir: str | Path, *, new_run: bool = False, callbacks=(), progress: bool = True,
              datamodule=None, tags: dict | None = None) -> RunResult:
    """Train (or resume, or report when finished) the run `run` into `run_dir` and return its result.

    A run directory holding a run with other settings is refused, naming the keys (`check_same_run`), unless
    `new_run`: then it is kept as RUN.old-<time> and a new run starts. `datamodule`: data to train on instead of
    the run's genomes (tests); `tags`: what a sweep adds to the tracker tags of the run
    (`dnahnet.tracking.sweep_tags`). Raises RunRefused (bad config, no validation windows, an unsafe checkpoint,
    other settings), RunLocked (another process holds `run_dir`), TrainingStopped (SIGTERM; a rerun resumes)."""
    run_dir = Path(run_dir)
    if new_run or not (run_dir / "result.json").exists():  # (a finished run is reported whatever the code says now)
        check_configs(run)
        check_model_builds(run)
    # Rank 0 only: the other ranks of a multi-process run start once rank 0 trains in the new directory.
    if new_run and is_rank_zero() and (run_dir / "config.yaml").exists():
        log.warning("new run: the old run in %s is kept as %s", run_dir, move_run_aside(run_dir))
    lock = directory_lock(run_dir) if is_rank_zero() else contextlib.nullcontext()
    with lock:
        return _train_locked(run, run_dir, callbacks=callbacks, progress=progress, datamodule=datamodule, tags=tags)


def _train_locked(run: RunConfig, run_dir: Path, *, callbacks, progress: bool, datamodule, tags) -> RunResult:
    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    check_same_run(run_dir, run)
    result_path = run_dir / "result.json"
    if result_path.exists():
        log.info("%s already finished; skipping", run_dir)
        return RunResult(**json.loads(result_path.read_text()))
    clock = _wall_clock()
    train_cfg = run.train
    # Before anything touches the logs: a truncated checkpoint is moved aside, the newest readable one wins.
    point = resume_point(run_dir)
    if point:
        _check_resume_model(point, run)
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    dm = datamodule or GenomeDataModule(run.data)
    _check_data(dm)
    lit = LitLM(run)
    _check_model(lit)
    # Written once the run is known to start: a refused run leaves no config behind.
    fileio.write_yaml(run_dir / "config.yaml", run.to_dict())
    planned_tokens = train_cfg.max_steps * run.global_batch * run.seq_len
    warn_long_cpu_run(train_cfg, planned_tokens * lit.flops_per_token.training, planned_tokens)
    run_tags = tracking.run_tags(run.family, run.variant, run.preset, lit.model.param_counts().total, planned_tokens,
                                 run_dir, extra=tags)
    trainer = build_trainer(train_cfg, run_dir, callbacks=[clock, *callbacks], progress=progress,
                            resume_step=point.step if point else None, tags=run_tags,
                            params={"data": cfglib.to_dict(run.data), "preset": run.preset,
                                    "variant": run.variant or ""})
    if point:
        log.info("resuming %s from %s (step %d)", run_dir, point.path.name, point.step)
    elif (run_dir / "metrics.csv").exists():
        log.info("%s: no readable checkpoint; the run starts over", run_dir)
    try:
        # weights_only: our checkpoints hold tensors and plain values only (checked above by `verify`).
        trainer.fit(lit, datamodule=dm, ckpt_path=str(point.path) if point else None, weights_only=True)
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if lit.validated_step != trainer.global_step:
            # The reported loss must be the final weights': fit ended between two validations (max_steps not a
            # multiple of val_every), or resumed from the final checkpoint (logged before the interruption: that
            # validation is validated again, for its per-window losses, without a second row in the logs).
            logged = _logged_validation(run_dir, trainer.global_step)
            val = {**_validate(trainer, lit, dm, log_metrics=logged is None), **(logged or {})}
    except SIGTERMException:
        raise TrainingStopped(_stopped_message(run_dir, trainer, train_cfg.max_steps)) from None
    except SystemExit as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):  # Lightning turns Ctrl-C inside fit into sys.exit(1)
            raise KeyboardInterrupt(f"{run_dir}: interrupted at step {trainer.global_step}") from None
        raise
    finally:
        tracking.finish(trainer.loggers)
    counts = lit.model.param_counts()
    result = RunResult(
        status="ok",
        val_loss=float(val["val/loss"]),
        val_bpn=float(val["val/bpn"]),
        tokens=int(lit.tokens_seen),
        flops=float(lit.flops_actual),
        flops_planned=float(lit.flops_planned),
        params=counts.total,
        params_non_embedding=counts.non_embedding,
        steps=int(trainer.global_step),
        wall_s=clock.total(),
        metrics={k: float(v) for k, v in val.items()},
    )
    if trainer.is_global_zero:
        _write_window_losses(run_dir, lit.window_losses, result.val_loss)
        fileio.atomic_write_text(result_path, json.dumps(result.__dict__, indent=2))
    return result


def _write_window_losses(run_dir: Path, windows, val_loss: float) -> None:
    """`val_windows.csv`: the final validation's loss on each window (what a sweep's bootstrap resamples),
    recorded during that validation and gathered over every rank (`LitLM.window_losses`)."""
    if windows is None:
        log.warning("%s: the final validation recorded no per-window losses; no %s", run_dir, wl.FILENAME)
        return
    if abs(windows.mean - val_loss) > 1e-4:  # the same windows and weights must give the logged validation loss
        log.warning("%s: per-window losses average %.5f, validation logged %.5f", run_dir, windows.mean, val_loss)
    wl.write_window_losses(run_dir / wl.FILENAME, windows.losses, windows.tokens)


# ---------------------------------------------------------------------- CLI
def _configs_from_args(args) -> RunConfig:
    """The run's configs from --config or --model/--preset/--variant, the overrides and --data-dir."""
    overrides = run_config.parse_overrides(args.overrides, "override")
    if args.data_dir:
        overrides.update("data", "data_dir", args.data_dir, "--data-dir")
    if args.config:
        return run_config.resolve_file(args.config, overrides)
    return run_config.resolve(args.model, args.preset, args.variant, overrides)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _os_error_message(exc: OSError, out: Path) -> str:
    """A filesystem error in one line naming what the user can act on: a file outside the run (an input) by its
    name, anything in the run directory by the run directory (Lightning and fsspec write checkpoints through
    temporary files that are gone by the time the error is read)."""
    name = Path(exc.filename) if exc.filename else None
    reason = exc.strerror or str(exc)
    if name is not None and name.exists() and out.resolve() not in (name.resolve(), *name.resolve().parents):
        return f"{name}: {reason}"
    return f"{out}: {reason} (the run directory{'; rerun the same command to resume once there is room' if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ''})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dnahnet.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="transformer", help=f"model family: {', '.join(list_families())}")
    parser.add_argument("--preset", default="tiny", help="named size preset of the family")
    parser.add_argument("--variant", default=None, help="family variant (dnaHNet hierarchy, e.g. 3,2)")
    parser.add_argument("--config", default=None, help="a resolved config.yaml to rerun (overrides still apply)")
    parser.add_argument("--out", required=True, help="run directory (config, metrics.csv, checkpoints)")
    parser.add_argument("--new-run", action="store_true",
                        help="--out holds a run with other settings: keep it as OUT.old-<time> and start a new run")
    parser.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; use 1 on a shared or busy machine)")
    run_config.add_override_argument(parser)
    args = run_config.parse_args_with_overrides(parser, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads is not None and args.threads < 1:
        return _error(f"--threads must be >= 1, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    stop_on_sigterm()
    out = Path(args.out)
    try:
        run = _configs_from_args(args)
        if out.exists() and not out.is_dir():
            raise RunRefused(f"--out {out}: is a file, not a run directory")
        result = train_run(run, out, new_run=args.new_run, progress=not args.no_progress)
    except TrainingStopped as exc:
        print(f"stopped: {exc}", file=sys.stderr)
        return TrainingStopped.exit_code
    except KeyboardInterrupt:
        point = ckptlib.find_resume_point(out, set_aside_corrupt=False) if out.is_dir() else None
        where = f"its last checkpoint is at step {point.step}" if point else "it has no checkpoint yet"
        print(f"stopped: {out}: interrupted (SIGINT); {where}; rerun the same command to resume", file=sys.stderr)
        return 130
    except ckptlib.CheckpointError as exc:
        return _error(str(exc))
    except FloatingPointError as exc:  # the training loss became NaN/inf
        return _error(f"{out}: the run diverged ({exc}); lower train.lr or raise train.warmup_fraction")
    except (ValueError, KeyError, FileNotFoundError) as exc:
        return _error(str(exc).strip("'\"") if isinstance(exc, KeyError) else str(exc))
    except OSError as exc:  # --out on a read-only or full filesystem, a permission problem
        return _error(_os_error_message(exc, out))
    print(
        f"{run.family} ({run.preset}{'/' + run.variant if run.variant else ''}): val loss {result.val_loss:.4f} "
        f"nats/nt = {result.val_bpn:.4f} bits/nt after {result.tokens:,} tokens, {result.flops:.3g} FLOPs, "
        f"{result.params:,} params, {result.wall_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
