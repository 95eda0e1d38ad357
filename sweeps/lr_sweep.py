"""Learning-rate sweep: one model of a family's ladder, one budget, several peak learning rates.

    python -m sweeps.lr_sweep --model dnahnet --ladder cpu --budget 1e12 --lrs 3e-3,6e-3,1.2e-2 \
        --lr-multipliers 2,1.5,1 --lr-multipliers 1,1,1 --out SWEEPS/lr-dnahnet --jobs 2

The model is the middle size of the ladder at `--budget` (or `--size NAME`), planned exactly as the isoFLOP
sweep plans it (tokens, batch, schedule, data); only the peak learning rate changes, and for dnaHNet the
per-stage learning-rate multipliers (`--lr-multipliers`, repeatable; the model's own when not given). Each
choice is one run `RUN_ID-lr<LR>[-m<MULTIPLIERS>]` of an ordinary sweep directory (plan.json, results.csv,
runs/: resumable, identity-checked like any sweep), and `OUT/lr_sweep.csv` gathers them: family, variant,
budget, size, params, params_non_embedding, lr, lr_multipliers, val_loss, run_id. The analysis reads that
file (the learning-rate figure) and `sweeps/ladders.py` records the rule each family's ladder trains at.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import sys
from pathlib import Path

import pandas as pd

from dnahnet.fileio import atomic_write_text
from sweeps import ladders as ladlib
from sweeps.command import run_command
from sweeps.isoflop import check_unchanged, resolve_variants, run_sweep
from sweeps.plan import RunSpec, budget_tag, format_table, load_overrides, plan_family, write_plan
from sweeps.runner import quiet_lightning, results_by_id

log = logging.getLogger("sweeps")

COLUMNS = ("family", "variant", "budget", "size", "params", "params_non_embedding", "lr", "lr_multipliers",
           "val_loss", "run_id")


def parse_floats(text: str, what: str) -> list[float]:
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what}: {text!r} is not a comma-separated list of numbers") from None
    if not values or any(not v > 0 for v in values):
        raise ValueError(f"{what}: {text!r}: give positive numbers, e.g. 3e-3,6e-3,1.2e-2")
    return values


def lr_specs(base: RunSpec, lrs: list[float], multipliers: list[list[float]] | None) -> list[RunSpec]:
    """One spec per (lr, multipliers) choice: `base` with the peak learning rate (and the model's per-stage
    multipliers) replaced; run ids carry the choice."""
    out = []
    for mult in multipliers or [None]:
        for lr in lrs:
            run_id = f"{base.run_id}-lr{lr:g}" + (f"-m{'.'.join(f'{m:g}' for m in mult)}" if mult else "")
            model = {**base.model, **({"lr_multipliers": list(mult)} if mult else {})}
            out.append(dataclasses.replace(base, run_id=run_id, lr=float(lr), train={**base.train, "lr": float(lr)},
                                           model=model))
    return out


def table(specs: list[RunSpec], results: dict[str, dict]) -> pd.DataFrame:
    """The lr_sweep.csv rows of the finished runs."""
    rows = []
    for s in specs:
        r = results.get(s.run_id)
        if not r or r.get("status") != "ok":
            continue
        mult = s.model.get("lr_multipliers")
        rows.append({"family": s.family, "variant": s.variant or "", "budget": s.budget, "size": s.size,
                     "params": s.params, "params_non_embedding": s.params_non_embedding, "lr": s.lr,
                     "lr_multipliers": ",".join(f"{m:g}" for m in mult) if mult else "",
                     "val_loss": float(r["val_loss"]), "run_id": s.run_id})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sweeps.lr_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="model family: transformer, stripedhyena, dnahnet")
    p.add_argument("--variant", default=None, help="family variant (default: the ladder's)")
    p.add_argument("--ladder", default="cpu", help=f"ladder whose recipe and rules are used: {', '.join(ladlib.LADDERS)}")
    p.add_argument("--budget", type=float, required=True, help="training FLOPs of every run, e.g. 1e12")
    p.add_argument("--size", default=None, help="the ladder size to train (default: the budget's middle size)")
    p.add_argument("--lrs", required=True, help="peak learning rates, e.g. 3e-3,6e-3,1.2e-2 (>= 3 to choose one)")
    p.add_argument("--lr-multipliers", action="append", default=None, metavar="M0,M1,...",
                   help="dnaHNet: per-stage learning-rate multipliers to compare, outermost first (repeatable)")
    p.add_argument("--set", dest="assignments", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="config override applied to every run (as in sweeps/isoflop.py)")
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    p.add_argument("--jobs", type=int, default=1, help="runs at once on this machine")
    p.add_argument("--threads", type=int, default=None, help="CPU threads per run (default 1 without CUDA)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def plan(args) -> list[RunSpec]:
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    ladder = ladlib.custom_ladder([args.budget], base=args.ladder)
    variant = resolve_variants(args.model, [args.variant] if args.variant else None)[0]
    specs = plan_family(args.model, variant, ladder, load_overrides(None, args.assignments), data_dir=args.data_dir)
    if not specs:
        raise ValueError(f"--budget {budget_tag(args.budget)}: every size was dropped (too few steps)")
    if args.size is None:
        base = specs[len(specs) // 2]
    else:
        named = [s for s in specs if s.size == args.size]
        if not named:
            raise ValueError(f"--size {args.size!r}: the ladder's sizes at {budget_tag(args.budget)} are "
                             f"{', '.join(s.size for s in specs)}")
        base = named[0]
    mults = None
    if args.lr_multipliers:
        if args.model != "dnahnet":
            raise ValueError(f"--lr-multipliers: {args.model} has no per-stage learning-rate multipliers")
        mults = [parse_floats(m, "--lr-multipliers") for m in args.lr_multipliers]
    return lr_specs(base, parse_floats(args.lrs, "--lrs"), mults)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = Path(args.out)

    def run(specs: list[RunSpec]) -> int:
        check_unchanged(out, specs)
        write_plan(specs, out, meta={"argv": sys.argv, "ladder": specs[0].ladder, "export": True, "lr_sweep": True})
        print(format_table(specs))
        quiet_lightning()
        run_sweep(specs, out, progress=not args.no_progress, threads=args.threads, jobs=args.jobs)
        frame = table(specs, results_by_id(out / "results.csv"))
        buf = io.StringIO()
        frame.to_csv(buf, index=False)
        atomic_write_text(out / "lr_sweep.csv", buf.getvalue())
        print(frame.sort_values(["lr_multipliers", "lr"]).to_string(index=False))
        if len(frame):
            best = frame.loc[frame["val_loss"].idxmin()]
            print(f"\nbest: lr {best['lr']:g}" + (f", multipliers {best['lr_multipliers']}" if best["lr_multipliers"] else "")
                  + f" (val_loss {best['val_loss']:.5f}); table: {out / 'lr_sweep.csv'}")
        return 0

    return run_command(out, "learning-rate sweep", lambda: plan(args), run)


if __name__ == "__main__":
    sys.exit(main())
