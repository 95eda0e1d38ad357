"""`summary.md` (tables a person reads) and `fits.json` (numbers a program reads), written atomically.

The headline comparison is measured (analysis.measured: best runs, interpolated, no fit); the multipliers
read off the fitted frontiers are kept in a separate table labelled as extrapolated."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from analysis.approach2 import Approach2Result
from analysis.approach3 import PARAM_NAMES, Approach3Result
from analysis.collect import Collected
from analysis.compare import Comparison
from analysis.markov import SMOOTHERS, Floor
from analysis.measured import EXACT, Measured, Reach, TrainingNoise


def write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and os.replace: never half-written."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _clean(value):
    """JSON-safe: NaN / inf -> null, tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _ci(ci) -> list | None:
    return list(ci) if ci is not None else None


def approach2_json(r: Approach2Result) -> dict:
    laws = {}
    for name, law, sign in (("a", r.n_law, 1), ("b", r.d_law, 1), ("c", r.l_law, -1)):
        if law is None:
            laws[name], laws[f"{name}_ci"] = None, None
        else:
            lo, hi = (sign * v for v in law.slope_ci())
            laws[name], laws[f"{name}_ci"] = sign * law.slope, [min(lo, hi), max(lo, hi)]
    optima = [{
        "budget": o.budget, "params": o.params, "tokens": o.tokens, "loss": o.loss,
        "flagged": o.flagged, "flags": o.flags, "n_runs": o.n_runs,
        "params_ci": _ci(o.params_ci), "tokens_ci": _ci(o.tokens_ci), "loss_ci": _ci(o.loss_ci),
        "parabola": list(o.coeffs) if o.coeffs else None, "flops_ratio": o.flops_ratio,
        "spread": o.spread, "loss_se": o.loss_se, "paired_se": o.paired_se,
        "best_run": {"params": o.best_params, "tokens": o.best_tokens, "loss": o.best_loss},
    } for o in r.optima]
    prefactors = {name: (10**law.intercept if law else None)
                  for name, law in (("N", r.n_law), ("D", r.d_law), ("L", r.l_law))}
    return {**laws, "prefactors": prefactors, "optima": optima, "skipped": r.skipped,
            "n_bootstrap": r.n_boot, "n_bootstrap_valid": r.n_boot_valid, "bootstrap_noise": r.noise}


def approach3_json(r: Approach3Result) -> dict:
    if r.law is None:
        return {"skipped": r.skipped, "n_runs": r.n_runs}
    law = r.law
    return {
        "E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta,
        "a": law.a, "b": law.b, "ci": {k: list(v) for k, v in r.ci().items()},
        "objective": r.objective, "n_runs": r.n_runs, "n_starts": r.n_starts,
        "n_bootstrap": r.n_boot, "n_bootstrap_valid": int(r.boot.shape[0]), "skipped": None,
    }


def _reach_json(r: Reach) -> dict:
    return {"kind": r.kind, "value": r.compute}


def measured_json(m: Measured) -> list[dict]:
    """Measured multipliers, in the fields the fitted ones had (family needs `multiplier` x the compute of
    `reference` to reach its loss at `budget`); `multiplier` and `ci` are null where the curve only bounds
    them (`kind` "<=" or ">", `value` the bound)."""
    out = []
    for x in m.multipliers:
        exact = all(r.kind == EXACT for r in (x.lo, x.hi))
        out.append({
            "family": x.family, "reference": x.reference, "budget": x.budget, "target_loss": x.target_loss,
            "reference_run": x.reference_run, "method": "measured: best runs, interpolated, no fit",
            "multiplier": x.multiplier.compute if x.multiplier.kind == EXACT else None,
            "kind": x.multiplier.kind, "value": x.multiplier.compute,
            "ci": [x.lo.compute, x.hi.compute] if exact else None,
            "lo": _reach_json(x.lo), "hi": _reach_json(x.hi), "text": x.multiplier.text(),
            "ci_text": f"[{x.lo.text()}, {x.hi.text()}]", "noise": x.noise, "noise_source": x.noise_source,
        })
    return out


def noise_json(noise: TrainingNoise) -> dict:
    pooled, n = noise.pooled_std()
    return {
        "loss_interval": "95% half-width of a run's loss: 1.96 x standard error of the mean over its "
                         "validation windows",
        "pooled_seed_std": pooled, "n_runs": n,
        "runs": [{"family": r.key, "budget": r.budget, "size": r.size, "params": r.params, "seeds": r.seeds,
                  "losses": r.losses, "run_ids": r.run_names, "max_minus_min": r.diff, "std": r.std,
                  "window_half_widths": r.half_widths, "vertex_half_width": r.vertex_half_width,
                  "vertex_flagged": r.vertex_flagged} for r in noise.rows],
    }


