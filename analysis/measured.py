"""What the runs measured, without a fit: training noise between seeds, and measured compute multipliers.

**Training noise.** A sweep may repeat some runs with other seeds (results.csv's `seed` column: 0 for the
main ladder, 1, 2, ... for replicas, run ids ending in `-s1`, `-s2`). For every (family, budget, size) run
with at least two seeds: each seed's loss, the seed-to-seed difference (max - min) and standard deviation,
beside the 95% half-width of one run's loss from its validation windows (1.96 x the standard error of the
mean over the windows, sd / sqrt(W): the normal limit of the window bootstrap of that mean) and the
half-width of the budget's isoFLOP-vertex interval (Approach 2's bootstrap). The fits never read replicas.

**Measured compute multipliers.** For an ordered pair of families (A, B) and every budget C of A: A's best
measured loss at C (lowest val_loss over its seed-0 runs there) is the target; B's best-run-per-budget
curve gives the compute B needs to reach it, interpolated linearly in log10(compute) between B's two
adjacent budgets whose best losses bracket the target (the first such crossing from below). Reported as a
multiple of C. When B's smallest budget already reaches the target: `<= C_min(B) / C`; when none of B's
budgets does: `> C_max(B) / C`. Nothing is extrapolated. The interval moves the target by +- the
seed-to-seed scatter (the pooled standard deviation over the replicated runs of A and B; where neither has
replicas, the window half-width of A's best run) and reads the same curve again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.approach2 import Approach2Result

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def window_half_width(windows: np.ndarray | None) -> float:
    """95% half-width of a run's loss from its per-window losses: 1.96 sd / sqrt(W); NaN without windows."""
    if windows is None:
        return float("nan")
    w = np.asarray(windows, dtype=float)
    w = w[np.isfinite(w)]
    if w.size < 2:
        return float("nan")
    return float(Z95 * w.std(ddof=1) / math.sqrt(w.size))


def _size_label(row: pd.Series) -> str:
    size = str(row.get("size", "") or "").strip()
    return size if size and size.lower() != "nan" else f"N={row['N']:.4g}"


@dataclass
class NoiseRow:
    """One run replicated over seeds: a (family, budget, size)."""

    key: str
    budget: float
    size: str
    params: float
    seeds: list[int]
    losses: list[float]  # per seed, in the order of `seeds`
    run_names: list[str]
    half_widths: list[float]  # per seed: 95% window half-width of that run's loss (NaN: no windows)
    vertex_half_width: float  # half-width of the budget's L_opt interval (Approach 2 bootstrap), NaN if none
    vertex_flagged: bool

    @property
    def diff(self) -> float:
        return float(max(self.losses) - min(self.losses))

    @property
    def std(self) -> float:
        return float(np.std(self.losses, ddof=1))

    @property
    def half_width(self) -> float:
        """The median over its seeds of the window half-width."""
        finite = [h for h in self.half_widths if math.isfinite(h)]
        return float(np.median(finite)) if finite else float("nan")


@dataclass
class TrainingNoise:
    rows: list[NoiseRow]

    def pooled_std(self, keys: set[str] | None = None) -> tuple[float, int]:
        """Pooled seed-to-seed standard deviation over the rows of `keys` (all: None) and its runs;
        (NaN, 0) without replicated runs. sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1))."""
        rows = [r for r in self.rows if keys is None or r.key in keys]
        dof = sum(len(r.losses) - 1 for r in rows)
        if dof == 0:
            return float("nan"), 0
        ss = sum((len(r.losses) - 1) * r.std**2 for r in rows)
        return float(math.sqrt(ss / dof)), sum(len(r.losses) for r in rows)

    def reading(self) -> str:
        """One sentence reading the table (from its numbers)."""
        if not self.rows:
            return ""
        diff = float(np.median([r.diff for r in self.rows]))
        hw = [r.half_width for r in self.rows if math.isfinite(r.half_width)]
        vw = [r.vertex_half_width for r in self.rows if math.isfinite(r.vertex_half_width)]
        pooled, n = self.pooled_std()
        text = (f"Over {len(self.rows)} replicated run(s) ({n} runs), the seeds of one run differ by "
                f"{diff:.4f} nats/nt (median max - min; pooled seed std {pooled:.4f})")
        parts = []
        if hw:
            h = float(np.median(hw))
            parts.append(f"{diff / h:.1f}x the 95% half-width of one run's loss from its validation windows "
                         f"({h:.4f})" if h > 0 else f"the window half-width is {h:.4f}")
        if vw:
            v = float(np.median(vw))
            parts.append(f"{diff / v:.1f}x the half-width of the budget's vertex interval ({v:.4f})"
                         if v > 0 else f"the vertex half-width is {v:.4f}")
        if parts:
            text += ": " + " and ".join(parts)
        scale = float(np.median(hw)) if hw else float("nan")
        if math.isfinite(scale):
            text += ("; the window intervals understate the run-to-run noise, so loss differences smaller "
                     "than the seed scatter are not measured differences" if diff > scale else
                     "; the window intervals cover the seed-to-seed noise")
        return text + "."


