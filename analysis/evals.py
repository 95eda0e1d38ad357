"""Zero-shot results of sweeps (`python -m dnahnet.evals.sweep`'s evals.csv) against training compute.

Each family's point at a budget is its compute-optimal run there: the evaluated run of that budget with
the lowest validation loss (the best measured run; with `--select best` the only one evaluated), drawn
with its bootstrap 95% interval. Figures:
- `zeroshot`: TEM-1 variant-effect Spearman and Keio essentiality AUROC against training FLOPs, per
  family; the gene-length baseline AUROC as a horizontal reference line;
- `boundaries`: dnaHNet's stage-1 selection rate per codon position (coding regions) and stage-2 rate
  per region type, against training FLOPs (one panel per family/variant).
An evals.csv may hold rows of several evaluation settings (settings_id); a run's newest row (the last in
the file) is used.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.collect import ResultsError, explicit_files, run_key

EVALS_FILE = "evals.csv"
NEEDED = ("run_id", "family", "budget", "flops", "val_loss", "spearman", "spearman_lo", "spearman_hi", "auroc",
          "auroc_lo", "auroc_hi")
CODON_COLUMNS = ("stage1_codon1", "stage1_codon2", "stage1_codon3")
REGION_COLUMNS = ("stage2_promoter", "stage2_start_codon", "stage2_coding", "stage2_stop_codon", "stage2_intergenic")


def find_evals(results: list[str | Path], explicit: list[str | Path] | None) -> list[Path]:
    """The eval CSVs: `explicit` (each must exist), else evals.csv beside each results.csv that has one."""
    if explicit:
        return explicit_files(explicit, "--evals")
    return [Path(r).with_name(EVALS_FILE) for r in results if Path(r).with_name(EVALS_FILE).is_file()]


def load_evals(paths: list[Path]) -> pd.DataFrame:
    """Every run's newest row of the given eval CSVs, with `key` (family or family/variant)."""
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype={"run_id": str, "variant": str, "settings_id": str},
                                keep_default_na=False)
        except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{path}: not a readable CSV ({exc})") from None
        missing = [c for c in NEEDED if c not in frame.columns]
        if missing:
            raise ResultsError(f"{path}: missing column(s) {', '.join(missing)} (not an evals.csv of "
                               "python -m dnahnet.evals.sweep)")
        frames.append(frame.assign(source=str(path)))
    if not frames:
        return pd.DataFrame(columns=[*NEEDED, "key"])
    table = pd.concat(frames, ignore_index=True)
    table = table.drop_duplicates("run_id", keep="last").reset_index(drop=True)
    numeric = [c for c in table.columns if c not in ("run_id", "family", "variant", "size", "settings_id", "export",
                                                     "eval_genome_in_training", "source")]
    for c in numeric:
        table[c] = pd.to_numeric(table[c].replace("", np.nan), errors="coerce")
    variants = table["variant"] if "variant" in table.columns else pd.Series([""] * len(table))
    table["key"] = [run_key(f, v) for f, v in zip(table["family"], variants, strict=True)]
    return table


