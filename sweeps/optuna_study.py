"""Hyperparameter search with Optuna at a fixed compute budget (the logic behind `sweeps/tune.py`).

Every trial is a normal run of the shared training loop (`dnahnet.train.train_run`) in its own run
directory `OUT/trials/trial_<n>`, trained for exactly the budget:

    steps = budget / (training FLOPs per token x tokens per step)

rounded by the isoFLOP planner's rule (`dnahnet.run_config.steps_for_budget`): planned FLOPs within 2% of
the budget, the batch moved (0.75x-1.33x) when rounding alone misses by more than 1% -- here with steps a
multiple of `evals`, the number of validations per trial. Validation k (k = 1..evals) therefore happens
after the fraction k / evals of the budget in every trial, whatever its batch size, and is reported to
Optuna at step k: the pruner compares trials at equal compute, from validation `prune_from` on. The last
validation is the trial's value and is never pruned (the budget is spent).

The study lives in an RDB storage (SQLite `OUT/study.db` by default; any SQLAlchemy URL lets workers on
a cluster share it). Rerunning the command continues the study: `--trials N` means N finished trials in
total. Trials whose worker died (no heartbeat) are retried in their own run directory, resuming from its
last checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import shutil
import signal
import socket
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from dnahnet import run_config
from dnahnet import typed_config as cfglib
from dnahnet.family import SearchDimension
from dnahnet.fileio import atomic_savefig, atomic_write_text
from dnahnet.registry import get_family
from dnahnet.run_config import config_differences
from dnahnet.rundir import TrainingStopped
from dnahnet.train import train_run
from sweeps.ladders import measure

log = logging.getLogger("sweeps.optuna_study")

# Exceptions that fail one trial and let the study go on: a diverged run (the training loop raises
# FloatingPointError on a non-finite loss) or a batch that does not fit in memory.
TRIAL_ERRORS: tuple[type[Exception], ...] = (FloatingPointError, torch.OutOfMemoryError)
HEARTBEAT_S = 60  # workers record a heartbeat this often; a RUNNING trial silent for 3 beats is retried


# --------------------------------------------------------------------------------------- search space
@dataclass
class SearchSpace:
    """Ranges searched by every study (the dnaHNet ones only for that family, whose module registers them as
    its search dimensions; a family's dimension without a field here brings its own range)."""

    lr: tuple[float, float] = (1e-4, 3e-2)  # peak learning rate, log-uniform
    warmup_fraction: tuple[float, float] = (0.0, 0.2)  # share of the steps in linear warmup, uniform
    weight_decay: tuple[float, float] = (0.0, 0.2)  # AdamW weight decay, uniform
    batch_size: tuple[int, ...] = (8, 16, 32)  # training windows per step (per device), categorical
    alpha: tuple[float, float] = (0.003, 0.05)  # dnaHNet ratio-loss weight, log-uniform (paper: 0.01-0.02)
    lr_outer: tuple[float, float] = (1.0, 4.0)  # dnaHNet outermost stage's lr multiplier, log-uniform
    lr_decay: tuple[float, float] = (0.25, 1.0)  # dnaHNet: each stage inward keeps this share of the excess over 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = tuple(getattr(self, f.name))
            setattr(self, f.name, value)
            if f.name == "batch_size":
                if not value or any(not isinstance(b, int) or b < 1 for b in value):
                    raise ValueError(f"--batch-sizes must be positive integers, got {list(value)}")
                continue
            lo, hi = value
            if not lo <= hi:
                raise ValueError(f"search range for {f.name} must have low <= high, got {lo} > {hi}")
            if f.name in ("lr", "alpha", "lr_outer") and lo <= 0:
                raise ValueError(f"search range for {f.name} is log-uniform: its low end must be > 0, got {lo}")
        if self.lr_decay[0] <= 0:
            raise ValueError(f"search range for lr_decay must be positive, got {self.lr_decay}")


def family_dimensions(space: SearchSpace, family: str, model_cfg) -> list[tuple[SearchDimension, tuple[float, float]]]:
    """The family's own search dimensions that this model config has (`dnahnet.family.FamilySearch`, as the
    family's module registered them), in their order, each with its (low, high): the SearchSpace field of its
    name (a command-line range) where there is one, else the dimension's own range."""
    search = get_family(family).search
    out = []
    for dim in search.dimensions if search else ():
        if dim.searched is not None and not dim.searched(model_cfg):
            continue
        bounds = tuple(getattr(space, dim.name)) if dim.name in {f.name for f in fields(space)} else dim.range
        if bounds is None:
            raise ValueError(f"{family}: search dimension {dim.name!r} has no range (neither its own nor a "
                             "SearchSpace field of that name)")
        out.append((dim, bounds))
    return out


def suggest(trial: optuna.Trial, space: SearchSpace, family: str, model_cfg) -> dict[str, Any]:
    """Draw one configuration for a model config (before the searched values); returns the trial's params
    (what `overrides_from_params` reads)."""
    trial.suggest_float("lr", *space.lr, log=True)
    trial.suggest_float("warmup_fraction", *space.warmup_fraction)
    trial.suggest_float("weight_decay", *space.weight_decay)
    trial.suggest_categorical("batch_size", list(space.batch_size))
    for dim, (low, high) in family_dimensions(space, family, model_cfg):
        trial.suggest_float(dim.name, low, high, log=dim.log)
    return dict(trial.params)


def overrides_from_params(params: dict[str, Any], family: str, model_cfg) -> dict[str, dict[str, Any]]:
    """Trial params -> {"train": ..., "model": ..., "data": ...} config overrides; the family's own
    dimensions become model overrides by its `FamilySearch.model_overrides` (of `model_cfg`, the model config
    before the searched values)."""
    out: dict[str, dict[str, Any]] = {
        "train": {k: float(params[k]) for k in ("lr", "warmup_fraction", "weight_decay")},
        "model": {},
        "data": {"batch_size": int(params["batch_size"])},
    }
    search = get_family(family).search
    if search is not None:
        values = {dim.name: float(params[dim.name]) for dim in search.dimensions if dim.name in params}
        out["model"].update(search.model_overrides(values, model_cfg))
    return out


# --------------------------------------------------------------------------------------- budget
def plan_steps(budget: float, flops_per_token: float, batch: int, seq_len: int, evals: int,
               world: int = 1) -> tuple[int, int]:
    """(optimizer steps, global batch in windows) that spend `budget` training FLOPs: the planner's rule
    (`dnahnet.run_config.steps_for_budget`) with steps a multiple of `evals`. Rounding that misses the
    budget by more than 1% moves the batch (0.75x-1.33x, a multiple of `world`; logged); planned FLOPs =
    steps x batch x seq_len x flops_per_token lie within 2% of the budget, else a ValueError."""
    raw = budget / flops_per_token / (batch * seq_len)
    if raw < evals:
        raise ValueError(
            f"--budget {budget:.3g} FLOPs buys only {raw:.2f} steps of {batch * seq_len} tokens at "
            f"{flops_per_token:.3g} training FLOPs/token; need at least --evals {evals} steps: raise --budget "
            f"to >= {evals * flops_per_token * batch * seq_len:.3g}"
        )
    spent = run_config.steps_for_budget(budget, flops_per_token, batch, seq_len, world, step_multiple=evals,
                                       warn_on_move=True)
    if spent.error > run_config.TOLERANCE:
        raise ValueError(
            f"--budget {budget:.3g} FLOPs: no batch near {batch} windows spends it within "
            f"{run_config.TOLERANCE:.0%} in a multiple of --evals {evals} steps (best: {spent.steps} steps of "
            f"{spent.batch} windows, {spent.error:.1%} off); change --budget or --evals"
        )
    return spent.steps, spent.batch


# --------------------------------------------------------------------------------------- stopping
class StopRequest:
    """A stop asked for by a signal (SIGTERM: a time limit or preemption; SIGINT: Ctrl-C). The handler only
    records it; the tuner reads it between trials and the training loop at each step (`StopCallback`).

    Why not an exception from the handler: a handler runs between any two bytecodes, e.g. inside a
    SQLAlchemy garbage-collection callback, where an exception is printed as "Exception ignored" and lost
    (the next trial then ran, and the command exited 0)."""

    def __init__(self) -> None:
        self.signal: str | None = None  # "SIGTERM" / "SIGINT" once asked

    def __bool__(self) -> bool:
        return self.signal is not None

    def handler(self, signum, frame) -> None:
        self.signal = self.signal or signal.Signals(signum).name

    @contextlib.contextmanager
    def installed(self, signums=(signal.SIGTERM, signal.SIGINT)):
        """Route `signums` to this flag while the block runs (the previous handlers come back after)."""
        self.signal = None
        previous = {}
        for signum in signums:
            with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
                previous[signum] = signal.signal(signum, self.handler)
        try:
            yield self
        finally:
            for signum, old in previous.items():
                signal.signal(signum, old)

    @property
    def exit_code(self) -> int:
        return 128 + (signal.SIGINT if self.signal == "SIGINT" else signal.SIGTERM)  # 130 / 143, as a shell says


STOP = StopRequest()


class TuneStopped(KeyboardInterrupt):
    """The study stopped on a StopRequest; rerunning the command continues it. A KeyboardInterrupt, so that
    Optuna marks an interrupted trial failed (it is queued again) and passes the stop on."""


class StopCallback(Callback):
    """Ends a trial's training at the next step boundary once a stop is asked for (a signal that came before
    Lightning installed its own SIGTERM handler, or a SIGINT, which Lightning does not watch)."""

    def __init__(self, request: StopRequest):
        super().__init__()
        self.request = request

    def _check(self, trainer) -> None:
        if self.request:
            raise TrainingStopped(f"stopped by {self.request.signal} at step {trainer.global_step}")

    def on_train_start(self, trainer, pl_module) -> None:
        self._check(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._check(trainer)


class _QuietStops(logging.Filter):
    """Optuna logs a failed trial with its traceback; a requested stop is not an error worth one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TuneStopped):
            record.exc_info = None
        return True


logging.getLogger("optuna.study._optimize").addFilter(_QuietStops())


# --------------------------------------------------------------------------------------- pruning
class StepPruningCallback(Callback):
    """Reports each validation to an Optuna trial and prunes it when the study's pruner says so (Optuna's
    documented pattern: `trial.report` then `trial.should_prune`, raising `optuna.TrialPruned`).

    Validation k (every `val_every` steps) is reported at step k, the same fraction of the budget in every
    trial (the training stream is one infinite epoch, so the epoch would not tell validations apart). The
    final validation (at `max_steps`) is left alone: it is the trial's value, and pruning there would only
    throw it away. A trial trains in one process (sweeps/tune.py refuses more devices), so no rank has to
    share the decision."""

    def __init__(self, trial: optuna.Trial, monitor: str, val_every: int, max_steps: int):
        super().__init__()
        self.trial = trial
        self.monitor = monitor
        self.val_every = val_every
        self.max_steps = max_steps

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.global_step >= self.max_steps:
            return
        score = trainer.callback_metrics.get(self.monitor)
        if score is None:
            log.warning("pruning: no %r among the validation metrics; this validation is not reported", self.monitor)
            return
        index = trainer.global_step // self.val_every
        value = float(score)
        self.trial.report(value, step=index)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at validation {index} of {self.max_steps // self.val_every} (step {trainer.global_step} "
                f"of {self.max_steps}): {self.monitor} {value:.4f}"
            )


# --------------------------------------------------------------------------------------- sampler
class TrialSeededTPESampler(optuna.samplers.BaseSampler):
    """TPE whose random draws are seeded by (seed, trial number).

    A plain seeded TPESampler restarts its random stream in every process: a resumed study would replay
    its first random (startup) configurations, and two workers would draw the same ones. Trial numbers
    are unique within a study, so seeding by them keeps a study reproducible and its trials distinct.
    Each trial is sampled by its own `TPESampler(seed=...)` (TPE keeps no state between trials besides
    its random stream: it reads the finished trials from the study), through the public sampler interface.
    """

    def __init__(self, seed: int = 0, **tpe_kwargs):
        self.base_seed = int(seed)
        self.tpe_kwargs = tpe_kwargs
        self.per_trial: dict[int, optuna.samplers.TPESampler] = {}
        self.idle = optuna.samplers.TPESampler(seed=self.base_seed, **tpe_kwargs)  # outside any trial

    def trial_seed(self, number: int) -> int:
        return (self.base_seed * 1_000_003 + number) % 2**32

    def _tpe(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        if trial.number not in self.per_trial:
            self.per_trial[trial.number] = optuna.samplers.TPESampler(seed=self.trial_seed(trial.number),
                                                                      **self.tpe_kwargs)
        return self.per_trial[trial.number]

    def infer_relative_search_space(self, study, trial: FrozenTrial):
        return self._tpe(trial).infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial: FrozenTrial, search_space):
        return self._tpe(trial).sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial: FrozenTrial, param_name, param_distribution):
        return self._tpe(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial: FrozenTrial) -> None:
        self._tpe(trial).before_trial(study, trial)

    def after_trial(self, study, trial: FrozenTrial, state, values) -> None:
        tpe = self.per_trial.pop(trial.number, None) or self.idle
        tpe.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Nothing to do: every trial's stream is seeded by its number (called by Optuna for n_jobs > 1)."""


def make_pruner(kind: str, startup: int, prune_from: int = 2) -> optuna.pruners.BasePruner:
    """`startup`: finished trials before any pruning; `prune_from`: the first validation index that may
    prune (the first quarter of a short run mostly measures the warmup, not the configuration)."""
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=prune_from, interval_steps=1)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=prune_from, reduction_factor=2,
                                                      bootstrap_count=startup)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"--pruner must be median, halving or none, got {kind!r}")


