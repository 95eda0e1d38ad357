"""The learning-rate sweep: validation loss against the learning rate, per family (and, for dnaHNet, per
setting of its per-stage learning-rate multipliers).

Reads `lr_sweep.csv` (columns family, variant, budget, size, params, params_non_embedding, lr,
lr_multipliers, val_loss, run_id; optional status): `--lr-sweep FILE ...`, else every lr_sweep.csv beside a
results.csv or in its parent folder (one combined file, or one per family sweep; a run_id read twice
keeps its last row). No file: nothing is drawn or tabulated (logged). Rows without a finite val_loss, or
whose status is not `ok`, are dropped (counted). The chosen rate of a family is its run with the lowest
val_loss; its multiplier setting is the winning one.

Figure `lr_sweep`: a panel per family, val_loss against lr (log x), a line per multiplier setting, the
chosen rate starred.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import ResultsError, explicit_files, files_beside, run_key, to_numeric_columns

log = logging.getLogger(__name__)

FILENAME = "lr_sweep.csv"
COLUMNS = ("family", "variant", "budget", "size", "params", "params_non_embedding", "lr", "lr_multipliers",
           "val_loss", "run_id")
NUMERIC = ("budget", "params", "params_non_embedding", "lr", "val_loss")


def find_lr_sweeps(results_paths: Sequence[str | Path], explicit: Sequence[str | Path] | None = None) -> list[Path]:
    """`explicit` (each must exist), else every lr_sweep.csv beside a results.csv or one folder up."""
    if explicit:
        return explicit_files(explicit, "--lr-sweep")
    found = files_beside(results_paths, FILENAME)
    if not found:
        log.info("no %s beside the results files: no learning-rate sweep figure or table", FILENAME)
    return found


def _multipliers(text: str) -> str:
    """'2, 1.5,1' -> '2,1.5,1' (numbers as written, blanks removed); '' stays ''."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    for p in parts:
        try:
            float(p)
        except ValueError:
            raise ValueError(p) from None
    return ",".join(f"{float(p):g}" for p in parts)


def load_lr_sweeps(paths: Sequence[Path]) -> pd.DataFrame:
    """The rows of every file (validated), with `key` and numeric columns; failed rows dropped."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            raise ResultsError(f"{path}: empty file (no header, no runs)") from None
        except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ResultsError(f"{path}: not a readable CSV ({str(err).strip().splitlines()[0]})") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ResultsError(f"{path}: missing column(s) {', '.join(missing)} (not an {FILENAME})")
        to_numeric_columns(frame, NUMERIC, path)
        bad_lr = ~(np.isfinite(frame["lr"]) & (frame["lr"] > 0))
        if bad_lr.any():
            row = int(np.flatnonzero(bad_lr.to_numpy())[0])
            raise ResultsError(f"{path}: line {row + 2}, column lr: a learning rate must be a positive number")
        mults = []
        for i, text in enumerate(frame["lr_multipliers"]):
            try:
                mults.append(_multipliers(text))
            except ValueError as err:
                raise ResultsError(f"{path}: line {i + 2}, column lr_multipliers: non-numeric value "
                                   f"{str(err)!r} (expected e.g. \"2,1.5,1\")") from None
        frame["lr_multipliers"] = mults
        frame["source"] = str(path)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "key"])
    table = pd.concat(frames, ignore_index=True)
    named = table["run_id"].str.strip() != ""
    table = table[~(named & table["run_id"].duplicated(keep="last"))]
    ok = np.isfinite(table["val_loss"].to_numpy(dtype=float))
    if "status" in table.columns:
        ok &= table["status"].str.strip().str.lower().isin(("", "ok")).to_numpy()
    if (~ok).any():
        log.warning("%s: %d learning-rate run(s) without a usable val_loss dropped", FILENAME, int((~ok).sum()))
    table = table[ok].copy()
    table["key"] = [run_key(f.strip(), v) for f, v in zip(table["family"], table["variant"], strict=True)]
    return table.sort_values(["key", "lr_multipliers", "lr"]).reset_index(drop=True)


def chosen(table: pd.DataFrame) -> pd.DataFrame:
    """Per key, its row with the lowest val_loss (the chosen rate and multiplier setting)."""
    if table.empty:
        return table
    return table.loc[table.groupby("key")["val_loss"].idxmin()].sort_values("key").reset_index(drop=True)


def lr_json(table: pd.DataFrame, sources: Sequence[Path]) -> dict | None:
    """fits.json's `comparisons.lr_sweep`: every run and, per family, the chosen rate and multipliers."""
    if table.empty:
        return None
    runs = [{"family": r["key"], "size": r["size"], "params": r["params"], "budget": r["budget"], "lr": r["lr"],
             "lr_multipliers": r["lr_multipliers"], "val_loss": r["val_loss"], "run_id": r["run_id"]}
            for _, r in table.iterrows()]
    best = {r["key"]: {"lr": r["lr"], "lr_multipliers": r["lr_multipliers"], "val_loss": r["val_loss"],
                       "run_id": r["run_id"], "size": r["size"], "budget": r["budget"]}
            for _, r in chosen(table).iterrows()}
    return {"sources": [str(s) for s in sources], "runs": runs, "chosen": best}


