"""Load and validate the `results.csv` files that isoFLOP sweeps write.

Analysis reads only what runs wrote: one row per run with its family, optional variant, planned budget
(FLOPs), parameter counts, training tokens, actual training FLOPs, final validation loss and status.
Every problem is reported as a `ResultsError` naming the file (and line and column where there is one),
so the command line can print one clear line instead of a traceback.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = (
    "family", "variant", "budget", "params", "params_non_embedding", "tokens", "flops",
    "val_loss", "val_bpn", "status", "wall_s", "run_dir",
)
NUMERIC_COLUMNS = (
    "budget", "params", "params_non_embedding", "tokens", "flops", "val_loss", "val_bpn", "wall_s",
)
# Columns an `ok` run must carry as finite, positive numbers: the fits take logs of all of them.
POSITIVE_FOR_OK = ("budget", "params", "params_non_embedding", "tokens", "val_loss")
STATUSES = ("ok", "failed")


class ResultsError(ValueError):
    """Bad sweep results: the message names the file and, where there is one, the line and column."""


@dataclass
class Collected:
    """Usable runs of every sweep file, plus what was dropped.

    `runs` has one row per `ok` run with the original columns plus `key` (`family` or
    `family/variant`), `N` (the parameter count used for fitting), `D` (= `tokens`), `C` (= `budget`)
    and `L` (= `val_loss`, nats/nt).
    """

    runs: pd.DataFrame
    n_failed: dict[str, int]  # key -> failed runs dropped
    sources: list[str]  # the files read, in order
    params_column: str = "params"  # which parameter count `N` is
    duplicates_dropped: int = 0  # rows superseded by a later row for the same run_dir
    keys: list[str] = field(default_factory=list)  # sorted keys with at least one usable run
    windows: dict[str, np.ndarray] = field(default_factory=dict)  # run name -> per-window val losses
    # `ok` runs of seed index >= 1 (replicas of a main-ladder run with another seed; run ids end in -s1,
    # -s2, ...), same columns as `runs`. Every fit reads `runs` (seed 0) only; replicas measure training noise.
    replicas: pd.DataFrame = field(default_factory=pd.DataFrame)
    replicas_failed: int = 0  # failed replica runs dropped

    def window_matrix(self, runs: pd.DataFrame) -> np.ndarray | None:
        """(len(runs), W) per-window validation losses of these runs, row-aligned, or None unless every
        run has them over the same number of windows (then the bootstrap resamples residuals only)."""
        rows = [self.windows.get(name) for name in runs["run_name"]]
        if not rows or any(r is None for r in rows) or len({r.size for r in rows}) != 1:
            return None
        return np.stack(rows)


def explicit_files(paths, flag: str) -> list[Path]:
    """Files a user named (`flag` PATH ...), each of which must exist (ResultsError naming it)."""
    out = [Path(p) for p in paths]
    for p in out:
        if not p.is_file():
            raise ResultsError(f"{flag} {p}: no such file")
    return out


def to_numeric_columns(frame: pd.DataFrame, columns, path) -> None:
    """Convert text `columns` of `frame` (read with dtype=str) to float in place: empty or "nan" is NaN,
    anything else non-numeric is a ResultsError naming the file, line and column."""
    for column in columns:
        text = frame[column].str.strip()
        values = pd.to_numeric(text.where(text != "", None), errors="coerce")
        bad = values.isna() & (text != "") & (text.str.lower() != "nan")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise ResultsError(f"{path}: line {row + 2}, column {column}: non-numeric value {text.iloc[row]!r}")
        frame[column] = values.astype(float)


def files_beside(results_paths, filename: str) -> list[Path]:
    """Every `filename` beside one of the results.csv files or in its parent folder (a sweep per family
    sharing one file above them, as analysis/reference/cpu does), each once, in order."""
    found: list[Path] = []
    for r in results_paths:
        for candidate in (Path(r).parent / filename, Path(r).parent.parent / filename):
            if candidate.is_file() and candidate.resolve() not in [f.resolve() for f in found]:
                found.append(candidate)
    return found


def run_key(family: str, variant: object) -> str:
    """`family`, or `family/variant` when the variant is set (not empty / NaN)."""
    if variant is None or (isinstance(variant, float) and math.isnan(variant)):
        return family
    text = str(variant).strip()
    return f"{family}/{text}" if text else family


def _read_one(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ResultsError(f"{path}: {'a directory, not a results file' if path.is_dir() else 'no such file'}")
    try:
        # Everything as text first, so a stray word in a numeric column is reported, not guessed at.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise ResultsError(f"{path}: empty file (no header, no runs)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None
    except OSError as err:  # no read permission, an I/O error
        raise ResultsError(f"{path}: cannot read it ({err.strerror or err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.fillna("")  # short rows: missing trailing fields are empty, like empty fields
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty:
        raise ResultsError(f"{path}: empty file (a header but no runs)")
    for column in ("family", "variant", "status", "run_dir"):
        frame[column] = frame[column].str.strip()
    to_numeric_columns(frame, NUMERIC_COLUMNS, path)
    frame["status"] = frame["status"].str.lower()
    bad_status = ~frame["status"].isin(STATUSES)
    if bad_status.any():
        row = int(np.flatnonzero(bad_status.to_numpy())[0])
        raise ResultsError(
            f"{path}: line {row + 2}, column status: {frame['status'].iloc[row]!r} is not one of "
            f"{', '.join(STATUSES)}"
        )
    no_family = frame["family"] == ""
    if no_family.any():
        raise ResultsError(f"{path}: line {int(np.flatnonzero(no_family.to_numpy())[0]) + 2}: empty family")
    ok = frame["status"] == "ok"
    for column in POSITIVE_FOR_OK:
        values = frame[column].to_numpy()
        bad = ok.to_numpy() & ~(np.isfinite(values) & (values > 0))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ResultsError(
                f"{path}: line {row + 2}, column {column}: an ok run needs a positive number, "
                f"got {frame[column].iloc[row]!r}"
            )
    frame["seed"] = _seed_column(path, frame)
    frame["variant"] = frame["variant"].replace("", np.nan)
    frame["source"] = str(path)
    frame["line"] = np.arange(len(frame)) + 2
    return frame


def _seed_column(path: Path, frame: pd.DataFrame) -> np.ndarray:
    """The integer `seed` index of every row (0: the main ladder; 1, 2, ...: replicas); 0 where the file has
    no seed column or the field is empty (files written before replicas existed)."""
    if "seed" not in frame.columns:
        return np.zeros(len(frame), dtype=int)
    text = frame["seed"].astype(str).str.strip()
    values = pd.to_numeric(text.where(text != "", "0"), errors="coerce")
    bad = values.isna() | (values < 0) | (values != np.floor(values.fillna(0)))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ResultsError(f"{path}: line {row + 2}, column seed: expected a seed index 0, 1, 2, ..., "
                           f"got {text.iloc[row]!r}")
    return values.to_numpy().astype(int)


WINDOWS_FILE = "val_windows.csv"  # per-window validation losses (dnahnet/window_losses.py writes one per run)


def run_name(row: pd.Series) -> str:
    """A run's name: its run_id column where there is one, else its run directory's name."""
    name = str(row.get("run_id", "") or "").strip()
    return name or Path(str(row["run_dir"])).name


def read_window_file(path: Path) -> np.ndarray:
    """The `loss` column of one run's `val_windows.csv` (window,loss,tokens)."""
    try:
        frame = pd.read_csv(path)
        return frame["loss"].to_numpy(dtype=float)
    except (OSError, KeyError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ResultsError(f"{path}: not a per-window loss file ({err})") from None


def read_sweep_windows(path: Path) -> dict[str, np.ndarray]:
    """A sweep's gathered `val_windows.csv`: one row per run, `run_id,w0,w1,...`."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ResultsError(f"{path}: not a sweep window-loss file ({err})") from None
    if "run_id" not in frame.columns or frame.shape[1] < 2:
        raise ResultsError(f"{path}: expected columns run_id,w0,w1,...")
    text = frame.drop(columns="run_id")
    numbers = text.apply(lambda col: pd.to_numeric(col.str.strip().replace("", "nan"), errors="coerce"))
    bad = numbers.isna().to_numpy() & ~text.apply(lambda col: col.str.strip().str.lower().isin(("", "nan"))).to_numpy()
    if bad.any():  # a stray word among the losses: named, not turned into NaN or a traceback
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise ResultsError(f"{path}: line {row + 2}, column {text.columns[col]}: non-numeric value "
                           f"{text.iat[row, col]!r}")
    values = numbers.to_numpy(dtype=float)
    return {str(r): values[i] for i, r in enumerate(frame["run_id"])}


def gather_windows(sweep_dir: str | Path) -> Path | None:
    """Write SWEEP/val_windows.csv from SWEEP/runs/*/val_windows.csv (one row per run, wide), so the
    window losses travel with results.csv; None when no run wrote any."""
    sweep_dir = Path(sweep_dir)
    found = {p.parent.name: read_window_file(p) for p in sorted((sweep_dir / "runs").glob(f"*/{WINDOWS_FILE}"))}
    if not found:
        return None
    width = max(v.size for v in found.values())
    lines = ["run_id," + ",".join(f"w{i}" for i in range(width))]
    lines += [name + "," + ",".join(f"{x:.7f}" for x in v) for name, v in found.items()]
    out = sweep_dir / WINDOWS_FILE
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    return out


def _load_windows(path: Path, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-window losses of a results file's runs: the sweep's gathered file beside it, else each run
    directory's own file where it exists."""
    gathered = path.parent / WINDOWS_FILE
    if gathered.is_file():
        return read_sweep_windows(gathered)
    out = {}
    for _, row in frame.iterrows():
        own = Path(str(row["run_dir"])) / WINDOWS_FILE
        if str(row["run_dir"]) and own.is_file():
            out[run_name(row)] = read_window_file(own)
    return out


def load_results(paths: Iterable[str | Path], params_column: str = "params") -> Collected:
    """Read, validate and merge sweep result files; keep the `ok` runs and count the failed ones.

    `params_column` picks the parameter count N the fits use (`params` or `params_non_embedding`).
    When several rows name the same non-empty `run_dir` (a run re-recorded after a resume), the last
    one read wins and the others are dropped with a warning. Rows of seed index >= 1 (the `seed` column;
    absent: 0) go to `replicas`, never into `runs`.
    """
    if params_column not in ("params", "params_non_embedding"):
        raise ResultsError(f"--params-column must be params or params_non_embedding, got {params_column!r}")
    paths = [Path(p) for p in paths]
    if not paths:
        raise ResultsError("no results files given")
    frames = [_read_one(p) for p in paths]
    windows: dict[str, np.ndarray] = {}
    for p, f in zip(paths, frames, strict=True):
        f["run_name"] = [run_name(row) for _, row in f.iterrows()]
        windows.update(_load_windows(p, f))
    frame = pd.concat(frames, ignore_index=True)
    frame["key"] = [run_key(f, v) for f, v in zip(frame["family"], frame["variant"], strict=True)]

    has_dir = frame["run_dir"] != ""
    superseded = has_dir & frame.duplicated(subset="run_dir", keep="last")
    duplicates = int(superseded.sum())
    if duplicates:
        log.warning("%d row(s) re-record an earlier run_dir; keeping the last row of each", duplicates)
        frame = frame[~superseded].reset_index(drop=True)

    failed = frame["status"] == "failed"
    if failed.all():
        names = ", ".join(str(p) for p in paths)
        raise ResultsError(f"{names}: all {len(frame)} runs failed; nothing to fit")
    main = frame["seed"] == 0
    n_failed = {k: int(v) for k, v in frame[failed & main].groupby("key").size().items()}
    replicas_failed = int((failed & ~main).sum())

    def usable(rows: pd.DataFrame) -> pd.DataFrame:
        rows = rows.assign(N=rows[params_column], D=rows["tokens"], C=rows["budget"], L=rows["val_loss"])
        return rows.sort_values(["key", "C", "N", "seed"]).reset_index(drop=True)

    runs = usable(frame[~failed & main])
    replicas = usable(frame[~failed & ~main])
    if runs.empty:
        names = ", ".join(str(p) for p in paths)
        raise ResultsError(f"{names}: no usable run of seed 0 (the main ladder); nothing to fit")
    orphans = sorted(set(replicas["key"]) - set(runs["key"]))
    if orphans:
        log.warning("replica runs of %s have no seed-0 runs; they are ignored", ", ".join(orphans))
        replicas = replicas[~replicas["key"].isin(orphans)].reset_index(drop=True)
    if replicas_failed:
        log.warning("%d failed replica run(s) dropped", replicas_failed)
    keys = sorted(runs["key"].unique())
    if "comparisons" in keys:
        raise ResultsError("a family may not be called 'comparisons' (a reserved key in fits.json)")
    for key in sorted(set(n_failed) - set(keys)):
        log.warning("%s: all %d runs failed; it is left out of the fits", key, n_failed[key])
    return Collected(
        runs=runs, n_failed=n_failed, sources=[str(p) for p in paths], params_column=params_column,
        duplicates_dropped=duplicates, keys=keys, windows=windows, replicas=replicas,
        replicas_failed=replicas_failed,
    )