# --------------------------------------------------------------------------------------- study
@dataclass
class TuneSpec:
    """What a study optimises; stored with the study so that a rerun cannot silently change it."""

    family: str
    preset: str
    variant: str | None
    budget: float  # training FLOPs per trial
    evals: int = 4  # validations per trial (pruning points: all but the last)
    space: SearchSpace = field(default_factory=SearchSpace)
    base: dict[str, dict[str, Any]] = field(default_factory=lambda: {"model": {}, "train": {}, "data": {}})

    def base_overrides(self) -> run_config.Overrides:
        """The fixed settings (`base`) as overrides."""
        out = run_config.Overrides()
        for section, values in self.base.items():
            for key, value in values.items():
                out.update(section, key, value, "setting")
        return out

    def configs(self, trial_overrides: dict[str, dict[str, Any]] | None = None) -> run_config.RunConfig:
        """The configs of a trial: preset, variant, the fixed settings, then the trial's values (and run
        length); without `trial_overrides`, the configs before the searched values."""
        overrides = self.base_overrides()
        for section, values in (trial_overrides or {}).items():
            for key, value in values.items():
                overrides.update(section, key, value, "trial")
        return run_config.resolve(self.family, self.preset, self.variant, overrides)

    def identity(self) -> dict[str, Any]:
        """What must not change between reruns and workers: the study's own settings (budget, validations,
        search space) and `run`, the resolved config of its trials before the searched values, compared by
        the one identity rule of single runs and sweeps (`dnahnet.run_config.config_differences`: every field not
        marked neutral, the global batch, the genomes read by content, so that workers on other machines may
        hold them under other paths). `base` (the fixed settings as given) is kept for studies stored before
        `run` existed."""
        run = self.configs()
        base = {section: {k: cfglib.to_dict(getattr(getattr(run, section), k)) for k in sorted(values)
                          if k not in ("data_dir", "store_dir")}
                for section, values in self.base.items()}
        return {"family": self.family, "preset": self.preset, "variant": self.variant, "budget": float(self.budget),
                "evals": self.evals, "space": cfglib.to_dict(self.space), "base": base, "run": run.to_dict()}


