"""`python -m analysis.snapshot SWEEP_DIR [SWEEP_DIR ...] OUT_DIR`: a sweep's small text logs, ready to commit.

Writes OUT_DIR/plan.csv and OUT_DIR/results.csv (the rows of every given sweep directory, e.g. one sweep
whose runs were split over several directories or machines with `--only`; a run_id may appear in one
directory only) and gathers every run's `runs/<run_id>/val_windows.csv` into one `val_windows.csv` (a row
per run, a column per validation window), so that the analysis, its figures and its window bootstrap can
be regenerated from OUT_DIR alone (`make figures`), without checkpoints.

Zero-shot results go along: every sweep's `evals.csv` (`python -m dnahnet.evals.sweep`) merged into
OUT_DIR/evals.csv (its `export` column rewritten relative to OUT_DIR) with the settings sidecar evals.json,
and, by `--exports` (default best), the exported weights (RUN_DIR/export/, model.safetensors + config.json)
of the best run of every budget (lowest val_loss per family/variant and budget), of every run, or of none,
copied into OUT_DIR/exports/<run_id>/ so that the committed reference carries the models its figures score.

A SWEEP_DIR may be an earlier snapshot (a committed `analysis/reference/...` folder, copied aside): its
val_windows.csv, exports/ and evals.csv count as its runs', so new runs extend a reference without the old
run directories. The best run of a budget is chosen over all the directories together, and OUT_DIR/exports
keeps only the chosen runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from analysis.collect import WINDOWS_FILE, ResultsError, gather_windows


def _concat_text(paths: list[Path]) -> pd.DataFrame:
    """The CSV files, as text (nothing reinterpreted), one under the other; ResultsError naming a bad file."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path, dtype=str, keep_default_na=False))
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise ResultsError(f"{path}: not a readable CSV ({exc})") from None
    return pd.concat(frames, ignore_index=True)


def _merged(paths: list[Path], identical_ok: bool = False) -> pd.DataFrame:
    """The rows of every file; a run_id in two files is an error, unless `identical_ok` and the rows are the
    same (plan.csv: directories of one sweep split with --only each hold the whole plan)."""
    table = _concat_text(paths)
    if identical_ok:
        table = table.drop_duplicates(ignore_index=True)
    if "run_id" in table.columns:
        dup = table["run_id"][table["run_id"].duplicated()]
        if len(dup):
            raise ResultsError(f"run {dup.iloc[0]!r} appears in more than one of: {', '.join(map(str, paths))}")
    return table


def _write(table: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)


EXPORTS = ("best", "all", "none")


def _export_of(sweep_dir: Path, row: pd.Series) -> Path:
    """Where a run's exported weights are: its recorded run directory's export/, the sweep's
    runs/<run_id>/export/, or (a SWEEP_DIR that is an earlier snapshot) exports/<run_id>/."""
    recorded = Path(str(row.get("run_dir", "") or "")) / "export"
    if str(row.get("run_dir", "") or "") and recorded.is_dir():
        return recorded
    in_sweep = sweep_dir / "runs" / str(row["run_id"]) / "export"
    in_snapshot = sweep_dir / "exports" / str(row["run_id"])
    return in_snapshot if not in_sweep.is_dir() and in_snapshot.is_dir() else in_sweep


def chosen_runs(results: pd.DataFrame, which: str) -> pd.DataFrame:
    """The ok rows whose exports go along: `best` (lowest val_loss per family/variant and budget among the
    ladder's runs, seed replicas aside), `all`, `none`."""
    ok = results[results.get("status", "ok") == "ok"].copy() if "status" in results else results.copy()
    if which == "none" or ok.empty:
        return ok.iloc[0:0]
    if which == "all":
        return ok
    if "seed" in ok:  # the ladder's runs (seed 0); replicas measure noise, they are not another size's optimum
        ok = ok[pd.to_numeric(ok["seed"].replace("", "0"), errors="coerce").fillna(0) == 0]
    ok["_loss"] = pd.to_numeric(ok["val_loss"], errors="coerce")
    ok["_budget"] = pd.to_numeric(ok["budget"], errors="coerce")
    ok["_variant"] = ok["variant"] if "variant" in ok else ""
    best = ok.loc[ok.groupby(["family", "_variant", "_budget"])["_loss"].idxmin()]
    return best.drop(columns=["_loss", "_budget", "_variant"])