def training_noise(runs: pd.DataFrame, replicas: pd.DataFrame, windows: dict[str, np.ndarray],
                   approach2: dict[str, Approach2Result]) -> TrainingNoise:
    """Rows for every (key, budget, size) run with >= 2 seeds among `runs` (seed 0) and `replicas`."""
    if replicas is None or replicas.empty:
        return TrainingNoise([])
    frame = pd.concat([runs, replicas], ignore_index=True)
    frame = frame.assign(size_label=[_size_label(r) for _, r in frame.iterrows()])
    rows = []
    for (key, budget, size), group in frame.groupby(["key", "C", "size_label"], sort=True):
        if group["seed"].nunique() < 2:
            continue
        group = group.drop_duplicates("seed", keep="last").sort_values("seed")
        names = [str(n) for n in group["run_name"]]
        opt = next((o for o in approach2[key].optima if o.budget == budget), None) if key in approach2 else None
        vertex = float("nan")
        if opt is not None and opt.loss_ci is not None and not opt.flagged:
            vertex = float((opt.loss_ci[1] - opt.loss_ci[0]) / 2)
        rows.append(NoiseRow(
            key=str(key), budget=float(budget), size=str(size), params=float(group["N"].iloc[0]),
            seeds=[int(s) for s in group["seed"]], losses=[float(v) for v in group["L"]], run_names=names,
            half_widths=[window_half_width(windows.get(n)) for n in names],
            vertex_half_width=vertex, vertex_flagged=bool(opt is not None and opt.flagged),
        ))
    return TrainingNoise(rows)


# ---------------------------------------------------------------------------------- measured multipliers

EXACT, AT_MOST, MORE_THAN = "=", "<=", ">"


@dataclass(frozen=True)
class Reach:
    """Compute needed to reach a loss, read off a best-run curve: exact (interpolated), or a bound."""

    kind: str  # EXACT, AT_MOST (the smallest budget already reaches it) or MORE_THAN (no budget does)
    compute: float

    def ratio(self, budget: float) -> Reach:
        return Reach(self.kind, self.compute / budget)

    def text(self, digits: int = 3) -> str:
        value = f"{self.compute:.{digits}g}x"
        return value if self.kind == EXACT else f"{self.kind} {value}"


