"""isoFLOP sweeps: for each compute budget, a ladder of model sizes, each trained for exactly that budget.

    python sweeps/isoflop.py --model transformer --ladder cpu-smoke --out runs/sweep-tf
    python sweeps/isoflop.py --model dnahnet --variant 3,2 --variant 2,2 --budgets 1e12,3e12 \\
        --out runs/sweep-dn --dry-run
    python sweeps/isoflop.py --model stripedhyena --ladder paper --out /scratch/sh2 --launcher slurm \\
        --slurm-partition gpu --slurm-time 24:00:00 --devices 8 --strategy ddp --slurm-array

Writes into --out: plan.csv (one row per run: family, variant, budget, params, tokens, flops, steps,
batch, lr, tokens_per_param, seq_len, run_id, model overrides) and plan.json; runs/<run_id>/ (each run's
config.yaml, metrics.csv, checkpoints/last.ckpt, result.json, and export/: its final weights as
model.safetensors + config.json unless --no-export); results.csv (one row per finished run:
val_loss in nats/nt on the fixed validation windows, actual training FLOPs, status ok|failed, error).
Rerunning the same command skips finished runs (ok or failed; --retry-failed reruns failed ones) and
resumes an interrupted run from its newest readable checkpoint. A rerun that would give a planned or
trained run other settings (--set, --overrides) is refused, naming the keys; so is a second sweep on the
same --out while one runs. Stopped by SIGTERM, the sweep exits 143 (by Ctrl-C, 130) and a rerun resumes; a full disk stops
it with one line after recording what it can. Then: `python -m analysis --results OUT/results.csv
--out OUT/analysis`.

Named ladders (--ladder): cpu-smoke (minutes on 2 CPU cores), cpu (a few hours per family), paper (4e18-8e19
FLOPs at context 8192, for GPU clusters). See sweeps/ladders.py for the ladders (each family's size rule
lives in its module) and sweeps/plan.py for the override-file format (--overrides, --set).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

if not __package__:  # `python sweeps/isoflop.py`: this checkout's packages, not sweeps/'s modules nor another install
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from dnahnet import run_config
from dnahnet.data import GenomeDataModule
from dnahnet.registry import get_family
from dnahnet.run_config import config_differences
from dnahnet.rundir import is_rank_zero
from dnahnet.tracking import check_trackers
from sweeps import ladders as ladlib
from sweeps.command import run_command
from sweeps.launch import LAUNCHERS, SlurmOptions, parse_slurm_time, run_local, run_local_gpus, run_slurm
from sweeps.plan import RunSpec, format_table, load_overrides, plan_family, read_plan, with_seed_replicas, write_plan
from sweeps.runner import (
    backfill_exports,
    cpu_threads,
    exports_enabled,
    quiet_lightning,
    results_by_id,
    run_dir_of,
)

log = logging.getLogger("sweeps")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python sweeps/isoflop.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="model family: transformer, stripedhyena, dnahnet")
    p.add_argument("--variant", action="append", default=None,
                   help="family variant (repeatable; 'all' = every variant), e.g. --variant 3,2; default: the "
                        "family's default (dnahnet: 3,2)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ladder", default=None, help=f"named budget ladder: {', '.join(ladlib.LADDERS)} (default cpu-smoke)")
    g.add_argument("--budgets", default=None, help="explicit budgets in training FLOPs, e.g. 1e13,3e13")
    p.add_argument("--rules", default=None, help="with --budgets: whose recipe rules to use (a ladder name; "
                   "default cpu below 1e16 FLOPs, else paper)")
    p.add_argument("--sizes", type=int, default=None, help="models per budget (default: the ladder's)")
    p.add_argument("--span", type=float, default=None, help="largest/smallest parameters per budget (>= 5)")
    p.add_argument("--seq-len", type=int, default=None, help="context length (default: the ladder's)")
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    run_config.add_override_argument(p, "assignments", help="override, e.g. --set train.lr_scale=0.5 --set "
                                    "model.alpha=0.01 (repeatable; a bare SECTION.KEY=VALUE anywhere is the same)")
    p.add_argument("--overrides", default=None, metavar="FILE.yaml", help="override file (train:, model:, data:)")
    p.add_argument("--seeds", type=int, default=1,
                   help="training seeds per run (default 1): seeds > 1 adds replicas RUN_ID-s1, -s2, ... with other "
                        "initialisation and window order, scored on the same validation windows")
    p.add_argument("--seed-budgets", default=None, metavar="B1,B2",
                   help="with --seeds: replicate only the runs of these budgets (default: every budget)")
    p.add_argument("--dry-run", action="store_true", help="write plan.csv and print the plan; train nothing")
    p.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    p.add_argument("--only", action="extend", nargs="+", default=None, metavar="RUN_ID",
                   help="run only these run ids (several after one --only, or --only repeated)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--no-export", action="store_true",
                   help="keep no exported weights (by default every finished run writes RUN_DIR/export/: "
                        "model.safetensors + config.json, for `python -m dnahnet.evals.sweep`); for large sweeps")
    d = p.add_argument_group("devices")
    d.add_argument("--devices", type=int, default=1, help="devices per node for each run")
    d.add_argument("--num-nodes", type=int, default=1, help="nodes per run")
    d.add_argument("--strategy", default="auto", choices=("auto", "ddp", "fsdp", "fsdp2"), help="parallelism")
    d.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu"), help="Lightning accelerator")
    d.add_argument("--precision", default="auto", help="Lightning precision (auto: bf16-mixed on GPU, 32 on CPU)")
    d.add_argument("--device-memory-gb", type=float, default=None,
                   help="memory per device (GiB): each run's per-device batch becomes micro-batches that fit it "
                        "(gradient accumulation, activation checkpointing when needed; sweeps/memory.py)")
    d.add_argument("--threads", type=int, default=None,
                   help="CPU threads per training process (default: $OMP_NUM_THREADS, else 1 without CUDA: "
                        "the CPU ladders' tiny models run fastest on one thread)")
    lg = p.add_argument_group("launchers")
    lg.add_argument("--launcher", default="local", choices=LAUNCHERS, help="where runs execute (default local)")
    lg.add_argument("--gpus", type=int, default=None, help="local-gpus: GPUs to use (default: all visible)")
    lg.add_argument("--jobs", type=int, default=1,
                    help="local: runs at once, each in its own worker process with --threads threads (default 1 "
                    "each); e.g. --jobs 2 on a 2-core machine")
    s = p.add_argument_group("slurm (submitit)")
    s.add_argument("--slurm-partition", default=None)
    s.add_argument("--slurm-time", default="24:00:00", help="job time limit: minutes or [D-]HH:MM[:SS]")
    s.add_argument("--slurm-gpus-per-node", type=int, default=None, help="default: --devices")
    s.add_argument("--slurm-cpus-per-task", type=int, default=8)
    s.add_argument("--slurm-mem-gb", type=int, default=None)
    s.add_argument("--slurm-array", action="store_true", help="submit one job array instead of one job per run")
    s.add_argument("--slurm-array-parallelism", type=int, default=64)
    s.add_argument("--slurm-executor", default="slurm", choices=("slurm", "local", "debug"),
                   help="submitit executor: slurm, or local/debug to run the jobs on this machine")
    s.add_argument("--no-wait", action="store_true", help="submit the jobs and exit")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: options, and settings as `--set SECTION.KEY=VALUE` or bare, in any position."""
    args = run_config.parse_args_with_overrides(build_parser(), argv, dest="assignments")
    if args.only:  # `--only A B train.lr=1e-3`: a run id has no `=`, so the setting is a setting
        settings = [token for token in args.only if run_config.is_bare_override(token)]
        args.only = [token for token in args.only if token not in settings] or None
        args.assignments = [*args.assignments, *settings]
    return args