def comparison_json(c: Comparison) -> dict:
    return {
        "budgets": c.budgets,
        "frontier_loss": {k: [{"budget": b, "loss": v, "ci": list(ci)}
                              for b, v, ci in zip(c.budgets, c.frontier[k], c.frontier_ci[k], strict=True)]
                          for k in c.frontier},
        "exponents": {e.key: {"loss": e.c, "loss_ci": list(e.c_ci), "perplexity": e.c_ppl,
                              "perplexity_ci": list(e.c_ppl_ci)} for e in c.exponents},
        # Read off the fitted L_opt power laws, extrapolated below / beyond a family's usable budgets: not a
        # measurement (the measured ones are `compute_multipliers`, written by fits_json).
        "extrapolated_compute_multipliers": [{"family": m.family, "reference": m.reference, "budget": m.budget,
                                              "target_loss": m.target_loss, "multiplier": m.multiplier,
                                              "ci": list(m.ci), "extrapolated": m.extrapolated,
                                              "method": "extrapolated from fitted frontiers; not a measurement"}
                                             for m in c.multipliers],
        "notes": c.notes,
    }


def fits_json(collected: Collected, a2: dict[str, Approach2Result], a3: dict[str, Approach3Result],
              comparison: Comparison, floor: Floor | None = None, measured: Measured | None = None,
              noise: TrainingNoise | None = None, lr_sweep: dict | None = None) -> dict:
    """Per family its runs and fits; under `comparisons` the fitted frontiers, the measured compute multipliers
    (`compute_multipliers`), the extrapolated ones (`extrapolated_compute_multipliers`), the training noise
    and the learning-rate sweep."""
    out = {}
    for key in a2:
        out[key] = {
            "runs": {"ok": int((collected.runs["key"] == key).sum()),
                     "failed": collected.n_failed.get(key, 0)},
            "approach2": approach2_json(a2[key]),
            "approach3": approach3_json(a3[key]),
        }
    out["comparisons"] = comparison_json(comparison)
    out["comparisons"]["compute_multipliers"] = measured_json(measured) if measured is not None else []
    out["comparisons"]["measured_notes"] = measured.notes if measured is not None else []
    out["comparisons"]["training_noise"] = noise_json(noise if noise is not None else TrainingNoise([]))
    out["comparisons"]["lr_sweep"] = lr_sweep
    if floor is not None:
        b = floor.best
        out["markov_floor"] = {"k": b.k, "smoothing": b.smoothing, "val_loss": b.val_loss, "source": floor.source}
    return _clean(out)


def _g(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _interval(ci, fmt=_g) -> str:
    return "n/a" if ci is None else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows]


USAGE_PREFIX = "usage_stage"  # results.csv columns of dnaHNet's hierarchy usage (sweeps/runner.py)


def _usage_columns(runs) -> list[str]:
    return sorted(c for c in runs.columns if c.startswith(USAGE_PREFIX))


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def measured_section(measured: Measured | None) -> list[str]:
    """The headline: compute multipliers read off the best runs (no fit)."""
    if measured is None:
        return []
    lines = ["## Measured compute multipliers (best runs, no fit)", "",
             "Compute family B needs to reach family A's best measured loss at A's budget C (lowest val_loss "
             "over its seed-0 runs there), as a multiple of C (> 1: B needs more compute than A for that loss). "
             "B's compute is interpolated linearly in log10 C between its two adjacent budgets whose best runs "
             "bracket the loss; \"<= x\": B's smallest budget already reaches it; \"> x\": none of B's "
             "budgets does (nothing is extrapolated). Interval: the target moved by +- the noise named in "
             "the last column and read off the same curve.", ""]
    if measured.multipliers:
        rows = [[m.family, m.reference, _g(m.budget), m.reference_run or "-", _f(m.target_loss, 4),
                 m.multiplier.text(), f"[{m.lo.text()}, {m.hi.text()}]", _f(m.noise, 4), m.noise_source]
                for m in measured.multipliers]
        lines += _table(["B (needs the compute)", "A (sets the loss)", "C (FLOPs)", "A's best run",
                         "A's loss (nats/nt)", "B's compute / C", "interval", "target +-", "noise"], rows) + [""]
        lines += [f"- {line}" for line in measured.digest()] + [""]
    lines += [f"- {n}" for n in measured.notes]
    return lines + ([""] if measured.notes else [])


