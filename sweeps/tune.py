"""Hyperparameter search with Optuna: every trial trains one model for the same compute budget.

    python sweeps/tune.py --model dnahnet --preset tiny --budget 3e11 --trials 20 --out runs/tune-tiny \
        --seq-len 512 data.n_val_windows=32
    python sweeps/tune.py --model transformer --budget 1e12 --trials 40 --out runs/tune-tf \
        --storage postgresql://user@db/optuna --batch-sizes 16 32 64 -- data.n_val_windows=64

Fixed settings (model.K=V, train.K=V, data.K=V, bare in any position or as --set SECTION.K=V) apply to every
trial; right after an option that takes a list (--batch-sizes), put `--` before bare ones.

Searched: peak learning rate (log-uniform), warmup fraction, weight decay, batch size (categorical) and,
for dnaHNet, the ratio-loss weight alpha and the per-stage learning-rate multipliers (the outermost one and
a geometric decay inward of the excess over the main network's 1.0). TPE sampler (seeded); trials validate `--evals` times and
a median (or successive-halving) pruner stops the clearly worse ones; a diverged trial (NaN) is marked
failed and the study goes on.

The study is stored in `--storage` (default sqlite:///OUT/study.db). Rerunning the command continues it:
`--trials N` means N finished trials in total. A trial stopped by Ctrl-C, or whose worker died or was
preempted (no heartbeat for 3 x --heartbeat seconds), is run again with the same parameters and resumes
its run directory's last checkpoint. Several workers may run the same command against one
storage (e.g. a PostgreSQL/MySQL URL on a cluster, or the SQLite file on one machine) and share the study;
each trial trains on one device, so start one worker per GPU (CUDA_VISIBLE_DEVICES=k).

Stopped by SIGTERM (a time limit, preemption) or Ctrl-C, the tuner finishes nothing more: between trials it
stops before the next one, inside a trial at the next training step (the trial is queued again and resumes
its run directory); it exits 143 (SIGTERM) or 130 (SIGINT) saying where it stopped, and rerunning the
command continues the study.

Writes into OUT: trials/trial_<n>/ (each trial's run directory), trials.csv, best_overrides.yaml (the
best configuration, accepted by `sweeps/isoflop.py --overrides`), history.png, intermediate.png and
importances.png (from two completed trials on).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

if not __package__:  # `python sweeps/tune.py`: this checkout's packages, not sweeps/'s modules nor another install
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dnahnet import run_config
from dnahnet.tracking import check_trackers, sweep_tags
from sweeps import optuna_study


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python sweeps/tune.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model family (transformer, dnahnet, stripedhyena)")
    p.add_argument("--preset", default="tiny", help="size preset of the family (default: tiny)")
    p.add_argument("--variant", default=None, help="family variant, e.g. dnaHNet hierarchy 3,2 | 2,2 | 3")
    p.add_argument("--budget", type=float, required=True, help="training FLOPs per trial, e.g. 1e12")
    p.add_argument("--trials", type=int, default=20, help="finished trials the study should hold in total")
    p.add_argument("--out", required=True, help="output directory (study.db, trials/, figures, best_overrides.yaml)")
    p.add_argument("--storage", default=None, help="Optuna RDB URL (default: sqlite:///OUT/study.db)")
    p.add_argument("--study", default=None, help="study name (default: FAMILY-PRESET[-VARIANT]-BUDGET)")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    p.add_argument("--seq-len", type=int, default=None, help="context length in nucleotides (default: DataConfig's)")
    p.add_argument("--evals", type=int, default=4, help="validations per trial; all but the last can prune")
    p.add_argument("--pruner", default="median", choices=["median", "halving", "none"], help="pruning rule")
    p.add_argument("--pruner-startup", type=int, default=2, help="trials finished before any pruning")
    p.add_argument("--prune-from", type=int, default=2, metavar="K",
                   help="first validation (1..evals-1) at which a trial may be pruned (default 2)")
    p.add_argument("--sampler-startup", type=int, default=5, help="random trials before TPE models the space")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (trial n draws with seed and n)")
    p.add_argument("--heartbeat", type=int, default=optuna_study.HEARTBEAT_S, metavar="S",
                   help="seconds between worker heartbeats; a trial silent for 3 is retried, resuming its run")
    space = optuna_study.SearchSpace()
    p.add_argument("--lr", type=float, nargs=2, default=space.lr, metavar=("LO", "HI"), help="peak lr (log)")
    p.add_argument("--warmup", type=float, nargs=2, default=space.warmup_fraction, metavar=("LO", "HI"),
                   help="warmup fraction")
    p.add_argument("--weight-decay", type=float, nargs=2, default=space.weight_decay, metavar=("LO", "HI"),
                   help="AdamW weight decay")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=space.batch_size, metavar="B",
                   help="batch sizes to choose from (windows per device and step)")
    p.add_argument("--alpha", type=float, nargs=2, default=space.alpha, metavar=("LO", "HI"),
                   help="dnaHNet ratio-loss weight (log)")
    p.add_argument("--lr-outer", type=float, nargs=2, default=space.lr_outer, metavar=("LO", "HI"),
                   help="dnaHNet outermost stage's lr multiplier (log)")
    p.add_argument("--lr-decay", type=float, nargs=2, default=space.lr_decay, metavar=("LO", "HI"),
                   help="dnaHNet: share of the excess multiplier (over 1) kept from one stage to the next inward")
    p.add_argument("--no-progress", action="store_true", help="hide the per-trial progress bars")
    run_config.add_override_argument(p, "settings", help="a fixed setting for every trial, e.g. --set "
                                    "data.n_val_windows=32 (repeatable; a bare SECTION.KEY=VALUE anywhere is the same)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: options, and fixed settings as `--set SECTION.KEY=VALUE` or bare, in any position."""
    return run_config.parse_args_with_overrides(build_parser(), argv, dest="settings")