def _lr(value: float) -> str:
    return f"{value:.3g}"


def summary_lines(table: pd.DataFrame, sources: Sequence[Path]) -> list[str]:
    """summary.md's section: a row per family and multiplier setting, each rate's loss, the chosen ones."""
    if table.empty:
        return []
    best = chosen(table).set_index("key")
    winners = set(table.groupby("key")["val_loss"].idxmin())
    rates = sorted(table["lr"].unique())
    lines = ["## Learning-rate sweep", "",
             f"From {', '.join(f'`{s}`' for s in sources)}: validation loss (nats/nt) at each learning rate; "
             "dnaHNet's per-stage multiplier settings (outermost stage first) on separate rows. The chosen rate "
             "of a family is its lowest loss (marked *), with its multiplier setting.", ""]
    header = ["family", "multipliers", "size", "params", "budget (FLOPs)"] + [f"lr {_lr(r)}" for r in rates] + [
        "best lr", "best multipliers"]
    rows = []
    for (key, mult), group in table.groupby(["key", "lr_multipliers"], sort=True):
        b = best.loc[key]
        losses = {}
        for i, row in group.iterrows():
            mark = "*" if i in winners else ""
            losses[row["lr"]] = f"{row['val_loss']:.4f}{mark}"
        sizes = ", ".join(sorted({str(s) for s in group["size"]}))
        params = ", ".join(f"{p:.4g}" for p in sorted(group["params"].unique()))
        budgets = ", ".join(f"{c:.3g}" for c in sorted(group["budget"].unique()))
        rows.append([key, mult or "-", sizes, params, budgets] + [losses.get(r, "-") for r in rates] + [
            _lr(b["lr"]), b["lr_multipliers"] or "-"])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    return lines


def lr_sweep_figure(table: pd.DataFrame, stem: Path) -> list[Path]:
    """val_loss against lr per family (a panel each), a line per multiplier setting, the chosen rate starred."""
    import matplotlib.pyplot as plt

    from analysis.figures import LOSS_LABEL, _log_x_major_only, save

    keys = sorted(table["key"].unique())
    best = chosen(table).set_index("key")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.4 * len(keys) + 0.6, 4.0), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        sub = table[table["key"] == key]
        settings = sorted(sub["lr_multipliers"].unique())
        for mult in settings:
            line = sub[sub["lr_multipliers"] == mult].sort_values("lr")
            label = f"multipliers {mult}" if mult else "runs"
            ax.plot(line["lr"], line["val_loss"], "o-", ms=4, lw=1.2, label=label)
        b = best.loc[key]
        ax.scatter([b["lr"]], [b["val_loss"]], marker="*", s=180, color="gold", edgecolors="black", zorder=5,
                   label=f"chosen: lr {_lr(b['lr'])}" + (f", multipliers {b['lr_multipliers']}"
                                                          if b["lr_multipliers"] else ""))
        _log_x_major_only(ax)
        rates = sorted(sub["lr"].unique())
        ax.set_xticks(rates, [f"{r:g}" for r in rates], rotation=30 if len(rates) > 4 else 0)
        ax.set_xlabel("learning rate")
        ax.set_ylabel(LOSS_LABEL)
        size = ", ".join(sorted({str(s) for s in sub["size"]}))
        ax.set_title(f"{key} ({size}, C = {', '.join(f'{c:.2g}' for c in sorted(sub['budget'].unique()))})",
                     fontsize=9)
        ax.legend(fontsize=7, frameon=True)
    fig.tight_layout()
    return save(fig, stem)
