"""Zero-shot gene essentiality: AUROC of the stop-cassette knockout effect against essential-gene labels.

For each labelled gene (the dnaHNet paper's protocol): a `window`-nt window (8,192 by default) centred on the gene,
in the gene's orientation (reverse complement for minus-strand genes; circular replicons wrap; see
`dnahnet.evals.genes.gene_window`); the knockout writes TAATAATAATAGTGA over the 15 nt that start 12 nt
after the first base of the start codon (length preserved); effect = sum LL(knockout) - sum LL(wild type)
(`dnahnet.evals.scoring`, identical rules for both windows). A damaging knockout lowers the likelihood,
so the essentiality score is -effect: AUROC(-effect, essential) (Mann-Whitney U, scipy), per organism and pooled.
Beside it, the gene-length baseline: AUROC with the gene's annotated length as the score, reported as is
(above 0.5 when longer genes are more often essential).

Genes evaluated: protein-coding genes (biotype protein_coding with a CDS) whose CDS is longer than 27 nt,
so the cassette (CDS positions 13..27) lies inside it; RNA genes and pseudogenes are left out and counted
in summary.json. `--max-genes N` scores a seeded sample that keeps the essential fraction (stratified).

    python -m dnahnet.evals.essentiality --checkpoint runs/x --genome GCF_000005845.2_ASM584v2_genomic.fna.gz \
        --annotation GCF_000005845.2_ASM584v2_genomic.gff.gz --labels ecoli_mg1655_keio_essential.tsv --out out/ess
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from dnahnet.data.ingest import parse_name
from dnahnet.evals.cli import (
    ScoreCache,
    add_paired_inputs,
    atomic_write_csv,
    atomic_write_json,
    count_paired,
    evaluation_parser,
    parse_evaluation_args,
    positive_int,
    run_main,
    score_with_cache,
    scorer_from_args,
)
from dnahnet.evals.genes import (
    CASSETTE_OFFSET,
    STOP_CASSETTE,
    WindowError,
    apply_topology,
    cassette_eligible,
    gene_window,
    knockout,
    read_annotation,
    read_genome,
)
from dnahnet.evals.scoring import Scorer

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 8192


def auroc(scores, labels) -> float:
    """Area under the ROC curve of `scores` for binary `labels`, exact, a tie counting half: the Mann-Whitney
    U of the positives' scores against the negatives' (scipy.stats), over the number of pairs. NaN with one
    class."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"auroc needs two 1-D arrays of one length, got {s.shape} and {y.shape}")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("auroc labels must be 0/1")
    positives, negatives = s[y == 1], s[y == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    # method="asymptotic": only the statistic is used, not the p-value an exact method would enumerate.
    u = mannwhitneyu(positives, negatives, alternative="two-sided", method="asymptotic").statistic
    return float(u / (len(positives) * len(negatives)))


def read_labels(path: Path, column: str | None = None) -> pd.DataFrame:
    """locus_tag + essential (0/1) (+ any other columns) from a TSV; the label column is `column`, or the
    one column whose name starts with 'essential'."""
    frame = pd.read_csv(path, sep="\t", dtype={"locus_tag": str})
    if "locus_tag" not in frame.columns:
        raise ValueError(f"{path}: no locus_tag column; columns: {', '.join(frame.columns)}")
    if column is None:
        cands = [c for c in frame.columns if c.lower().startswith("essential")]
        if len(cands) != 1:
            raise ValueError(f"{path}: cannot tell the label column (candidates: {cands}); pass --label-column")
        column = cands[0]
    if column not in frame.columns:
        raise ValueError(f"{path}: no column {column!r}; columns: {', '.join(frame.columns)}")
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.index[~values.isin([0, 1])]
    if len(bad):
        raise ValueError(f"{path}:{int(bad[0]) + 2}: label {frame[column].iloc[bad[0]]!r} in {column!r} is not 0 or 1")
    if frame["locus_tag"].duplicated().any():
        dup = frame["locus_tag"][frame["locus_tag"].duplicated()].iloc[0]
        raise ValueError(f"{path}: locus_tag {dup} appears twice")
    return frame.assign(essential=values.astype(int))


def stratified_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded sample of `n` items keeping the positive fraction (at least one of each
    class when both exist and n >= 2)."""
    labels = np.asarray(labels).astype(int)
    if n >= len(labels):
        return np.arange(len(labels))
    if n < 1:
        raise ValueError(f"--max-genes {n} must be >= 1")
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = int(round(n * len(pos) / len(labels)))
    if n >= 2 and len(pos) and len(neg):
        n_pos = min(max(n_pos, 1), n - 1)
    n_pos = min(n_pos, len(pos))
    n_neg = min(n - n_pos, len(neg))
    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n_neg, replace=False)])
    return np.sort(picked)


@dataclass
class Organism:
    name: str
    genes: pd.DataFrame  # locus_tag, gene, essential, length, strand, seqid, wt, ko (windows)
    info: dict = field(default_factory=dict)


def prepare_organism(
    name: str, genome_path: Path, annotation_path: Path, labels_path: Path, *, window: int = DEFAULT_WINDOW,
    max_genes: int | None = None, seed: int = 0, label_column: str | None = None,
) -> Organism:
    """Labelled, cassette-eligible genes with their wild-type and knockout windows (no model involved)."""
    genome = read_genome(genome_path)
    annotation = read_annotation(annotation_path)
    apply_topology(genome, annotation)
    labels = read_labels(labels_path, label_column)
    by_tag = annotation.by_locus_tag()
    excluded: Counter = Counter()
    coord_mismatch = 0
    rows = []
    for rec in labels.itertuples(index=False):
        gene = by_tag.get(rec.locus_tag)
        if gene is None:
            excluded["not in the annotation"] += 1
            continue
        ok, why = cassette_eligible(gene)
        if not ok:
            excluded["CDS <= 27 nt" if why.startswith("CDS of") else why] += 1
            continue
        if gene.seqid not in genome:
            raise ValueError(f"{annotation_path}: {gene.locus_tag} lies on {gene.seqid}, absent from {genome_path}")
        if {"start", "end"} <= set(labels.columns) and (int(rec.start) - 1, int(rec.end)) != (gene.start, gene.end):
            coord_mismatch += 1
        rows.append((rec.locus_tag, gene.name, int(rec.essential), gene.length, gene.strand, gene.seqid, gene))
    if coord_mismatch:
        log.warning("%s: %d genes have other coordinates in %s than in %s (the annotation's are used)",
                    name, coord_mismatch, labels_path, annotation_path)
    if not rows:
        raise ValueError(f"{name}: no labelled protein-coding gene of {labels_path} is in {annotation_path}")
    frame = pd.DataFrame(rows, columns=["locus_tag", "gene", "essential", "length", "strand", "seqid", "obj"])
    n_eligible = len(frame)
    if max_genes is not None:
        frame = frame.iloc[stratified_sample(frame["essential"].to_numpy(), max_genes, seed)].reset_index(drop=True)
    wts, kos, keep = [], [], []
    for i, gene in enumerate(frame["obj"]):
        try:
            w = gene_window(genome[gene.seqid], gene, window)
            kos.append(knockout(w.seq, w.start_codon))
        except WindowError as e:
            excluded["window does not fit"] += 1
            log.warning("%s: %s skipped: %s", name, gene.locus_tag, e)
            continue
        wts.append(w.seq)
        keep.append(i)
    frame = frame.iloc[keep].drop(columns="obj").reset_index(drop=True).assign(wt=wts, ko=kos)
    info = {
        "genome": str(genome_path), "annotation": str(annotation_path), "labels": str(labels_path),
        "n_labelled": int(len(labels)), "n_eligible": n_eligible, "excluded": dict(excluded),
        "coordinate_mismatches": coord_mismatch,
        "circular": {k: v.circular for k, v in genome.items()},
    }
    log.info("%s: %d genes (%d essential) of %d eligible; excluded %s", name, len(frame), int(frame["essential"].sum()),
             n_eligible, dict(excluded))
    return Organism(name, frame, info)


def evaluate_essentiality(scorer: Scorer, organisms: list[Organism], out_dir: Path, model_info: dict | None = None,
                          window: int = DEFAULT_WINDOW) -> dict:
    """Score knockouts (resumable), write DIR/genes.csv and DIR/summary.json, return the summary."""
    out_dir = Path(out_dir)
    digest = hashlib.sha256()
    items = []
    for org in organisms:
        for tag, wt, ko in zip(org.genes["locus_tag"], org.genes["wt"], org.genes["ko"], strict=True):
            items += [(f"{org.name}\t{tag}\twt", wt), (f"{org.name}\t{tag}\tko", ko)]
            digest.update(f"{org.name}\t{tag}".encode() + wt.encode() + ko.encode())
    cache = ScoreCache(out_dir, "genes", {"model": model_info, "scoring": scorer.describe(), "inputs": digest.hexdigest()})
    score_with_cache(scorer, items, cache, desc="genes (wild type + knockout)")

    frames, per_org = [], {}
    for org in organisms:
        g = org.genes
        wt_ll = np.array([cache.scores[f"{org.name}\t{t}\twt"][0] for t in g["locus_tag"]])
        ko_ll = np.array([cache.scores[f"{org.name}\t{t}\tko"][0] for t in g["locus_tag"]])
        delta = ko_ll - wt_ll
        frame = pd.DataFrame({
            "organism": org.name, "locus_tag": g["locus_tag"], "gene": g["gene"], "essential": g["essential"],
            "length": g["length"], "strand": np.where(g["strand"] > 0, "+", "-"), "delta_ll": delta,
            "wt_ll": wt_ll, "ko_ll": ko_ll,
        })
        frames.append(frame)
        per_org[org.name] = {
            "auroc": auroc(-delta, frame["essential"]),
            "length_baseline_auroc": auroc(frame["length"], frame["essential"]),
            "n_genes": int(len(frame)), "n_essential": int(frame["essential"].sum()), **org.info,
        }
    table = pd.concat(frames, ignore_index=True)
    summary = {
        "auroc": auroc(-table["delta_ll"], table["essential"]),  # pooled over organisms
        "length_baseline_auroc": auroc(table["length"], table["essential"]),
        "n_genes": int(len(table)),
        "n_essential": int(table["essential"].sum()),
        "mean_auroc_over_organisms": float(np.nanmean([v["auroc"] for v in per_org.values()]))
        if any(not math.isnan(v["auroc"]) for v in per_org.values()) else float("nan"),
        "score": "-(sum LL(knockout window) - sum LL(wild-type window)); first nt unscored",
        "window": window, "cassette": STOP_CASSETTE, "cassette_offset": CASSETTE_OFFSET,
        "gene_filter": "protein_coding with a CDS longer than 27 nt",
        "model": model_info, "scoring": scorer.describe(), "organisms": per_org,
    }
    atomic_write_csv(out_dir / "genes.csv", table)
    atomic_write_json(out_dir / "summary.json", summary)
    cache.finish()
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = evaluation_parser("essentiality", __doc__)
    a = p.add_argument_group("organisms (repeat --genome/--annotation/--labels for several)")
    add_paired_inputs(a, {"--genome": "genome FASTA or GenBank", "--annotation": "GFF3 or GenBank annotation",
                          "--labels": "TSV: locus_tag + 0/1 essential column"})
    a.add_argument("--label-column", default=None, help="label column (default: the column named essential*)")
    a.add_argument("--name", action="append", help="organism name (default: the genome file's stem)")
    a.add_argument("--window", type=positive_int, default=DEFAULT_WINDOW, help=f"window length, nt (default {DEFAULT_WINDOW})")
    a.add_argument("--max-genes", type=positive_int, default=None, help="stratified seeded sample of genes per organism")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parse_evaluation_args(build_parser(), argv)
    n = count_paired(args, ("--genome", "--annotation", "--labels"))
    names = args.name or [parse_name(Path(g))[0] for g in args.genome]
    if len(names) != n or len(set(names)) != n:
        raise SystemExit("error: pass one distinct --name per --genome")
    if args.window < 2 * (CASSETTE_OFFSET + len(STOP_CASSETTE)):
        raise SystemExit(f"error: --window {args.window} is too short for the cassette")
    try:
        organisms = [
            prepare_organism(names[i], args.genome[i], args.annotation[i], args.labels[i], window=args.window,
                             max_genes=args.max_genes, seed=args.seed, label_column=args.label_column)
            for i in range(n)
        ]
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    scorer, model_info = scorer_from_args(args)
    summary = evaluate_essentiality(scorer, organisms, args.out, model_info, window=args.window)
    w = max(8, *(len(k) for k in summary["organisms"]))
    print(f"\n{'organism':<{w}} {'genes':>6} {'essential':>9} {'AUROC':>7} {'length AUROC':>13}")
    rows = [*summary["organisms"].items(), ("pooled", summary)]
    for name, v in rows:
        print(f"{name:<{w}} {v['n_genes']:>6} {v['n_essential']:>9} {v['auroc']:>7.4f} {v['length_baseline_auroc']:>13.4f}")
    print(f"wrote {args.out / 'genes.csv'} and {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
