"""`python -m analysis.snapshot SWEEP_DIR OUT_DIR`: the small text logs of a sweep, ready to commit.

Copies `plan.csv` and `results.csv` and gathers every run's `runs/<run_id>/val_windows.csv` into one
`val_windows.csv` (a row per run, a column per validation window), so that the analysis, its figures
and its window bootstrap can be regenerated from OUT_DIR alone (`make figures`), without checkpoints.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from analysis.collect import WINDOWS_FILE, ResultsError, gather_windows


def snapshot(sweep_dir: Path, out_dir: Path) -> list[Path]:
    for name in ("plan.csv", "results.csv"):
        if not (sweep_dir / name).is_file():
            raise ResultsError(f"{sweep_dir / name}: no such file (is {sweep_dir} a sweep directory?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("plan.csv", "results.csv"):
        tmp = out_dir / f".{name}.tmp"
        shutil.copyfile(sweep_dir / name, tmp)
        tmp.replace(out_dir / name)
        written.append(out_dir / name)
    gathered = gather_windows(sweep_dir)
    if gathered is not None:
        tmp = out_dir / f".{WINDOWS_FILE}.tmp"
        shutil.copyfile(gathered, tmp)
        tmp.replace(out_dir / WINDOWS_FILE)
        written.append(out_dir / WINDOWS_FILE)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.snapshot", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dir", type=Path, help="a sweep's --out directory")
    p.add_argument("out_dir", type=Path, help="where the logs go (e.g. analysis/reference/cpu/<family>)")
    args = p.parse_args(argv)
    try:
        written = snapshot(args.sweep_dir, args.out_dir)
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