def resolve_ladder(args) -> ladlib.Ladder:
    changes = {k: v for k, v in (("sizes", args.sizes), ("span", args.span)) if v is not None}
    if args.budgets:
        return ladlib.custom_ladder(ladlib.parse_budgets(args.budgets), base=args.rules, **changes)
    ladder = ladlib.get_ladder(args.ladder or "cpu-smoke")
    if changes:
        fields = dict(ladder.__dict__)
        fields.update(changes)
        ladder = ladlib.Ladder(**fields)
    return ladder


def resolve_variants(family: str, requested: list[str] | None) -> list[str | None]:
    fam = get_family(family)
    if not requested:
        rule = ladlib.get_rule(family)
        return [rule.default_variant if rule.default_variant in fam.variants else None]
    if requested == ["all"]:
        return list(fam.variants) or [None]
    for v in requested:
        if v not in fam.variants:
            raise ValueError(f"--variant {v!r}: {family} has variants {', '.join(fam.variants) or '(none)'}")
    return list(dict.fromkeys(requested))


def plan_from_args(args) -> list[RunSpec]:
    ladder = resolve_ladder(args)
    overrides = load_overrides(args.overrides, args.assignments)
    specs: list[RunSpec] = []
    for variant in resolve_variants(args.model, args.variant):
        specs += plan_family(args.model, variant, ladder, overrides, seq_len=args.seq_len, data_dir=args.data_dir,
                             devices=args.devices, num_nodes=args.num_nodes, strategy=args.strategy,
                             accelerator=args.accelerator, precision=args.precision,
                             device_memory_gb=args.device_memory_gb)
    if args.seed_budgets is not None and args.seeds < 2:
        raise ValueError("--seed-budgets needs --seeds 2 or more")
    seed_budgets = ladlib.parse_budgets(args.seed_budgets) if args.seed_budgets is not None else None
    specs = with_seed_replicas(specs, args.seeds, seed_budgets)
    if args.only:
        unknown = sorted(set(args.only) - {s.run_id for s in specs})
        if unknown:
            raise ValueError(f"--only: not in the plan: {', '.join(unknown)}")
        specs = [s for s in specs if s.run_id in args.only]
    if not specs:
        raise ValueError("the plan is empty (every run was dropped; see the warnings above)")
    return specs