def identity_differences(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """'key: stored -> now' for the entries of two study identities (`TuneSpec.identity`) that differ; a
    study stored before `run` existed is compared by its fixed settings as given (`base`)."""
    diffs = [f"{k}: {have.get(k)!r} -> {want.get(k)!r}" for k in ("family", "preset", "variant", "budget", "evals",
                                                                  "space") if have.get(k) != want.get(k)]
    if "run" in have:
        diffs += config_differences(have["run"], want["run"])
    elif have.get("base") != want.get("base"):
        diffs.append(f"base: {have.get('base')!r} -> {want.get('base')!r}")
    return diffs


def default_study_name(spec: TuneSpec) -> str:
    variant = f"-{spec.variant.replace(',', '_')}" if spec.variant else ""
    return f"{spec.family}-{spec.preset}{variant}-{spec.budget:.2e}"


def open_storage(url: str, heartbeat: int = HEARTBEAT_S) -> RDBStorage:
    """An RDB storage with heartbeats: a trial whose worker died (silent for 3 heartbeats) is failed when
    the next trial starts anywhere, and queued again with the same parameters (twice at most)."""
    engine_kwargs = {}
    if url.startswith("sqlite"):
        # Concurrent workers on one SQLite file wait for its lock instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 120}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2,
                                                                             inherit_intermediate_values=True),
        )


