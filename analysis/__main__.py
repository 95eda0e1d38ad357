"""`python -m analysis --results RESULTS.csv [MORE.csv ...] --out DIR`: every fit, table and figure.

Writes DIR/figures/*.png|pdf, DIR/summary.md and DIR/fits.json. With zero-shot results (`--evals FILE ...`,
or an evals.csv of `python -m dnahnet.evals.sweep` beside a results.csv) also the `zeroshot` and
`boundaries` figures and their tables (`analysis.evals`); with a learning-rate sweep (`--lr-sweep FILE ...`,
or an lr_sweep.csv beside a results.csv or one folder up) the `lr_sweep` figure and table. The headline
comparison is the measured compute multipliers (`analysis.measured`: best runs, no fit); replicas of other
seeds (results.csv's `seed` >= 1) are never fitted, they give the training-noise table. Bad input (a missing file or column,
an empty file, non-numeric values, every run failed) prints one line to stderr and exits with 2.
When no family has two usable budgets (e.g. a single budget), what can be drawn and tabulated is
still written, then the same one-line error and exit code 2; with `--allow-no-fit` (a toy sweep, such as the
demo's live one, too small to bracket an optimum) a one-line note and exit code 0 instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zlib
from pathlib import Path

from analysis.approach2 import fit_approach2
from analysis.approach3 import InitGrid, fit_approach3
from analysis.collect import ResultsError, load_results
from analysis.compare import compare
from analysis.evals import compute_optimal, find_evals, load_evals, summary_lines, write_eval_figures
from analysis.figures import write_figures
from analysis.lr_sweep import find_lr_sweeps, load_lr_sweeps, lr_json, lr_sweep_figure
from analysis.lr_sweep import summary_lines as lr_summary_lines
from analysis.markov import MarkovError, find_floor
from analysis.measured import measured_multipliers, training_noise
from analysis.summary import write_outputs

log = logging.getLogger("analysis")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__.splitlines()[0])
    parser.add_argument("--results", nargs="+", required=True, metavar="CSV",
                        help="results.csv files written by isoFLOP sweeps (merged)")
    parser.add_argument("--evals", nargs="+", default=None, metavar="CSV",
                        help="evals.csv files of python -m dnahnet.evals.sweep (default: evals.csv beside each "
                             "results.csv, where there is one)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output directory")
    parser.add_argument("--bootstrap", type=int, default=200, metavar="N",
                        help="bootstrap resamples for confidence intervals (default 200; 0: none)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--params-column", default="params", choices=("params", "params_non_embedding"),
                        help="parameter count used as N (default params)")
    parser.add_argument("--a3-grid", default="default", choices=("coarse", "default", "chinchilla"),
                        help="Approach 3 L-BFGS starts: coarse 162, default 768, chinchilla 4500")
    parser.add_argument("--markov", type=Path, metavar="CSV",
                        help="markov.csv of the sweeps' data (python -m analysis.markov); default: a markov.csv "
                             "beside a results.csv or in its parent folder")
    parser.add_argument("--lr-sweep", nargs="+", default=None, metavar="CSV",
                        help="lr_sweep.csv files of the learning-rate sweep (default: lr_sweep.csv beside a "
                             "results.csv or in its parent folder, where there is one)")
    parser.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    parser.add_argument("--allow-no-fit", action="store_true",
                        help="no family with a scaling-law fit is a note and exit 0, not an error (toy sweeps)")
    args = parser.parse_args(argv)
    if args.bootstrap < 0:
        parser.error("--bootstrap must be >= 0")
    return args


def _key_seed(seed: int, key: str) -> int:
    """A per-family seed, so one family's intervals do not change when another is added."""
    return seed * 1_000_003 + zlib.crc32(key.encode())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        collected = load_results(args.results, args.params_column)
        floor = find_floor(args.results, args.markov)
    except (ResultsError, MarkovError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        eval_paths = find_evals(args.results, args.evals)
        evals = compute_optimal(load_evals(eval_paths)) if eval_paths else None
        lr_paths = find_lr_sweeps(args.results, args.lr_sweep)
        lr_table = load_lr_sweeps(lr_paths)
    except ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if floor is not None:
        log.info("Markov floor %.4f nats/nt (order %d, %s) from %s", floor.best.val_loss, floor.best.k,
                 floor.best.smoothing, floor.source)
    runs = collected.runs
    log.info("%d usable runs of %d famil%s from %d file(s); %d failed run(s) dropped", len(runs),
             len(collected.keys), "y" if len(collected.keys) == 1 else "ies", len(collected.sources),
             sum(collected.n_failed.values()))

    approach2, approach3 = {}, {}
    for key in collected.keys:
        sub = runs[runs["key"] == key]
        seed = _key_seed(args.seed, key)
        approach2[key] = fit_approach2(key, sub, n_boot=args.bootstrap, seed=seed,
                                       windows=collected.window_matrix(sub))
        approach3[key] = fit_approach3(key, sub, n_boot=args.bootstrap, seed=seed + 1,
                                       grid=InitGrid.named(args.a3_grid), progress=not args.quiet)
    comparison = compare(approach2)  # fitted frontiers (the multipliers there are extrapolated)
    noise = training_noise(runs, collected.replicas, collected.windows, approach2)
    measured = measured_multipliers(runs, noise, collected.windows)  # the headline: best runs, no fit
    if len(collected.replicas):
        log.info("%d replica run(s) of other seeds: training noise only, not fitted", len(collected.replicas))

    try:
        figures = write_figures(runs, approach2, approach3, args.out / "figures",
                                floor.best if floor is not None else None, collected.replicas)
        extra = []
        if len(lr_table):
            figures += lr_sweep_figure(lr_table, args.out / "figures" / "lr_sweep")
            extra += lr_summary_lines(lr_table, lr_paths)
        if evals is not None and len(evals):
            figures += write_eval_figures(evals, args.out / "figures")
            extra += summary_lines(evals, eval_paths)
        summary, fits = write_outputs(args.out, collected, approach2, approach3, comparison,
                                      args.bootstrap, args.seed, extra, floor, measured, noise,
                                      lr_json(lr_table, lr_paths))
    except OSError as err:
        print(f"error: cannot write to {args.out}: {err}", file=sys.stderr)
        return 2
    log.info("wrote %s, %s and %d figure files in %s", summary.name, fits.name, len(figures),
             args.out / "figures")

    if all(r.skipped for r in approach2.values()):
        reasons = "; ".join(f"{k}: {r.skipped}" for k, r in approach2.items())
        if args.allow_no_fit:
            print(f"note: no family has a scaling-law fit ({reasons}); isoFLOP figures, optima and summary "
                  f"written to {args.out}")
            return 0
        print(f"error: no family has a scaling-law fit ({reasons}); isoFLOP figures, optima and "
              f"summary written to {args.out}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