def noise_section(noise: TrainingNoise | None) -> list[str]:
    """Seed-to-seed scatter of replicated runs beside the window and vertex intervals."""
    if noise is None:
        return []
    lines = ["## Training noise: seed-to-seed scatter vs bootstrap intervals", ""]
    if not noise.rows:
        return lines + ["No replicated runs (no family, budget and size was trained with two or more seeds; "
                        "results.csv's `seed` column).", ""]
    lines += [noise.reading(), "",
              "Per run trained with several seeds: its loss per seed, max - min and the standard deviation "
              "over seeds, beside the 95% half-width of one run's loss from its validation windows (1.96 x "
              "the standard error of the mean over the windows; median over the seeds) and the half-width "
              "of the budget's L_opt bootstrap interval (n/a for a flagged budget).", ""]
    rows = [[r.key, _g(r.budget), r.size, _g(r.params), ", ".join(f"s{s}: {v:.4f}" for s, v in
                                                                  zip(r.seeds, r.losses, strict=True)),
             _f(r.diff, 4), _f(r.std, 4), _f(r.half_width, 4), _f(r.vertex_half_width, 4)] for r in noise.rows]
    lines += _table(["family", "C (FLOPs)", "size", "N", "loss per seed (nats/nt)", "max - min", "std",
                     "run's window half-width", "L_opt half-width"], rows) + [""]
    return lines


def floor_section(collected: Collected, a2: dict[str, Approach2Result], floor: Floor | None) -> list[str]:
    """The Markov floor (with every chain scored), then per family and budget: the fitted L_opt and the best
    run, each also as nats below the floor, and the best run's hierarchy usage (dnaHNet)."""
    runs = collected.runs
    usage_cols = _usage_columns(runs)
    lines = []
    if floor is not None:
        b = floor.best
        lines += ["## Markov floor", "",
                  f"Markov floor: {b.val_loss:.4f} nats/nt (order k = {b.k}, {b.smoothing}; ln 4 = "
                  f"{math.log(4):.4f}), the best order-k Markov count model of the training split (both "
                  f"strands) scored on the same validation windows (`{floor.source}`, written by "
                  "`python -m analysis.markov`). \"below floor\" = floor - loss: how much a model beats "
                  "counting k-mers.", ""]
        orders = sorted({r.k for r in floor.rows})
        smoothers = [m for m in SMOOTHERS if any(r.smoothing == m for r in floor.rows)]
        value = {(r.k, r.smoothing): r.val_loss for r in floor.rows}
        rows = [[str(k)] + [_f(value.get((k, m), float("nan")), 4) for m in smoothers] for k in orders]
        lines += _table(["k"] + [f"{m} (nats/nt)" for m in smoothers], rows) + [""]
    if floor is None and not usage_cols:
        return lines
    lines += ["## Frontier against the floor" + (" and hierarchy usage" if usage_cols else ""), ""]
    if usage_cols:
        lines += ["Hierarchy usage (dnaHNet): validation loss with stage s's inner network output zeroed "
                  "(only the residual path W_res passes stage s) minus the real loss, nats/nt, of the "
                  "budget's best run; ~0: the run does not use its hierarchy below stage s.", ""]
    for key in a2:
        sub = runs[runs["key"] == key]
        cols = [c for c in usage_cols if sub[c].map(_number).notna().any()]
        below = ["L_opt below floor", "best run below floor"] if floor is not None else []
        header = ["budget C (FLOPs)", "L_opt (nats/nt)", "best run", "its val_loss"] + below + cols
        rows = []
        for o in a2[key].optima:
            at = sub[sub["C"] == o.budget]
            if at.empty:
                continue
            best = at.loc[at["L"].idxmin()]
            row = [_g(o.budget), _f(o.loss, 4), str(best.get("size", best.get("run_name", ""))), _f(best["L"], 4)]
            if floor is not None:
                row += [_f(floor.best.val_loss - o.loss, 4), _f(floor.best.val_loss - best["L"], 4)]
            row += [_f(_number(best[c]), 4) for c in cols]
            rows.append(row)
        lines += [f"{key}:", ""] + _table(header, rows) + [""]
    return lines


