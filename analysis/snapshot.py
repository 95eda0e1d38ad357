"""`python -m analysis.snapshot SWEEP_DIR [SWEEP_DIR ...] OUT_DIR`: a sweep's small text logs, ready to commit.

Writes OUT_DIR/plan.csv and OUT_DIR/results.csv (the rows of every given sweep directory, e.g. one sweep
whose runs were split over several directories or machines with `--only`; a run_id may appear in one
directory only) and gathers every run's `runs/<run_id>/val_windows.csv` into one `val_windows.csv` (a row
per run, a column per validation window), so that the analysis, its figures and its window bootstrap can
be regenerated from OUT_DIR alone (`make figures`), without checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from analysis.collect import WINDOWS_FILE, ResultsError, gather_windows


def _merged(paths: list[Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ResultsError(f"{path}: not a readable CSV ({exc})") from None
    table = pd.concat(frames, ignore_index=True)
    if "run_id" in table.columns:
        dup = table["run_id"][table["run_id"].duplicated()]
        if len(dup):
            raise ResultsError(f"run {dup.iloc[0]!r} appears in more than one of: {', '.join(map(str, paths))}")
    return table


def _write(table: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)


def snapshot(sweep_dirs: list[Path], out_dir: Path) -> list[Path]:
    for sweep_dir in sweep_dirs:
        for name in ("plan.csv", "results.csv"):
            if not (sweep_dir / name).is_file():
                raise ResultsError(f"{sweep_dir / name}: no such file (is {sweep_dir} a sweep directory?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("plan.csv", "results.csv"):
        _write(_merged([d / name for d in sweep_dirs]), out_dir / name)
        written.append(out_dir / name)
    gathered = [g for g in (gather_windows(d) for d in sweep_dirs) if g is not None]
    if gathered:
        _write(_merged(gathered), out_dir / WINDOWS_FILE)
        written.append(out_dir / WINDOWS_FILE)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.snapshot", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dirs", type=Path, nargs="+", metavar="SWEEP_DIR", help="a sweep's --out directory")
    p.add_argument("out_dir", type=Path, help="where the logs go (e.g. analysis/reference/cpu/<family>)")
    args = p.parse_args(argv)
    try:
        written = snapshot(args.sweep_dirs, args.out_dir)
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