def open_study(spec: TuneSpec, storage: str, name: str, seed: int = 0, pruner: str = "median",
               pruner_startup: int = 2, sampler_startup: int = 5, heartbeat: int = HEARTBEAT_S,
               prune_from: int = 2) -> optuna.Study:
    """Create the study or load it (continuing it); refuse one created for a different spec."""
    import sqlalchemy.exc

    sampler = TrialSeededTPESampler(seed=seed, n_startup_trials=sampler_startup)
    for attempt in range(5):
        try:
            study = optuna.create_study(
                storage=open_storage(storage, heartbeat), study_name=name, direction="minimize", sampler=sampler,
                pruner=make_pruner(pruner, pruner_startup, prune_from), load_if_exists=True,
            )
            break
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as exc:
            # Workers starting together race to create the tables and the study; the loser retries
            # and finds them made (any other database error repeats and is raised).
            if attempt == 4:
                raise
            log.info("storage %s is being initialised by another worker (%s); retrying", storage,
                     str(exc).splitlines()[0])
            time.sleep(0.5 + random.random() * (attempt + 1))
    want = yaml.safe_load(yaml.safe_dump(spec.identity()))  # the same plain types as stored
    have = study.user_attrs.get("spec")
    if have is None:
        study.set_user_attr("spec", want)
    elif diffs := identity_differences(have, want):
        raise ValueError(f"study {name!r} in {storage} was created for different settings ({'; '.join(diffs[:6])}); "
                         "use another --study name or --out directory")
    return study


