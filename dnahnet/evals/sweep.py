"""Evaluate a sweep: every run's exported model on the zero-shot evaluations, one CSV per sweep.

    python -m dnahnet.evals.sweep SWEEP_DIR [SWEEP_DIR ...] [--select all|best] [--data-dir DIR]

For each run of SWEEP_DIR/results.csv that finished (status ok) and has an export (RUN_DIR/export/, written
by the sweep; `--select best`: only the lowest-val_loss run of each budget and family/variant):
- variant effect: Spearman of delta LL against TEM-1 fitness (Stiffler 2015, column 2500;
  `dnahnet.evals.variant_effect`), with a bootstrap 95% interval over variants;
- essentiality: AUROC of the stop-cassette knockout against the Keio essential genes of E. coli K-12
  (`dnahnet.evals.essentiality`), with a bootstrap 95% interval over genes, and the gene-length baseline;
- dnaHNet runs: boundary statistics on K-12 windows (`dnahnet.evals.boundaries`): per stage (numbered
  from 1 here, as in the paper) the selection rate overall, per region class and per codon position.

Results: SWEEP_DIR/evals.csv, one row per (run, evaluation settings), rewritten atomically after each run;
SWEEP_DIR/evals.json maps each settings_id to its settings; per-run details (variants.csv, genes.csv,
boundaries.csv, summaries, the score caches of an interrupted run) under SWEEP_DIR/evals/<run_id>/<settings_id>/.
A rerun scores only the runs without a row for the same settings. Bad input (a missing sweep directory,
no results.csv, no exported run, bad option values, missing evaluation data) is one `error:` line, exit 2.

CPU defaults (the CPU ladders' models, 4k-410k parameters trained at context 512, on one core): a seeded
sample of 1,000 TEM-1 variants (the CDS without flanks), 1,000 K-12 genes (stratified by essentiality) in
512-nt windows, 64 boundary windows of 512 nt, every sequence scored in windows of the training context
with half-overlapping strides. The paper's protocol: `--variants 0 --ve-flank 256 --genes 0
--ess-window 8192 --boundary-windows 5 --boundary-window-len 49152` (every variant and gene, 8,192-nt
gene windows), on a GPU (`--device cuda`).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from dnahnet.checkpoint import CheckpointError
from dnahnet.data.paths import resolve_data_dir
from dnahnet.data.store import DataError
from dnahnet.evals import boundaries as bnd
from dnahnet.evals import essentiality as ess
from dnahnet.evals import genes as genelib
from dnahnet.evals import variant_effect as ve
from dnahnet.evals.cli import atomic_write_csv, nonnegative_int, positive_int, setup_logging
from dnahnet.evals.genes import CASSETTE_OFFSET, STOP_CASSETTE
from dnahnet.evals.scoring import Scorer, resolve_device
from dnahnet.evals.trainsplit import eval_genome_in_training, run_data_config
from dnahnet.export import from_pretrained, read_config
from dnahnet.fileio import atomic_write_text

log = logging.getLogger("dnahnet.evals.sweep")

EVALS_FILE = "evals.csv"
SETTINGS_FILE = "evals.json"
STAGE_CATEGORIES = ("all", "promoter", "start_codon", "coding", "stop_codon", "intergenic", "other_gene",
                    "codon1", "codon2", "codon3")
RUN_COLUMNS = ("run_id", "family", "variant", "budget", "size", "params", "tokens", "flops", "val_loss")
METRIC_COLUMNS = ("spearman", "spearman_lo", "spearman_hi", "n_variants", "auroc", "auroc_lo", "auroc_hi",
                  "length_baseline_auroc", "n_genes", "n_essential")
BOUNDARY_COLUMNS = tuple(f"stage{s}_{c}" for s in (1, 2) for c in STAGE_CATEGORIES)
TAIL_COLUMNS = ("eval_genome_in_training", "settings_id", "ve_s", "ess_s", "boundary_s", "export")
COLUMNS = RUN_COLUMNS + METRIC_COLUMNS + BOUNDARY_COLUMNS + TAIL_COLUMNS


@dataclass(frozen=True)
class EvalSettings:
    """Everything that changes a score (its hash is the settings_id of evals.csv's rows)."""

    variants: int = 1000  # TEM-1 variants scored (seeded sample); 0 = all 4,996 (paper)
    ve_flank: int = 0  # nt of pUC19 context each side of the bla CDS (paper: 256)
    genes: int = 1000  # K-12 genes scored (stratified seeded sample); 0 = all (paper)
    ess_window: int = 512  # essentiality window, nt (paper: 8192)
    boundary_windows: int = 64  # K-12 windows for the boundary statistics (paper: 5)
    boundary_window_len: int = 512  # their length, nt (paper: 49152)
    promoter_span: int = 100  # nt upstream of a gene counted as promoter
    context: int = 0  # longest window fed to a model; 0 = the run's training context
    rc_average: bool = False  # average the scores of both strands
    bootstrap: int = 1000  # bootstrap resamples of the intervals
    seed: int = 0  # variant/gene samples and bootstrap

    def settings_id(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


class SweepEvalError(ValueError):
    """Bad input to the sweep evaluation (one `error:` line)."""


# ------------------------------------------------------------------------------------------------ statistics


def _rank_rows(x: np.ndarray) -> np.ndarray:
    return rankdata(x, axis=1)


def bootstrap_spearman(preds, target, n_boot: int, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of Spearman's rho over `n_boot` resamples of the (pred, target) pairs."""
    p, t = np.asarray(preds, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if n_boot <= 0 or len(p) < 3:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(p), size=(n_boot, len(p)))
    rp, rt = _rank_rows(p[idx]), _rank_rows(t[idx])
    rp -= rp.mean(axis=1, keepdims=True)
    rt -= rt.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rp * rt).sum(1) / np.sqrt((rp**2).sum(1) * (rt**2).sum(1))
    rho = rho[np.isfinite(rho)]
    if not len(rho):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(rho, a)), float(np.quantile(rho, 1 - a))


def bootstrap_auroc(scores, labels, n_boot: int, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the AUROC over `n_boot` resamples of the genes (resamples with one class are
    dropped); AUROC = Mann-Whitney U / (n1 n0) with average ranks for ties."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if n_boot <= 0 or len(s) < 2:
        return math.nan, math.nan
    idx = np.random.default_rng(seed).integers(0, len(s), size=(n_boot, len(s)))
    ranks, lab = _rank_rows(s[idx]), y[idx]
    n1 = lab.sum(1)
    n0 = lab.shape[1] - n1
    ok = (n1 > 0) & (n0 > 0)
    u = (ranks * lab).sum(1) - n1 * (n1 + 1) / 2
    auc = u[ok] / (n1[ok] * n0[ok])
    if not len(auc):
        return math.nan, math.nan
    a = (1 - level) / 2
    return float(np.quantile(auc, a)), float(np.quantile(auc, 1 - a))


# ------------------------------------------------------------------------------------------------ runs


def read_sweep(sweep_dir: Path) -> pd.DataFrame:
    """The ok rows of SWEEP_DIR/results.csv (SweepEvalError naming what is missing)."""
    if not sweep_dir.is_dir():
        raise SweepEvalError(f"{sweep_dir}: no such sweep directory")
    path = sweep_dir / "results.csv"
    if not path.is_file():
        raise SweepEvalError(f"{path}: no such file (is {sweep_dir} a sweep directory?)")
    try:
        frame = pd.read_csv(path, dtype={"run_id": str, "variant": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SweepEvalError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in ("run_id", "family", "budget", "params", "val_loss", "status") if c not in frame.columns]
    if missing:
        raise SweepEvalError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame[frame["status"] == "ok"].copy()
    for c in ("budget", "params", "val_loss"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame.reset_index(drop=True)


def export_dir(sweep_dir: Path, row) -> Path:
    """A run's export: RUN_DIR/export, RUN_DIR from results.csv's run_dir when it exists, else
    SWEEP_DIR/runs/<run_id> (a sweep directory moved elsewhere), else SWEEP_DIR/exports/<run_id> (a
    snapshot of `python -m analysis.snapshot`)."""
    recorded = Path(str(row.get("run_dir") or "")) / "export"
    if str(row.get("run_dir") or "") and recorded.is_dir():
        return recorded
    moved = sweep_dir / "runs" / str(row["run_id"]) / "export"
    snapshot = sweep_dir / "exports" / str(row["run_id"])
    return snapshot if not moved.is_dir() and snapshot.is_dir() else moved


def select_runs(frame: pd.DataFrame, select: str) -> pd.DataFrame:
    """`all`: every row; `best`: the lowest-val_loss row of each (family, variant, budget) among the
    ladder's runs (seed 0)."""
    if select == "all" or frame.empty:
        return frame
    if "seed" in frame:  # seed replicas (seed > 0) measure training noise; the best run is the ladder's
        frame = frame[pd.to_numeric(frame["seed"], errors="coerce").fillna(0) == 0]
    keyed = frame.assign(_v=frame.get("variant", "").fillna("") if "variant" in frame else "")
    best = keyed.loc[keyed.groupby(["family", "_v", "budget"], sort=False)["val_loss"].idxmin()]
    return best.drop(columns="_v").sort_values(["family", "budget"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ data


@dataclass
class EvalData:
    """The evaluations' inputs, prepared once for every run (no model involved)."""

    assays: list  # [variant_effect.Assay]
    organisms: list  # [essentiality.Organism]
    replicon: object  # genes.Replicon of K-12's chromosome
    track: object  # boundaries.RegionTrack
    starts: list[int]  # boundary window starts


def prepare_data(data_dir: Path, settings: EvalSettings) -> EvalData:
    ve_dir, k12 = data_dir / "variant_effect", data_dir / "genomes" / "ecoli_k12_mg1655"
    files = {
        "dms": ve_dir / "BLAT_ECOLX_Stiffler2015.csv", "cds": ve_dir / "TEM1_bla_cds.fasta",
        "wt_protein": ve_dir / "BLAT_ECOLX_wt_protein_24-286.fasta", "context": ve_dir / "pUC19.gb",
        "genome": k12 / "GCF_000005845.2_ASM584v2_genomic.fna.gz",
        "annotation": k12 / "GCF_000005845.2_ASM584v2_genomic.gff.gz",
        "labels": data_dir / "essentiality" / "ecoli_mg1655_keio_essential.tsv",
    }
    for name, path in files.items():
        if not path.is_file():
            raise SweepEvalError(f"{path}: missing ({name}; --data-dir must hold the data of MANIFEST.md)")
    spec = ve.AssaySpec(dms=files["dms"], cds=files["cds"], fitness_column="2500", wt_protein=files["wt_protein"],
                        context=files["context"] if settings.ve_flank else None,
                        flank=settings.ve_flank if settings.ve_flank else None, name="TEM-1",
                        max_variants=settings.variants or None, seed=settings.seed)
    assays = [ve.prepare_assay(spec)]
    organisms = [ess.prepare_organism("E. coli K-12", files["genome"], files["annotation"], files["labels"],
                                      window=settings.ess_window, max_genes=settings.genes or None,
                                      seed=settings.seed)]
    genome = genelib.read_genome(files["genome"])
    annotation = genelib.read_annotation(files["annotation"])
    genelib.apply_topology(genome, annotation)
    seqid = max(genome, key=lambda k: len(genome[k]))
    rep = genome[seqid]
    track = bnd.region_track([g for g in annotation.genes if g.seqid == seqid], len(rep), settings.promoter_span,
                             rep.circular)
    starts = bnd.window_starts(len(rep), settings.boundary_windows, settings.boundary_window_len)
    return EvalData(assays, organisms, rep, track, starts)


# ------------------------------------------------------------------------------------------------ one run


def evaluate_run(folder: Path, row: dict, data: EvalData, settings: EvalSettings, work: Path, device: str = "cpu",
                 batch_size: int = 16) -> dict:
    """Every evaluation of one exported model; the evals.csv row (run columns are the caller's)."""
    config = read_config(folder)
    model = from_pretrained(folder)
    context = settings.context or int(config.get("seq_len") or 0) or None
    scorer = Scorer(model, device=device, batch_size=batch_size, max_context=context,
                    stride=max(1, context // 2) if context else None, rc_average=settings.rc_average)
    info = {"export": str(folder), "global_step": config.get("global_step"), "settings": asdict(settings)}
    out: dict = {}

    t = time.perf_counter()
    summary = ve.evaluate_assays(scorer, data.assays, work / "variant_effect", info)
    table = pd.read_csv(work / "variant_effect" / "variants.csv")
    lo, hi = bootstrap_spearman(table["delta_ll"], table["fitness"], settings.bootstrap, settings.seed)
    out.update(spearman=summary["spearman"], spearman_lo=lo, spearman_hi=hi, n_variants=len(table),
               ve_s=round(time.perf_counter() - t, 2))

    t = time.perf_counter()
    summary = ess.evaluate_essentiality(scorer, data.organisms, work / "essentiality", info, window=settings.ess_window)
    genes = pd.read_csv(work / "essentiality" / "genes.csv")
    lo, hi = bootstrap_auroc(-genes["delta_ll"], genes["essential"], settings.bootstrap, settings.seed)
    out.update(auroc=summary["auroc"], auroc_lo=lo, auroc_hi=hi,
               length_baseline_auroc=summary["length_baseline_auroc"], n_genes=summary["n_genes"],
               n_essential=summary["n_essential"], ess_s=round(time.perf_counter() - t, 2))

    if config.get("family") == "dnahnet":
        t = time.perf_counter()
        table = bnd.run_boundaries(scorer.model, data.replicon, data.track, data.starts,
                                   settings.boundary_window_len, batch_size)
        (work / "boundaries").mkdir(parents=True, exist_ok=True)

        atomic_write_csv(work / "boundaries" / "boundaries.csv", table)
        for r in table.itertuples():
            if r.stage > 1:
                continue
            cat = r.category if r.group != "codon_position" else f"codon{r.category}"
            out[f"stage{r.stage + 1}_{cat}"] = r.fraction
        out["boundary_s"] = round(time.perf_counter() - t, 2)
    return out


# ------------------------------------------------------------------------------------------------ evals.csv


def read_evals(path: Path) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=list(COLUMNS))
    try:
        return pd.read_csv(path, dtype={"run_id": str, "settings_id": str, "variant": str}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SweepEvalError(f"{path}: not a readable CSV ({exc}); move it aside to start afresh") from None


def write_evals(path: Path, frame: pd.DataFrame) -> None:
    cols = list(COLUMNS) + [c for c in frame.columns if c not in COLUMNS]
    buf = io.StringIO()
    frame.reindex(columns=cols).to_csv(buf, index=False)
    atomic_write_text(path, buf.getvalue())


def record_settings(sweep_dir: Path, settings: EvalSettings) -> None:
    path = sweep_dir / SETTINGS_FILE
    try:
        known = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        known = {}
    known[settings.settings_id()] = asdict(settings)
    atomic_write_text(path, json.dumps(known, indent=2, sort_keys=True) + "\n")


def plan_sweep(sweep_dir: Path, select: str) -> tuple[pd.DataFrame, list[str]]:
    """(runs to evaluate, with their export folders; run ids selected but without an export)."""
    frame = select_runs(read_sweep(sweep_dir), select)
    folders = [export_dir(sweep_dir, r) for r in frame.to_dict("records")]
    has = [(f / "config.json").is_file() and (f / "model.safetensors").is_file() for f in folders]
    lacking = [rid for rid, h in zip(frame["run_id"], has, strict=True) if not h]
    frame = frame.assign(export=[str(f) for f in folders])[has].reset_index(drop=True)
    return frame, lacking


def evaluate_sweeps(sweep_dirs: list[Path], settings: EvalSettings, select: str = "all", data_dir=None,
                    device: str = "cpu", batch_size: int = 16, progress: bool = True) -> dict[Path, pd.DataFrame]:
    """Evaluate every selected, exported run of each sweep that has no row for `settings`; returns each
    sweep's evals.csv table."""
    from tqdm.auto import tqdm

    sid = settings.settings_id()
    plans = {}
    for d in sweep_dirs:
        frame, lacking = plan_sweep(d, select)
        if lacking:
            log.warning("%s: %d selected run(s) have no export (RUN_DIR/export/), skipped: %s", d, len(lacking),
                        ", ".join(lacking[:5]) + (" ..." if len(lacking) > 5 else ""))
        if frame.empty:
            raise SweepEvalError(f"{d}: no finished run with an export (RUN_DIR/export/) to evaluate; rerun the "
                                 "sweep without --no-export to write them")
        done = read_evals(d / EVALS_FILE)
        have = set(zip(done["run_id"].astype(str), done["settings_id"].astype(str), strict=True)) if len(done) else set()
        todo = frame[[(rid, sid) not in have for rid in frame["run_id"]]]
        plans[d] = (done, todo, len(frame))
    try:
        root = resolve_data_dir(data_dir)
    except DataError as exc:
        raise SweepEvalError(f"--data-dir: {exc}") from None
    total = sum(len(todo) for _, todo, _ in plans.values())
    for d, (_, todo, n) in plans.items():
        log.info("%s: %d run(s) selected (--select %s), %d already evaluated with settings %s, %d to score",
                 d, n, select, n - len(todo), sid, len(todo))
    data = prepare_data(root, settings) if total else None

    warned: dict[str, list[str]] = {}
    split_cache: dict[str, list[str]] = {}
    out = {}
    with tqdm(total=total, desc="runs", unit="run", disable=not progress) as bar:
        for d, (done, todo, _) in plans.items():
            if len(todo):
                record_settings(d, settings)
            for row in todo.to_dict("records"):
                folder = Path(row["export"])
                bar.set_description(f"runs ({row['run_id']})")
                data_cfg = run_data_config(folder) or run_data_config(folder.parent) or {}
                key = json.dumps(data_cfg, sort_keys=True, default=str)
                if key not in split_cache:
                    split_cache[key] = eval_genome_in_training(data_cfg, data_dir) if data_cfg else []
                in_training = split_cache[key]
                if in_training:
                    warned.setdefault(", ".join(in_training), []).append(row["run_id"])
                    if len(warned) == 1 and len(warned[", ".join(in_training)]) == 1:
                        print(f"warning: the evaluation genome E. coli K-12 ({', '.join(in_training)}) was in the "
                              f"training split of {row['run_id']} (data.holdout = {data_cfg.get('holdout')}); its "
                              "essentiality and boundary results are not zero-shot (evals.csv's "
                              "eval_genome_in_training column lists every such run)", file=sys.stderr)
                t0 = time.perf_counter()
                metrics = evaluate_run(folder, row, data, settings, d / "evals" / row["run_id"] / sid, device,
                                       batch_size)
                new = {c: row.get(c, "") for c in RUN_COLUMNS}
                new.update(metrics, settings_id=sid, export=str(folder),
                           eval_genome_in_training=";".join(in_training))
                done = done[~((done["run_id"].astype(str) == row["run_id"]) & (done["settings_id"].astype(str) == sid))]
                done = pd.concat([done, pd.DataFrame([new])], ignore_index=True) if len(done) else pd.DataFrame([new])
                write_evals(d / EVALS_FILE, done)
                log.info("%s: Spearman %.3f [%.3f, %.3f], AUROC %.3f [%.3f, %.3f]%s (%.0f s)", row["run_id"],
                         metrics["spearman"], metrics["spearman_lo"], metrics["spearman_hi"], metrics["auroc"],
                         metrics["auroc_lo"], metrics["auroc_hi"],
                         f", stage-1 boundaries {100 * metrics['stage1_all']:.1f}%" if "stage1_all" in metrics else "",
                         time.perf_counter() - t0)
                bar.update(1)
            out[d] = done
    return out


# ------------------------------------------------------------------------------------------------ CLI
# The command line's flag of each EvalSettings field: its type and help ({default}: the field's default).
SETTING_FLAGS = {
    "variants": (nonnegative_int, "TEM-1 variants scored, a seeded sample (default {default}; 0 = all, the paper)"),
    "ve_flank": (nonnegative_int, "pUC19 context nt each side of the bla CDS (default {default}; paper 256)"),
    "genes": (nonnegative_int, "K-12 genes scored, a stratified seeded sample (default {default}; 0 = all, the paper)"),
    "ess_window": (positive_int, "essentiality window, nt (default {default}; paper 8192)"),
    "boundary_windows": (positive_int, "K-12 windows for the dnaHNet boundary statistics (default {default}; paper 5)"),
    "boundary_window_len": (positive_int, "their length, nt (default {default}; paper 49152)"),
    "promoter_span": (nonnegative_int, "nt upstream of a gene counted as promoter (default {default})"),
    "context": (nonnegative_int, "longest window fed to a model (sliding windows, half-overlapping); 0 = the "
                                 "run's training context (default)"),
    "rc_average": (bool, "average the scores of both strands"),
    "bootstrap": (nonnegative_int, "bootstrap resamples of the 95%% intervals (default {default}; 0: none)"),
    "seed": (int, "seed of the samples and the bootstrap"),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dnahnet.evals.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = EvalSettings()
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="a sweep's --out directory")
    p.add_argument("--select", choices=("all", "best"), default="all",
                   help="all: every exported run; best: the lowest-val_loss run per budget and family/variant")
    p.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    for name, (kind, text) in SETTING_FLAGS.items():  # --variants, --ve-flank, ...: one EvalSettings field each
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            p.add_argument(flag, action="store_true", help=text)
        else:
            p.add_argument(flag, type=kind, default=getattr(d, name), help=text.format(default=getattr(d, name)))
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=positive_int, default=16, help="sequences per forward pass (default 16)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads (default: $OMP_NUM_THREADS, else 1: the CPU ladders' models are tiny)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed its one-line error
        return 2 if exc.code else 0
    setup_logging(args.log_level)
    settings = EvalSettings(**{name: getattr(args, name) for name in SETTING_FLAGS})
    try:
        if args.ess_window < 2 * (CASSETTE_OFFSET + len(STOP_CASSETTE)):
            raise SweepEvalError(f"--ess-window {args.ess_window} is too short for the stop cassette")
        resolve_device(args.device)
        _set_threads(args.threads)
        tables = evaluate_sweeps(args.sweep_dirs, settings, args.select, args.data_dir, args.device,
                                 args.batch_size, progress=not args.no_progress)
    except (SweepEvalError, CheckpointError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {str(exc).strip(chr(39))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}", file=sys.stderr)
        return 2
    for d, table in tables.items():
        print(f"{d / EVALS_FILE}: {len(table)} row(s) (settings {settings.settings_id()} in {d / SETTINGS_FILE})")
    return 0


def _set_threads(threads: int | None) -> None:
    import os

    import torch

    n = threads or (int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else 1)
    torch.set_num_threads(n)


if __name__ == "__main__":
    sys.exit(main())