def tagged_train_run(study: str, budget: float):
    """`optuna_study.train_run` tagging each trial's tracker runs (train.loggers) with the study, budget and trial."""

    def run(run_config, run_dir, **kwargs):
        # trials live in OUT/trials/<trial>: the study's MLflow store is OUT/mlflow.db
        tags = sweep_tags(study, budget, Path(run_dir).name, sweep_dir=Path(run_dir).parent.parent)
        return optuna_study.train_run(run_config, run_dir, tags=tags, **kwargs)

    return run


def check_arguments(args: argparse.Namespace, out: Path) -> None:
    """Refuse a bad option before anything is written: ValueError naming the first one."""
    rules = (  # (what must hold, the error otherwise)
        (args.trials >= 1, f"--trials must be >= 1, got {args.trials}"),
        (args.heartbeat >= 1, f"--heartbeat must be >= 1 second, got {args.heartbeat}"),
        (args.evals >= 1, f"--evals must be >= 1, got {args.evals}"),
        (args.prune_from >= 1, f"--prune-from must be >= 1 (a validation index), got {args.prune_from}"),
        (min(args.pruner_startup, args.sampler_startup) >= 0, "--pruner-startup and --sampler-startup must be >= 0"),
        (all(b >= 1 for b in args.batch_sizes), f"--batch-sizes must all be >= 1, got {args.batch_sizes}"),
        (args.seq_len is None or args.seq_len >= 1, f"--seq-len must be >= 1, got {args.seq_len}"),
        (not out.exists() or out.is_dir(), f"--out {out}: is a file, not a directory"),
        (args.budget > 0, f"--budget must be a positive number of FLOPs, got {args.budget}"),
    )
    for holds, error in rules:
        if not holds:
            raise ValueError(error)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    created = not out.exists()
    try:
        check_arguments(args, out)
        settings = run_config.parse_overrides(args.settings, "setting")
        base = {"model": settings.model, "train": settings.train, "data": settings.data}
        for key in ("max_steps", "val_every"):
            if key in base["train"]:
                raise ValueError(f"train.{key} is set by the tuner (from --budget and --evals); drop it")
        if args.seq_len is not None:
            base["data"]["seq_len"] = args.seq_len
        if args.data_dir is not None:
            base["data"]["data_dir"] = args.data_dir
        space = optuna_study.SearchSpace(lr=args.lr, warmup_fraction=args.warmup, weight_decay=args.weight_decay,
                                   batch_size=args.batch_sizes, alpha=args.alpha, lr_outer=args.lr_outer,
                                   lr_decay=args.lr_decay)
        spec = optuna_study.TuneSpec(args.model, args.preset, args.variant, args.budget, args.evals, space, base)
        from dnahnet.train import check_configs, check_model_builds

        base_run = spec.configs()
        train_cfg = base_run.train
        # As a run would check them (RunRefused is a ValueError): every trial would be refused otherwise.
        check_configs(base_run)
        check_model_builds(base_run)
        if train_cfg.devices * train_cfg.num_nodes != 1:
            raise ValueError("train.devices / train.num_nodes: a trial trains on one device; to use more devices, "
                             "start one worker per device on the same --storage (e.g. CUDA_VISIBLE_DEVICES=k)")
        check_trackers(train_cfg.loggers)  # train.loggers=...: a tracker package not installed
        name = args.study or optuna_study.default_study_name(spec)
        # Bad family/preset/variant/setting or a budget too small: fail here, before any file is written.
        objective = optuna_study.make_objective(spec, out, progress=not args.no_progress,
                                          train_fn=tagged_train_run(name, args.budget))
        out.mkdir(parents=True, exist_ok=True)
        storage = args.storage or f"sqlite:///{(out / 'study.db').resolve()}"
        study = _open_study(args, spec, storage, name)
    except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
        if created and out.is_dir():  # made just before a bad --storage was found: leave nothing behind
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):  # a read-only filesystem
            print(f"error: {exc.filename or out}: {exc.strerror or exc}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    # SIGTERM / SIGINT set a flag, read between trials and at each training step (never an exception raised
    # from inside a signal handler); the study stops there and a rerun continues it.
    with optuna_study.STOP.installed():
        try:
            optuna_study.optimize(study, objective, args.trials)
        except optuna_study.TuneStopped as exc:
            done = len(optuna_study.finished_trials(study))
            print(f"stopped: study {study.study_name!r} in {out}: {exc}; {done} of {args.trials} trials finished; "
                  "rerun the same command to continue the study (an interrupted trial resumes its run)",
                  file=sys.stderr)
            return optuna_study.STOP.exit_code if optuna_study.STOP else 130
    optuna_study.write_outputs(study, spec, out)
    return 0


def _open_study(args, spec, storage: str, name: str):
    """optuna_study.open_study, with a bad --storage URL (unknown database, unreachable server) as ValueError."""
    try:
        return optuna_study.open_study(spec, storage, name, seed=args.seed, pruner=args.pruner,
                                 pruner_startup=args.pruner_startup, sampler_startup=args.sampler_startup,
                                 heartbeat=args.heartbeat, prune_from=args.prune_from)
    except (ValueError, KeyError, FileNotFoundError):
        raise
    except (ImportError, OSError) as exc:
        raise ValueError(f"--storage {storage}: cannot open it ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # sqlalchemy's errors (no such dialect, cannot connect) share no public base here
        if type(exc).__module__.startswith(("sqlalchemy", "optuna")):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--storage {storage}: cannot open it ({first})") from None
        raise


if __name__ == "__main__":
    sys.exit(main())