def compute_optimal(table: pd.DataFrame) -> pd.DataFrame:
    """Per key and budget, the evaluated run with the lowest validation loss."""
    if table.empty:
        return table
    best = table.loc[table.groupby(["key", "budget"], sort=True)["val_loss"].idxmin()]
    return best.sort_values(["key", "budget"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ figures


def _flops_axis(ax, flops) -> None:
    """Log x with a tick at every budget (a sweep's budgets span less than a decade). Points sit at their runs'
    training FLOPs, within a few percent of the budget (dnaHNet's measured compression): ticks closer than 10%
    are one budget, so they are labelled once."""
    from analysis.figures import FLOPS_LABEL, sci

    ticks = []
    for f in sorted(float(f) for f in flops if np.isfinite(f) and f > 0):
        if not ticks or f > ticks[-1] * 1.1:
            ticks.append(float(f"{f:.2g}"))  # the budget the run was planned for (2.5e11, 1e12, ...)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(ticks, [sci(t) for t in ticks], rotation=30 if len(ticks) > 4 else 0)
    ax.set_xlabel(FLOPS_LABEL)


LABELS = {"stage1_codon1": "codon position 1", "stage1_codon2": "codon position 2",
          "stage1_codon3": "codon position 3", "stage2_promoter": "promoter", "stage2_start_codon": "start codon",
          "stage2_coding": "coding", "stage2_stop_codon": "stop codon", "stage2_intergenic": "intergenic"}


def _errors(frame: pd.DataFrame, value: str) -> np.ndarray:
    lo = (frame[value] - frame[f"{value}_lo"]).to_numpy(dtype=float)
    hi = (frame[f"{value}_hi"] - frame[value]).to_numpy(dtype=float)
    return np.clip(np.nan_to_num(np.array([lo, hi])), 0, None)


def zeroshot_figure(best: pd.DataFrame, stem: Path) -> list[Path]:
    """Spearman and AUROC of each family's compute-optimal runs against training FLOPs."""
    import matplotlib.pyplot as plt

    from analysis.figures import _family_colours, save

    keys = sorted(best["key"].unique())
    colours = _family_colours(keys)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, value, label in ((axes[0], "spearman", "TEM-1 variant effect: Spearman rho"),
                             (axes[1], "auroc", "Keio essentiality: AUROC")):
        for key in keys:
            sub = best[best["key"] == key].sort_values("flops")
            ax.errorbar(sub["flops"], sub[value], yerr=_errors(sub, value), fmt="o-", color=colours[key],
                        capsize=3, label=key)
        if value == "auroc" and "length_baseline_auroc" in best and best["length_baseline_auroc"].notna().any():
            baseline = float(best["length_baseline_auroc"].dropna().mean())
            ax.axhline(baseline, color="grey", ls="--", lw=1, label=f"gene-length baseline ({baseline:.3f})")
            ax.axhline(0.5, color="lightgrey", ls=":", lw=1)
        else:
            ax.axhline(0.0, color="lightgrey", ls=":", lw=1)
        _flops_axis(ax, best["flops"])
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0].set_title("variant effect (compute-optimal run per budget, 95% CI)")
    axes[1].set_title("gene essentiality (compute-optimal run per budget, 95% CI)")
    fig.tight_layout()
    return save(fig, stem)


def boundary_figure(best: pd.DataFrame, stem: Path) -> list[Path]:
    """dnaHNet: stage-1 rate per codon position and stage-2 rate per region type, against FLOPs."""
    import matplotlib.pyplot as plt

    from analysis.figures import save

    keys = sorted(best["key"].unique())
    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 3.8 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        sub = best[best["key"] == key].sort_values("flops")
        for ax, cols, title in ((axes[row, 0], CODON_COLUMNS, "stage 1: coding positions by codon position"),
                                (axes[row, 1], REGION_COLUMNS, "stage 2: by region type")):
            for c in cols:
                ax.plot(sub["flops"], 100 * sub[c], "o-", label=LABELS[c])
            _flops_axis(ax, sub["flops"])
            ax.set_ylabel("selected as boundary (%)")
            ax.set_title(f"{key}: {title}")
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, stem)


def write_eval_figures(best: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = zeroshot_figure(best, out_dir / "zeroshot")
    if len(best) and all(c in best.columns for c in CODON_COLUMNS + REGION_COLUMNS):
        dn = best[best[list(CODON_COLUMNS + REGION_COLUMNS)].notna().any(axis=1)]
        if len(dn):
            written += boundary_figure(dn, out_dir / "boundaries")
    return written


# ------------------------------------------------------------------------------------------------ summary


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None or not isinstance(v, (int, float)) or not math.isfinite(v) else f"{v:.{digits}f}"


def _pct(v) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"


def summary_lines(best: pd.DataFrame, sources: list[Path]) -> list[str]:
    """summary.md's zero-shot and boundary tables."""
    from analysis.summary import _table

    lines = ["## Zero-shot evaluations against compute", "",
             f"From {', '.join(f'`{s}`' for s in sources)} (`python -m dnahnet.evals.sweep`): per family and "
             "budget, the compute-optimal run (the evaluated run with the lowest validation loss) with "
             "bootstrap 95% intervals. Figures: `zeroshot`, `boundaries`.", ""]
    rows = [[r.key, f"{r.budget:.3g}", r.run_id, f"{r.params:,.0f}", f"{r.flops:.3g}", _f(r.val_loss, 4),
             _f(r.spearman), f"[{_f(r.spearman_lo)}, {_f(r.spearman_hi)}]", _f(r.auroc),
             f"[{_f(r.auroc_lo)}, {_f(r.auroc_hi)}]",
             _f(getattr(r, "length_baseline_auroc", float("nan")))] for r in best.itertuples()]
    lines += _table(["family", "budget (FLOPs)", "run", "params", "training FLOPs", "val loss", "Spearman",
                     "95% CI", "AUROC", "95% CI", "gene-length AUROC"], rows) + [""]
    trained = [r.run_id for r in best.itertuples() if str(getattr(r, "eval_genome_in_training", "") or "")]
    if trained:
        lines += [f"Warning: E. coli K-12 was in the training split of {', '.join(trained)}: their essentiality "
                  "and boundary results are not zero-shot.", ""]
    cols = CODON_COLUMNS + REGION_COLUMNS
    if all(c in best.columns for c in cols):
        dn = best[best[list(cols)].notna().any(axis=1)]
        if len(dn):
            lines += ["### Boundary statistics (dnaHNet)", "",
                      "Stage 1: share of coding positions selected as boundaries, by codon position; stage 2: "
                      "share of the positions reaching stage 2 selected again, by region type (%).", ""]
            rows = [[r.key, f"{r.budget:.3g}", r.run_id] + [_pct(getattr(r, c)) for c in cols]
                    for r in dn.itertuples()]
            lines += _table(["family", "budget (FLOPs)", "run", "s1 codon 1", "s1 codon 2", "s1 codon 3",
                             "s2 promoter", "s2 start codon", "s2 coding", "s2 stop codon", "s2 intergenic"],
                            rows) + [""]
    return lines
