"""The README demo's sweep part: a `cpu-smoke` isoFLOP sweep for each registered family that builds, then
the scaling-law analysis of all of them.

    python -m sweeps.demo --out demo            # every family; DIR/sweeps/<family>/, DIR/analysis/
    python -m sweeps.demo --out demo --families transformer,dnahnet --data-dir ../shared/data

`run_demo(out_dir, families, data_dir)` is what `dnahnet/demo.py` (`make demo`) calls. Rerunning resumes: finished runs
are skipped, an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python sweeps/demo.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps import ladders as ladlib  # noqa: E402
from sweeps.isoflop import run_sweep, summary_table  # noqa: E402
from sweeps.plan import plan_family, write_plan  # noqa: E402

log = logging.getLogger("sweeps")
REPO_ROOT = Path(__file__).resolve().parents[1]


def buildable_families(families: list[str] | None = None) -> dict[str, str | None]:
    """family -> None when it builds (config + a meta-device model), else the reason it does not."""
    from dnahnet.registry import list_families

    out = {}
    for family in families or [f for f in ("transformer", "stripedhyena", "dnahnet") if f in list_families()]:
        try:
            rule = ladlib.get_rule(family)
            ladlib.stats_of(family, rule.default_variant, rule.shape(rule.widths[0], rule.preferred_depth(rule.widths[0], rule.default_variant)), 64, rule.preset)
            out[family] = None
        except Exception as exc:  # a family still being written, a missing optional dependency, ...
            out[family] = f"{type(exc).__name__}: {exc}"
    return out


def run_analysis(results: list[Path], out_dir: Path, extra_args: list[str] | None = None) -> int | None:
    """`python -m analysis --results ... --out out_dir`; None when the analysis package has no __main__."""
    if importlib.util.find_spec("analysis") is None or importlib.util.find_spec("analysis.__main__") is None:
        log.warning("no `analysis` command (analysis/__main__.py): skipping the scaling-law analysis")
        return None
    cmd = [sys.executable, "-m", "analysis", "--results", *map(str, results), "--out", str(out_dir), *(extra_args or [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    log.info("analysis: %s", " ".join(cmd))
    code = subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode
    if code:
        log.warning("the analysis exited with code %d (see its message above)%s", code,
                    "; its tables and figures are in " + str(out_dir) if (out_dir / "summary.md").exists() else "")
    return code


def run_demo(out_dir: str | os.PathLike, families: list[str] | None = None, data_dir: str | None = None,
             ladder: str | ladlib.Ladder = "cpu-smoke", progress: bool = True, overrides=None,
             analysis_args: list[str] | None = None) -> dict:
    """A `cpu-smoke` sweep per buildable family into OUT/sweeps/<family>, then the analysis into
    OUT/analysis. Returns {"results": {family: results.csv}, "skipped": {family: reason}, "analysis": code}."""
    out_dir = Path(out_dir)
    lad = ladlib.get_ladder(ladder) if isinstance(ladder, str) else ladder
    status = buildable_families(families)
    results, skipped = {}, {}
    for family, reason in status.items():
        if reason:
            log.warning("skipping %s: it does not build (%s)", family, reason)
            skipped[family] = reason
            continue
        rule = ladlib.get_rule(family)
        sweep_dir = out_dir / "sweeps" / family
        specs = plan_family(family, rule.default_variant, lad, overrides, data_dir=data_dir)
        write_plan(specs, sweep_dir, meta={"demo": True, "ladder": lad.name})
        log.info("%s: %d runs (%s ladder) into %s", family, len(specs), lad.name, sweep_dir)
        rows = run_sweep(specs, sweep_dir, progress=progress)
        print(f"\n{family}\n" + summary_table(rows))
        results[family] = sweep_dir / "results.csv"
    code = run_analysis(list(results.values()), out_dir / "analysis", analysis_args) if results else None
    return {"results": results, "skipped": skipped, "analysis": code}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sweeps.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="demo directory")
    p.add_argument("--families", default=None, help="comma-separated families (default: every one that builds)")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    p.add_argument("--ladder", default="cpu-smoke", help=f"one of {', '.join(ladlib.LADDERS)}")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from sweeps.runner import quiet_lightning

    quiet_lightning()
    families = [f.strip() for f in args.families.split(",")] if args.families else None
    try:
        out = run_demo(args.out, families, args.data_dir, args.ladder, progress=not args.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not out["results"]:
        print("error: no family could be swept", file=sys.stderr)
        return 2
    # Toy budgets may leave the analysis without a power-law fit (exit 2) after it wrote its tables and
    # figures: the demo still succeeded. Any other failure is the demo's.
    written = (Path(args.out) / "analysis" / "summary.md").exists()
    return 0 if out["analysis"] in (0, None) or (out["analysis"] == 2 and written) else out["analysis"]


if __name__ == "__main__":
    sys.exit(main())