def _merge_plan(out: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """The plan to write: with --only, the runs already in OUT/plan.json stay listed (updated if re-planned)."""
    try:
        old = read_plan(out) if (out / "plan.json").is_file() else []
    except ValueError:
        old = []
    new = {s.run_id: s for s in specs}
    merged = [new.pop(s.run_id, s) for s in old]
    return merged + list(new.values())


def check_dry_run_keeps_plan(out: Path, plan: list[RunSpec]) -> None:
    """A dry run only shows a plan: it must not replace the plan of the sweep already in --out (other budgets,
    sizes or ladder), which that sweep's reruns and workers read. ValueError naming the file."""
    if not (out / "plan.json").is_file():
        return
    try:
        old = {s.run_id for s in read_plan(out)}
    except ValueError:
        return  # unreadable: nothing a rerun could use
    if old != {s.run_id for s in plan}:
        raise ValueError(f"--out {out}: holds another sweep's plan ({out / 'plan.csv'}, {len(old)} runs); a dry run "
                         "would overwrite it: dry-run into another --out")


def check_args(args) -> None:
    """Refuse nonsensical numbers before planning (ValueError naming the option)."""
    # seq_len >= 8: what a ladder allows (sweeps.ladders.Ladder); shorter windows hold less than one chunk of a
    # dnaHNet hierarchy and a few nucleotides of context, nothing a scaling law is about.
    for name, low in (("seq_len", 8), ("sizes", 1), ("seeds", 1), ("devices", 1), ("num_nodes", 1), ("threads", 1), ("gpus", 1),
                      ("jobs", 1),
                      ("slurm_cpus_per_task", 1), ("slurm_mem_gb", 1), ("slurm_array_parallelism", 1),
                      ("slurm_gpus_per_node", 0)):
        value = getattr(args, name)
        if value is not None and value < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {value}")
    if args.jobs > 1 and args.launcher != "local":
        raise ValueError(f"--jobs is for --launcher local (--launcher {args.launcher} has its own parallelism)")
    if args.span is not None and not args.span > 1:
        raise ValueError(f"--span must be > 1 (largest / smallest parameters), got {args.span}")


def check_unchanged(out: Path, specs: list[RunSpec]) -> None:
    """Refuse a rerun into OUT whose runs (same run ids) would get other settings than those OUT already
    planned or trained: finished runs are skipped by run id, so a changed recipe would report old results
    as new ones. Raises ValueError naming the keys that differ."""
    try:
        planned = {s.run_id: s for s in read_plan(out)} if (out / "plan.json").is_file() else {}
    except (ValueError, TypeError):
        planned = {}
    changed: dict[str, dict] = {}  # key -> {"runs": set, "example": "old -> new"}
    for spec in specs:
        new = spec.run_config.to_dict()
        olds = []
        if spec.run_id in planned:
            try:
                olds.append(planned[spec.run_id].run_config.to_dict())
            except (ValueError, TypeError, KeyError) as exc:  # planned by another version of the code
                changed.setdefault("plan.json", {"runs": set(), "example": f"unusable here ({exc})"})
                changed["plan.json"]["runs"].add(spec.run_id)
        config = run_dir_of(spec, out) / "config.yaml"
        if config.is_file():
            olds.append(yaml.safe_load(config.read_text()) or {})
        for old in olds:
            for diff in config_differences(old, new):
                key, _, example = diff.partition(": ")
                entry = changed.setdefault(key, {"runs": set(), "example": example})
                entry["runs"].add(spec.run_id)
    if changed:
        parts = [f"{key} ({len(v['runs'])} run{'s' if len(v['runs']) > 1 else ''}, e.g. {v['example']})"
                 for key, v in sorted(changed.items(), key=lambda kv: -len(kv[1]["runs"]))]
        raise ValueError(f"{out} holds runs planned or trained with other settings: {'; '.join(parts[:4])}; a "
                         "changed recipe needs another --out (its finished runs would be reported as the new ones)")


def prepare_data(spec: RunSpec) -> None:
    """Build (or open) the token store once, before any worker starts (they would race to build it)."""
    GenomeDataModule(spec.run_config.data).prepare_data()


def run_sweep(specs: list[RunSpec], out_dir: str | Path, launcher: str = "local", retry_failed: bool = False,
              progress: bool = True, gpus: int | None = None, slurm: SlurmOptions | None = None,
              threads: int | None = None, jobs: int = 1) -> list[dict]:
    """Run every planned run that has no result yet; returns the rows of results.csv for the plan.
    `threads`: CPU threads per training process (default: `runner.cpu_threads`, 1 without CUDA); `jobs`:
    local runs at once (worker processes)."""
    out_dir = Path(out_dir).resolve()
    threads = cpu_threads(threads)
    finished = results_by_id(out_dir / "results.csv")
    skip = {"ok", "failed"} if not retry_failed else {"ok"}
    todo = [s for s in specs if finished.get(s.run_id, {}).get("status") not in skip]
    done = len(specs) - len(todo)
    if done:
        log.info("%d of %d runs already recorded in %s; %d to run", done, len(specs), out_dir / "results.csv", len(todo))
    if todo:
        if launcher != "local" and jobs > 1:
            raise ValueError(f"--jobs is for --launcher local (--launcher {launcher} has its own parallelism)")
        if launcher != "local" or todo[0].world_size > 1 or jobs > 1:
            prepare_data(todo[0])
        if launcher == "local":
            run_local(todo, out_dir, done, len(specs), progress, threads=threads, jobs=jobs)
        elif launcher == "local-gpus":
            run_local_gpus(todo, out_dir, done, len(specs), gpus=gpus, progress=progress, threads=threads)
        elif launcher == "slurm":
            run_slurm(todo, out_dir, done, len(specs), slurm or SlurmOptions(), progress=progress, threads=threads)
        else:
            raise ValueError(f"--launcher must be one of {', '.join(LAUNCHERS)}, got {launcher!r}")
    rows = results_by_id(out_dir / "results.csv")
    if exports_enabled(out_dir):  # finished runs whose export is missing (a crash between result and export)

        if is_rank_zero():
            backfill_exports(specs, out_dir, rows)
    return [rows[s.run_id] for s in specs if s.run_id in rows]


def summary_table(rows: list[dict]) -> str:
    head = ("run_id", "params", "tokens", "flops", "val_loss", "val_bpn", "status", "wall_s")
    cells = []
    for r in rows:
        ok = r.get("status") == "ok"
        cells.append((r["run_id"], f"{float(r['params']):,.0f}", f"{float(r['tokens']):,.0f}" if ok else "-",
                      f"{float(r['flops']):.3g}" if ok else "-", f"{float(r['val_loss']):.4f}" if ok else "-",
                      f"{float(r['val_bpn']):.4f}" if ok else "-", r["status"], f"{float(r['wall_s'] or 0):.0f}"))
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    line = lambda cs: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths, strict=True)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(c) for c in cells])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)
    rank0 = is_rank_zero()

    def plan() -> list[RunSpec]:
        check_args(args)
        specs = plan_from_args(args)
        for spec in specs:  # a tracker package not installed: one line now, not one failed run per run
            check_trackers(spec.train.get("loggers", "csv"))
        return specs

    def run(specs: list[RunSpec]) -> int:
        slurm = SlurmOptions(
            partition=args.slurm_partition, time_min=parse_slurm_time(args.slurm_time),
            gpus_per_node=args.slurm_gpus_per_node, cpus_per_task=args.slurm_cpus_per_task,
            mem_gb=args.slurm_mem_gb, array=args.slurm_array, array_parallelism=args.slurm_array_parallelism,
            executor=args.slurm_executor, wait=not args.no_wait,
        )
        check_unchanged(out, specs)
        if rank0 and args.dry_run:
            check_dry_run_keeps_plan(out, _merge_plan(out, specs) if args.only else specs)
        if rank0:
            csv_path, _ = write_plan(_merge_plan(out, specs) if args.only else specs, out,
                                     meta={"argv": sys.argv, "ladder": specs[0].ladder, "export": not args.no_export})
            print(format_table(specs))
            print(f"\n{len(specs)} runs, {sum(s.flops for s in specs):.3g} training FLOPs in total; plan: {csv_path}")
        if args.dry_run:
            return 0
        quiet_lightning()
        rows = run_sweep(specs, out, launcher=args.launcher, retry_failed=args.retry_failed,
                         progress=rank0 and not args.no_progress, gpus=args.gpus, slurm=slurm, threads=args.threads,
                         jobs=args.jobs)
        if rank0 and rows:
            print("\n" + summary_table(rows))
            failed = sum(r["status"] != "ok" for r in rows)
            print(f"\n{len(rows)} of {len(specs)} runs recorded in {out / 'results.csv'} ({failed} failed). "
                  f"Next: python -m analysis --results {out / 'results.csv'} --out {out / 'analysis'}"
                  + ("" if args.no_export else f"; zero-shot: python -m dnahnet.evals.sweep {out} --select best"))
        return 0

    return run_command(out, "sweep", plan, run)


if __name__ == "__main__":
    sys.exit(main())
