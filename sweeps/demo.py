"""The demo's live part (the library behind `python -m dnahnet.demo`, the one demo command): a `cpu-smoke`
isoFLOP sweep for each registered family that builds, then the scaling-law analysis of all of them.

`run_demo(out_dir, families, data_dir)` writes DIR/sweeps/<family>/ and DIR/analysis/. Rerunning resumes:
finished runs are skipped, an interrupted one continues from its checkpoint.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from sweeps import ladders as ladlib
from sweeps.isoflop import run_sweep
from sweeps.plan import plan_family, write_plan

log = logging.getLogger("sweeps")
REPO_ROOT = Path(__file__).resolve().parents[1]


def run_analysis(results: list[Path], out_dir: Path, extra_args: list[str] | None = None) -> int:
    """`python -m analysis --results ... --out out_dir` in a fresh process; its exit code."""
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
    """A `cpu-smoke` sweep per family (default: every registered one) into OUT/sweeps/<family>, then the
    analysis into OUT/analysis. A family that does not build is an error, never a skip.
    Returns {"results": {family: results.csv}, "analysis": exit code of the analysis}."""
    from dnahnet.registry import list_families

    out_dir = Path(out_dir)
    lad = ladlib.get_ladder(ladder) if isinstance(ladder, str) else ladder
    families = list(families or list_families())
    unknown = [f for f in families if f not in list_families()]
    if unknown:
        raise ValueError(f"unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
                         f"known: {', '.join(list_families())}")
    results = {}
    for family in families:
        rule = ladlib.get_rule(family)
        sweep_dir = out_dir / "sweeps" / family
        specs = plan_family(family, rule.default_variant, lad, overrides, data_dir=data_dir)
        write_plan(specs, sweep_dir, meta={"demo": True, "ladder": lad.name})
        log.info("%s: %d runs (%s ladder) into %s", family, len(specs), lad.name, sweep_dir)
        run_sweep(specs, sweep_dir, progress=progress)
        results[family] = sweep_dir / "results.csv"
    code = run_analysis(list(results.values()), out_dir / "analysis", analysis_args)
    return {"results": results, "analysis": code}