def summary_markdown(collected: Collected, a2: dict[str, Approach2Result],
                     a3: dict[str, Approach3Result], comparison: Comparison, n_boot: int,
                     seed: int, extra: list[str] | None = None, floor: Floor | None = None,
                     measured: Measured | None = None, noise: TrainingNoise | None = None) -> str:
    runs = collected.runs
    lines = ["# Scaling-law analysis", ""]
    lines += [f"Inputs: {', '.join(f'`{s}`' for s in collected.sources)}. "
              f"N = `{collected.params_column}`, D = `tokens` (nt), C = planned `budget` (FLOPs), "
              f"L = `val_loss` (nats/nt). Bootstrap: {n_boot} resamples, seed {seed}, percentile 95% "
              "intervals; each resample draws the validation windows with replacement (the same draw "
              "for every run, where the runs wrote per-window losses) and flips the signs of the "
              "isoFLOP parabolas' residuals at random (wild bootstrap).", ""]
    rows = [[k, str(int((runs["key"] == k).sum())), str(collected.n_failed.get(k, 0)),
             str(runs.loc[runs["key"] == k, "C"].nunique())]
            for k in sorted(set(collected.keys) | set(collected.n_failed))]
    lines += _table(["family", "usable runs", "failed runs (dropped)", "budgets"], rows) + [""]
    if collected.duplicates_dropped:
        lines += [f"{collected.duplicates_dropped} row(s) re-recording an earlier run_dir were "
                  "dropped (the last row of each run_dir is kept).", ""]
    if len(collected.replicas) or collected.replicas_failed:
        lines += [f"{len(collected.replicas)} replica run(s) of seed index >= 1 (and {collected.replicas_failed} "
                  "failed) are not fitted: every fit, frontier and comparison uses the seed-0 runs only; the "
                  "replicas measure the training noise.", ""]
    lines += measured_section(measured)
    lines += noise_section(noise)
    lines += floor_section(collected, a2, floor)

    flags = []
    for key in a2:
        r2, r3 = a2[key], a3[key]
        lines += [f"## {key}", "", "### Approach 2: isoFLOP optima", ""]
        rows = []
        for o in r2.optima:
            rows.append([_g(o.budget), str(o.n_runs), _g(o.params), _interval(o.params_ci),
                         _g(o.tokens), _interval(o.tokens_ci), _f(o.loss, 4),
                         _interval(o.loss_ci, lambda v: _f(v, 4)), _f(o.flops_ratio, 3),
                         "; ".join(o.flags) or "-"])
            if o.flagged:
                flags.append(f"{key}, budget {_g(o.budget)}: {'; '.join(o.flags)}")
        lines += _table(["budget C (FLOPs)", "runs", "N_opt", "N_opt 95% CI", "D_opt (nt)",
                         "D_opt 95% CI", "L_opt (nats/nt)", "L_opt 95% CI", "FLOPs / budget",
                         "flag"], rows) + [""]
        lines += [f"Measurement noise vs the signal, per budget (bootstrap noise: {r2.noise}): the "
                  "spread of the ladder's losses against the standard error of one run's loss and of "
                  "the paired difference between neighbouring sizes (validation windows resampled).", ""]
        rows = [[_g(o.budget), _f(o.spread, 4), _f(o.loss_se, 5), _f(o.paired_se, 5),
                 _f(o.spread / o.paired_se, 1) if o.paired_se > 0 else "-"] for o in r2.optima]
        lines += _table(["budget C (FLOPs)", "loss spread (nats/nt)", "SE of a run's loss",
                         "SE of a neighbour difference", "spread / paired SE"], rows) + [""]
        if r2.skipped:
            lines += [f"Power laws skipped: {r2.skipped}.", ""]
            flags.append(f"{key}: Approach 2 power laws skipped: {r2.skipped}")
        else:
            lines += [f"Power laws over {len(r2.usable)} usable budget(s) "
                      f"({r2.n_boot_valid} of {r2.n_boot} bootstrap resamples valid):", ""]
            rows = []
            for label, law, sign in (("N_opt ~ C^a", r2.n_law, 1), ("D_opt ~ C^b", r2.d_law, 1),
                                     ("L_opt ~ C^-c", r2.l_law, -1)):
                lo, hi = sorted(sign * v for v in law.slope_ci())
                rows.append([label, _f(sign * law.slope, 4), _interval((lo, hi), lambda v: _f(v, 4)),
                             _g(10**law.intercept)])
            lines += _table(["law", "exponent", "95% CI", "prefactor"], rows) + [""]
            lines += ["D_opt is read from the runs (log D fitted linearly against log N within each "
                      "budget, evaluated at N_opt), not computed from C = 6 N D.", ""]

        lines += ["### Approach 3: L(N, D) = E + A / N^alpha + B / D^beta", ""]
        if r3.law is None:
            lines += [f"Skipped: {r3.skipped}.", ""]
            flags.append(f"{key}: Approach 3 skipped: {r3.skipped}")
        else:
            ci = r3.ci()
            law = r3.law
            values = {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta,
                      "a": law.a, "b": law.b}
            names = list(PARAM_NAMES) + ["a", "b"]
            rows = [[("a = beta/(alpha+beta)" if n == "a" else "b = alpha/(alpha+beta)" if n == "b"
                      else n), _g(values[n], 4), _interval(ci[n], lambda v: _g(v, 4))] for n in names]
            lines += _table(["coefficient", "value", "95% CI"], rows) + [""]
            lines += [f"Mean Huber loss (delta 1e-3) / delta at the fit: {r3.objective:.3g}, best of "
                      f"{r3.n_starts} L-BFGS starts over {r3.n_runs} runs; {r3.boot.shape[0]} of "
                      f"{r3.n_boot} bootstrap refits. a and b are the exponents of N_opt and D_opt "
                      "the law implies under C = 6 N D.", ""]

    lines += ["## Comparisons between families", ""]
    if comparison.exponents:
        rows = [[e.key, _f(e.c, 4), _interval(e.c_ci, lambda v: _f(v, 4)), _f(e.c_ppl, 4),
                 _interval(e.c_ppl_ci, lambda v: _f(v, 4)), _f(a2[e.key].a, 3), _f(a2[e.key].b, 3)]
                for e in comparison.exponents]
        lines += ["Exponents of the compute-optimal frontier: L_opt ~ C^-c and perplexity "
                  "exp(L_opt) ~ C^-c_ppl (c_ppl = -dL_opt/d ln C).", ""]
        lines += _table(["family", "c (loss)", "95% CI", "c_ppl (perplexity)", "95% CI", "a", "b"],
                        rows) + [""]
        lines += ["Frontier loss at matched compute (fitted L_opt, nats/nt):", ""]
        keys = list(comparison.frontier)
        rows = [[_g(b)] + [_f(comparison.frontier[k][i], 4) for k in keys]
                for i, b in enumerate(comparison.budgets)]
        lines += _table(["C (FLOPs)"] + keys, rows) + [""]
    if comparison.multipliers:
        lines += ["### Compute multipliers extrapolated from fitted frontiers; not a measurement", "",
                  "The compute family X needs to reach family Y's fitted frontier loss at the largest budget "
                  "both used, relative to that budget, read off the L_opt power laws, which extrapolate below "
                  "and beyond the budgets a family was swept at. The frontiers are flat, so a 1% loss "
                  "difference is a large compute factor, and the two directions of a pair need not agree: "
                  "for the measurement see \"Measured compute multipliers (best runs, no fit)\" above.", ""]
        rows = [[m.family, m.reference, _g(m.budget), _f(m.target_loss, 4), _g(m.multiplier, 3),
                 _interval(m.ci), "yes" if m.extrapolated else "no"] for m in comparison.multipliers]
        lines += _table(["X", "Y", "budget (FLOPs)", "Y's fitted loss (nats/nt)", "extrapolated multiplier",
                         "95% CI", "outside X's budgets"], rows) + [""]
    lines += [f"- {n}" for n in comparison.notes]
    if comparison.notes:
        lines += [""]

    lines += extra or []  # e.g. the zero-shot tables (analysis.evals.summary_lines)
    lines += ["## Flags and warnings", ""]
    lines += [f"- {f}" for f in flags] or ["None."]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, collected: Collected, a2: dict[str, Approach2Result],
                  a3: dict[str, Approach3Result], comparison: Comparison, n_boot: int,
                  seed: int, extra: list[str] | None = None, floor: Floor | None = None,
                  measured: Measured | None = None, noise: TrainingNoise | None = None,
                  lr_sweep: dict | None = None) -> tuple[Path, Path]:
    """summary.md and fits.json into out_dir; the two paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = out_dir / "summary.md"
    fits = out_dir / "fits.json"
    write_atomic(summary, summary_markdown(collected, a2, a3, comparison, n_boot, seed, extra, floor,
                                           measured, noise))
    write_atomic(fits, json.dumps(fits_json(collected, a2, a3, comparison, floor, measured, noise, lr_sweep),
                                  indent=2) + "\n")
    return summary, fits