def _failed_by_run(trial: FrozenTrial) -> bool:
    return "error" in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Trials that count toward --trials: complete, pruned, or failed by the run itself (e.g. NaN).

    A trial failed because its worker died is not counted: it is retried."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and _failed_by_run(t)):
            out.append(t)
    return out


def _frozen(trial: optuna.Trial) -> FrozenTrial:
    """The stored record of a running trial (its system attributes are not on `optuna.Trial`)."""
    running = trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    return next(t for t in running if t.number == trial.number)


def retried_trial_number(trial: optuna.Trial) -> int | None:
    """The number of the trial this one retries (its worker died or it was interrupted), or None."""
    frozen = _frozen(trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)


def queue_retry(trial: optuna.Trial, original: int) -> None:
    """Queue a trial again with the same parameters; the retry trains in the run directory of `original`."""
    frozen = _frozen(trial)
    history = [*frozen.system_attrs.get("retry_history", []), trial.number]
    trial.study.add_trial(optuna.create_trial(
        state=TrialState.WAITING, params=frozen.params, distributions=frozen.distributions,
        user_attrs=frozen.user_attrs, system_attrs={"failed_trial": original, "retry_history": history},
    ))
    log.warning("trial %d interrupted: queued again, to resume %s on the next run", trial.number,
                frozen.user_attrs.get("run_dir"))