def copy_exports(sweep_dirs: list[Path], out_dir: Path, which: str) -> dict[str, Path]:
    """Copy the chosen runs' exports into OUT_DIR/exports/<run_id>/ (each atomically); run_id -> folder.
    The best run of a budget is chosen over every directory's runs together (a budget may be split)."""
    tables = []
    for d in sweep_dirs:
        table = pd.read_csv(d / "results.csv", dtype=str, keep_default_na=False)
        table["_sweep_dir"] = str(d)
        tables.append(table)
    results = pd.concat(tables, ignore_index=True)
    copied = {}
    for _, row in chosen_runs(results, which).iterrows():
        d = Path(row["_sweep_dir"])
        src = _export_of(d, row)
        if not ((src / "config.json").is_file() and (src / "model.safetensors").is_file()):
            print(f"warning: {row['run_id']}: no export at {src} (skipped)", file=sys.stderr)
            continue
        dest = out_dir / "exports" / str(row["run_id"])
        tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
        copied[str(row["run_id"])] = dest
    if which != "none" and (out_dir / "exports").is_dir():
        for stale in sorted((out_dir / "exports").iterdir()):
            if stale.name not in copied:  # an earlier snapshot's export of a run no longer chosen
                shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    return copied


def _windows_of(sweep_dir: Path) -> Path | None:
    """A sweep's gathered window losses (from its runs/), or, for an earlier snapshot given as a SWEEP_DIR
    (no runs/ of its own), the val_windows.csv it already holds."""
    gathered = gather_windows(sweep_dir)
    if gathered is None and (sweep_dir / WINDOWS_FILE).is_file():
        return sweep_dir / WINDOWS_FILE
    return gathered


def snapshot(sweep_dirs: list[Path], out_dir: Path, exports: str = "best") -> list[Path]:
    for sweep_dir in sweep_dirs:
        for name in ("plan.csv", "results.csv"):
            if not (sweep_dir / name).is_file():
                raise ResultsError(f"{sweep_dir / name}: no such file (is {sweep_dir} a sweep directory?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ("plan.csv", "results.csv"):
        _write(_merged([d / name for d in sweep_dirs], identical_ok=name == "plan.csv"), out_dir / name)
        written.append(out_dir / name)
    gathered = [g for g in (_windows_of(d) for d in sweep_dirs) if g is not None]
    if gathered:
        _write(_merged(gathered), out_dir / WINDOWS_FILE)
        written.append(out_dir / WINDOWS_FILE)
    if exports not in EXPORTS:
        raise ResultsError(f"--exports must be one of {', '.join(EXPORTS)}, got {exports!r}")
    copied = copy_exports(sweep_dirs, out_dir, exports)
    written += [copied[k] for k in sorted(copied)]
    evals = [d / "evals.csv" for d in sweep_dirs if (d / "evals.csv").is_file()]
    if evals:
        table = _concat_text(evals)
        if "export" in table:  # where the weights are now: beside the snapshot, or not kept
            table["export"] = [f"exports/{rid}" if rid in copied else "" for rid in table["run_id"]]
        _write(table, out_dir / "evals.csv")
        written.append(out_dir / "evals.csv")
        settings = {}
        for d in sweep_dirs:
            if (d / "evals.json").is_file():
                settings.update(json.loads((d / "evals.json").read_text()))
        if settings:
            tmp = out_dir / ".evals.json.tmp"
            tmp.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
            tmp.replace(out_dir / "evals.json")
            written.append(out_dir / "evals.json")
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.snapshot", description=__doc__.splitlines()[0])
    p.add_argument("sweep_dirs", type=Path, nargs="+", metavar="SWEEP_DIR", help="a sweep's --out directory")
    p.add_argument("out_dir", type=Path, help="where the logs go (e.g. analysis/reference/cpu/<family>)")
    p.add_argument("--exports", choices=EXPORTS, default="best",
                   help="exported weights to copy into OUT_DIR/exports/: best (the lowest-val_loss run of each "
                        "budget; default), all, none")
    args = p.parse_args(argv)
    try:
        written = snapshot(args.sweep_dirs, args.out_dir, args.exports)
    except (ResultsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