def best_curve(runs: pd.DataFrame, key: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Budgets (ascending), the best (lowest) seed-0 loss at each, and that run's name."""
    sub = runs[(runs["key"] == key) & (runs.get("seed", 0) == 0)]
    best = sub.loc[sub.groupby("C")["L"].idxmin()].sort_values("C")
    names = [str(n) for n in best["run_name"]] if "run_name" in best else [""] * len(best)
    return best["C"].to_numpy(dtype=float), best["L"].to_numpy(dtype=float), names


def compute_to_reach(budgets: np.ndarray, losses: np.ndarray, target: float) -> Reach:
    """Compute at which the best-run curve (budgets ascending) first reaches `target`: linear in log10 C
    between the adjacent budgets whose best losses bracket it; a bound where the curve does not."""
    budgets = np.asarray(budgets, dtype=float)
    losses = np.asarray(losses, dtype=float)
    if losses[0] <= target:
        return Reach(AT_MOST, float(budgets[0]))
    for j in range(len(losses) - 1):
        hi, lo = losses[j], losses[j + 1]
        if hi > target >= lo:
            frac = (hi - target) / (hi - lo)
            x0, x1 = np.log10(budgets[j]), np.log10(budgets[j + 1])
            return Reach(EXACT, float(10 ** (x0 + frac * (x1 - x0))))
    return Reach(MORE_THAN, float(budgets[-1]))


@dataclass
class MeasuredMultiplier:
    """Compute `family` (B) needs to reach `reference`'s (A) best measured loss at `budget`, / budget."""

    family: str  # B: the family that needs the compute
    reference: str  # A: whose best run sets the target
    budget: float  # C, a budget of A
    target_loss: float  # A's best seed-0 loss at C (nats/nt)
    reference_run: str
    multiplier: Reach  # B's compute / C
    lo: Reach  # at target + noise (easier)
    hi: Reach  # at target - noise (harder)
    noise: float  # the +- moved on the target (nats/nt)
    noise_source: str


@dataclass
class Measured:
    multipliers: list[MeasuredMultiplier]
    notes: list[str] = field(default_factory=list)

    def digest(self) -> list[str]:
        """One line per ordered pair: the bracketed (exact) multipliers by budget, and how many are bounds."""
        lines = []
        pairs = dict.fromkeys((m.family, m.reference) for m in self.multipliers)
        for fam, ref in pairs:
            ms = [m for m in self.multipliers if (m.family, m.reference) == (fam, ref)]
            exact = [f"{m.multiplier.text()} at {m.budget:.3g}" for m in ms if m.multiplier.kind == EXACT]
            at_most = sum(m.multiplier.kind == AT_MOST for m in ms)
            more = sum(m.multiplier.kind == MORE_THAN for m in ms)
            text = f"{fam} to match {ref}'s best runs: " + (", ".join(exact) if exact else "no bracketed budget")
            bounds = []
            if at_most:
                bounds.append(f"{at_most} budget(s) where {fam}'s smallest budget already does (<=)")
            if more:
                bounds.append(f"{more} where none of {fam}'s budgets does (>)")
            lines.append(text + ("; " + " and ".join(bounds) if bounds else "") + ".")
        return lines


def measured_multipliers(runs: pd.DataFrame, noise: TrainingNoise,
                         windows: dict[str, np.ndarray] | None = None) -> Measured:
    """Every ordered pair of keys and every budget of the reference: see the module docstring."""
    windows = windows or {}
    keys = sorted(runs["key"].unique())
    curves = {k: best_curve(runs, k) for k in keys}
    out, notes = [], []
    for ref in keys:
        budgets_a, losses_a, names_a = curves[ref]
        for fam in keys:
            if fam == ref:
                continue
            budgets_b, losses_b, _ = curves[fam]
            pooled, n = noise.pooled_std({ref, fam})
            for c, target, name in zip(budgets_a, losses_a, names_a, strict=True):
                if math.isfinite(pooled):
                    spread, source = pooled, f"pooled seed std ({n} runs of {ref}, {fam})"
                else:
                    spread = window_half_width(windows.get(name))
                    source = "95% window half-width of the target run"
                    if not math.isfinite(spread):
                        spread, source = 0.0, "none (no replicas, no window losses)"
                out.append(MeasuredMultiplier(
                    family=fam, reference=ref, budget=float(c), target_loss=float(target), reference_run=name,
                    multiplier=compute_to_reach(budgets_b, losses_b, target).ratio(c),
                    lo=compute_to_reach(budgets_b, losses_b, target + spread).ratio(c),
                    hi=compute_to_reach(budgets_b, losses_b, target - spread).ratio(c),
                    noise=float(spread), noise_source=source,
                ))
    if len(keys) < 2:
        notes.append("fewer than two families: no measured compute multipliers")
    return Measured(out, notes)