def make_objective(spec: TuneSpec, out_dir: Path, progress: bool = True,
                   train_fn: Callable[..., Any] = train_run) -> Callable[[optuna.Trial], float]:
    """The objective: one training run at the budget; returns the final validation loss (nats/nt)."""
    base = spec.configs()
    base_model, base_data = base.model, base.data
    fpt = measure(spec.family, base_model, base_data.seq_len).flops_per_token
    world = base.train.devices * base.train.num_nodes
    # Fail before any training when the budget cannot pay for some batch size of the search space.
    for batch in spec.space.batch_size:
        plan_steps(spec.budget, fpt, batch * world, base_data.seq_len, spec.evals, world)

    def objective(trial: optuna.Trial) -> float:
        original = retried_trial_number(trial)
        number = trial.number if original is None else original  # a retry resumes the original's run
        if STOP:  # asked between the check in `optimize` and this trial's start: it starts again next time
            queue_retry(trial, number)
            raise TuneStopped(f"stopped by {STOP.signal} before trial {trial.number} trained")
        run_dir = out_dir / "trials" / f"trial_{number}"
        overrides = overrides_from_params(suggest(trial, spec.space, spec.family, base_model), spec.family,
                                          base_model)
        # The batch may move to spend the budget (the planner's rule); the run length follows from it.
        steps, global_batch = plan_steps(spec.budget, fpt, overrides["data"]["batch_size"] * world,
                                         base_data.seq_len, spec.evals, world)
        run = spec.configs({
            "model": overrides["model"],
            "train": {**overrides["train"], "max_steps": steps, "val_every": steps // spec.evals},
            "data": {**overrides["data"], "batch_size": global_batch // world},
        })
        train_cfg, data_cfg = run.train, run.data
        trial.set_user_attr("batch_size", data_cfg.batch_size)  # per device, as trained
        tokens_per_step = global_batch * data_cfg.seq_len
        trial.set_user_attr("run_dir", str(run_dir))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("steps", steps)
        trial.set_user_attr("flops_planned", steps * tokens_per_step * fpt)
        trained = {**overrides, "data": {**overrides["data"], "batch_size": data_cfg.batch_size}}
        moved = (f" (batch moved from the suggested {overrides['data']['batch_size']} to spend the budget)"
                 if data_cfg.batch_size != overrides["data"]["batch_size"] else "")
        # What the trial trains with (best_overrides.yaml writes the same), not the sampler's suggestion.
        log.info("trial %d: %d steps of %d tokens, %s%s", trial.number, steps, tokens_per_step, trained, moved)
        pruning = StepPruningCallback(trial, "val/loss", val_every=train_cfg.val_every, max_steps=steps)
        try:
            result = train_fn(run, run_dir, callbacks=[pruning, StopCallback(STOP)], progress=progress)
            if not math.isfinite(result.val_loss):
                raise FloatingPointError(f"non-finite validation loss {result.val_loss}")
        except optuna.TrialPruned:
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)  # a pruned run is never resumed
            raise
        except TRIAL_ERRORS as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            raise
        except KeyboardInterrupt:
            # Optuna marks the trial failed; queue it again so that the next run resumes its checkpoint.
            queue_retry(trial, number)
            raise
        except TrainingStopped as exc:  # SIGTERM (Lightning's, at a step boundary) or a StopRequest
            queue_retry(trial, number)
            raise TuneStopped(f"trial {trial.number} ({run_dir}): {exc}") from None
        for key in ("val_bpn", "tokens", "flops", "params", "params_non_embedding", "wall_s"):
            trial.set_user_attr(key, getattr(result, key))
        return float(result.val_loss)

    return objective


def optimize(study: optuna.Study, objective, n_trials: int) -> int:
    """Run trials until the study holds `n_trials` finished ones (shared with any other worker).
    Returns how many this call started."""
    done = len(finished_trials(study))
    if done >= n_trials:
        log.info("study %r already has %d finished trials (--trials %d): nothing to run",
                 study.study_name, done, n_trials)
        return 0
    log.info("study %r: %d of %d trials finished; running the rest", study.study_name, done, n_trials)
    started = [0]

    def stop_when_done(study: optuna.Study, trial: FrozenTrial) -> None:
        started[0] += 1
        if len(finished_trials(study)) >= n_trials:
            study.stop()

    # One trial per call, the StopRequest read before each: a signal between trials stops the study before the
    # next one starts. The callback stops once the study is full, counting other workers' trials too.
    while True:
        if STOP:
            raise TuneStopped(f"stopped by {STOP.signal} between trials (no trial was running)")
        study.optimize(objective, n_trials=1, catch=TRIAL_ERRORS, callbacks=[stop_when_done], gc_after_trial=True)
        if len(finished_trials(study)) >= n_trials:
            return started[0]


# --------------------------------------------------------------------------------------- outputs
def best_overrides_yaml(study: optuna.Study, spec: TuneSpec) -> str:
    """The best trial as an override file for `sweeps/isoflop.py --overrides` (train:, model:, data:)."""
    best = study.best_trial
    overrides = overrides_from_params(best.params, spec.family, spec.configs().model)
    if "batch_size" in best.user_attrs and "batch_size" in overrides["data"]:  # the batch it trained with
        overrides["data"]["batch_size"] = int(best.user_attrs["batch_size"])
    body = {k: v for k, v in overrides.items() if v}
    header = (
        f"# Best of Optuna study {study.study_name!r}: trial {best.number}, val/loss {best.value:.5f} nats/nt\n"
        f"# ({best.value / math.log(2):.5f} bits/nt) at {spec.budget:.3g} training FLOPs per trial; "
        f"{spec.family} preset {spec.preset}{' variant ' + spec.variant if spec.variant else ''}.\n"
        f"# Usage: python sweeps/isoflop.py ... --overrides THIS_FILE\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def _save_figure(ax, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(8, 5)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=120)
    finally:
        plt.close(fig)


def importance_evaluator():
    """fANOVA (needs scikit-learn) when available, else PED-ANOVA (pure Optuna)."""
    import importlib.util

    if importlib.util.find_spec("sklearn") is not None:
        return optuna.importance.FanovaImportanceEvaluator(seed=0)
    log.info("scikit-learn is not installed: parameter importances by PED-ANOVA instead of fANOVA")
    return optuna.importance.PedAnovaImportanceEvaluator()


def write_figures(study: optuna.Study, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    written = []
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    plots: list[tuple[str, Callable[[], Any]]] = [
        ("history.png", lambda: ovm.plot_optimization_history(study, target_name="val/loss (nats/nt)")),
        ("intermediate.png", lambda: ovm.plot_intermediate_values(study)),
    ]
    if len(complete) >= 2:
        plots.append(("importances.png", lambda: ovm.plot_param_importances(study, evaluator=importance_evaluator())))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        for name, plot in plots:
            try:
                _save_figure(plot(), out_dir / name)
                written.append(out_dir / name)
            except (ValueError, RuntimeError) as exc:  # e.g. importances when no parameter varied
                log.warning("could not draw %s: %s", name, exc)
    return written


def trials_table(study: optuna.Study):
    df = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params", "user_attrs"))
    keep = [c for c in df.columns if c in ("number", "state", "value", "duration") or c.startswith("params_")
            or c in ("user_attrs_steps", "user_attrs_batch_size", "user_attrs_flops_planned", "user_attrs_val_bpn", "user_attrs_error")]
    return df, df[keep]


def write_outputs(study: optuna.Study, spec: TuneSpec, out_dir: Path, echo: Callable[[str], None] = print) -> None:
    """best_overrides.yaml (when a trial completed), trials.csv and the figures, each written atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    df, short = trials_table(study)
    atomic_write_text(out_dir / "trials.csv", df.to_csv(index=False))
    import pandas as pd

    with pd.option_context("display.max_columns", None, "display.width", 200, "display.float_format", "{:.4g}".format):
        echo(short.to_string(index=False))
    if any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        text = best_overrides_yaml(study, spec)
        atomic_write_text(out_dir / "best_overrides.yaml", text)
        echo(f"best configuration -> {out_dir / 'best_overrides.yaml'}\n{text}")
    else:
        log.warning("no trial completed yet: no best_overrides.yaml")
    for path in write_figures(study, out_dir):
        echo(f"figure -> {path}")
