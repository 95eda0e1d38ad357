"""Zero-shot protein variant effect: Spearman of LL(mutant) - LL(wild type) against measured fitness.

For each assay (a DMS CSV and the wild-type CDS): amino-acid mutants become codon substitutions of the
CDS (`dnahnet.evals.mutations`: fewest nucleotide changes, ties by codon usage); each mutant window and
the wild-type window have the same length (the CDS, optionally with `flank` nt of genomic context on
each side, found by locating the CDS in `--context` on either strand, wrapping circular replicons);
delta_ll = sum LL(mutant window) - sum LL(wild-type window) (`dnahnet.evals.scoring`; the first
nucleotide of a window is never scored, identically for both). Spearman rho (torchmetrics) per assay and
averaged over assays.

Residue numbering: CSV residue p is residue p + offset of the protein translated from the CDS (Met = 1).
`--offset auto` (default) takes the offset under which most wild-type residues of the CSV match, and
`--wt-protein FASTA` (the assay's wild-type protein, numbered from `--wt-protein-start` or from a
``res24-286`` tag in its header) checks it by an ungapped alignment. Where the assay's wild type and the
CDS differ (TEM-1: pUC19's bla encodes I82 and V182, the assay's TEM-1 V82 and A182), `--wt-protein`
edits the CDS to encode the assay's wild type (minimal codon changes), logs it and records it in
summary.json. Without it, a mutant whose wild-type residue the CDS does not encode is an error naming
it (or is dropped and listed, with `--skip-mismatched`).

    python -m dnahnet.evals.variant_effect --checkpoint runs/x --dms BLAT.csv --cds TEM1_bla_cds.fasta \
        --fitness-column 2500 --wt-protein BLAT_ECOLX_wt_protein_24-286.fasta --context pUC19.gb --out out/ve
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional import spearman_corrcoef

from dnahnet.data.ingest import open_text
from dnahnet.evals import mutations as mut
from dnahnet.evals.cli import (
    ScoreCache,
    add_paired_inputs,
    atomic_write_csv,
    atomic_write_json,
    count_paired,
    evaluation_parser,
    nonnegative_int,
    parse_evaluation_args,
    positive_int,
    run_main,
    score_with_cache,
    scorer_from_args,
)
from dnahnet.evals.genes import (
    Replicon,
    cds_sequence,
    flanked_window,
    is_genbank,
    locate,
    read_annotation,
    read_genome,
)
from dnahnet.evals.scoring import Scorer

log = logging.getLogger(__name__)

DEFAULT_FLANK = 256  # nt of genomic context each side of the CDS when --context is given (ours)


def spearman(preds, target) -> float:
    """Spearman rank correlation (torchmetrics; ties get average ranks). NaN with fewer than 3 pairs."""
    p = torch.tensor(np.asarray(preds, dtype=np.float64))
    t = torch.tensor(np.asarray(target, dtype=np.float64))
    if p.shape != t.shape or p.dim() != 1:
        raise ValueError(f"spearman needs two 1-D arrays of one length, got {tuple(p.shape)} and {tuple(t.shape)}")
    if p.numel() < 3:
        return float("nan")
    return float(spearman_corrcoef(p, t))


@dataclass
class AssaySpec:
    """One assay as given on the command line."""

    dms: Path
    cds: Path
    fitness_column: str
    mutant_column: str = "mutant"
    offset: str | int = "auto"  # int, or "auto"
    context: Path | None = None
    flank: int | None = None
    wt_protein: Path | None = None
    wt_protein_start: int | None = None
    name: str | None = None
    mutation_type: str = "auto"  # auto | aa | nt
    skip_mismatched: bool = False
    codon_usage: Path | None = None
    max_variants: int | None = None
    seed: int = 0


@dataclass
class Assay:
    name: str
    wt_window: str
    cds_in_window: int  # index of the CDS's first base in the window
    variants: pd.DataFrame  # mutant, fitness, line, window (mutant window), nt_changes
    info: dict = field(default_factory=dict)


def read_single_fasta(path: Path) -> tuple[str, str, str]:
    """(id, description, sequence) of a one-record FASTA; error otherwise."""
    from Bio import SeqIO

    with open_text(path) as fh:
        recs = list(SeqIO.parse(fh, "fasta"))
    if len(recs) != 1:
        raise ValueError(f"{path}: expected exactly one FASTA record, found {len(recs)}")
    return recs[0].id, recs[0].description, str(recs[0].seq).upper()


def load_dms(path: Path, fitness_column: str, mutant_column: str = "mutant") -> tuple[pd.DataFrame, int]:
    """(rows with mutant, fitness, line) and the number of rows dropped for a missing fitness."""
    frame = pd.read_csv(path, encoding="utf-8-sig")  # DMS CSVs often start with a byte-order mark
    for col in (mutant_column, fitness_column):
        if col not in frame.columns:
            raise ValueError(f"{path}: no column {col!r}; columns: {', '.join(map(str, frame.columns))}")
    out = pd.DataFrame({
        "mutant": frame[mutant_column].astype(str).str.strip(),
        "fitness": pd.to_numeric(frame[fitness_column], errors="coerce"),
        "line": np.arange(len(frame)) + 2,  # 1-based file line (header = line 1)
    })
    missing = int(out["fitness"].isna().sum())
    if missing:
        log.warning("%s: %d rows without a numeric %r fitness are left out", path, missing, fitness_column)
    out = out[out["fitness"].notna()].reset_index(drop=True)
    if out.empty:
        raise ValueError(f"{path}: no rows with a numeric fitness in column {fitness_column!r}")
    return out, missing


def _reference_start(description: str, given: int | None, path: Path) -> int:
    if given is not None:
        return given
    m = re.search(r"res(?:idues?)?[ _]?(\d+)\s*-\s*\d+", description)
    if not m:
        raise ValueError(f"{path}: cannot tell the first residue number from the header; pass --wt-protein-start")
    return int(m.group(1))


def _codon_usage(spec: AssaySpec, cds: str, context_cds: list[str]) -> mut.CodonUsage:
    if spec.codon_usage is not None:
        path = Path(spec.codon_usage)
        if is_genbank(path):
            ann, genome = read_annotation(path), read_genome(path)
            seqs = [cds_sequence(genome[g.seqid], g) for g in ann.genes if g.is_protein_coding and g.seqid in genome]
        else:  # a FASTA of coding sequences
            from Bio import SeqIO

            with open_text(path) as fh:
                seqs = [str(r.seq) for r in SeqIO.parse(fh, "fasta")]
        if not seqs:
            raise ValueError(f"--codon-usage {path}: no coding sequences found")
        return mut.CodonUsage.from_sequences(seqs, source=f"{path.name} ({len(seqs)} CDS)")
    return mut.CodonUsage.from_sequences([cds, *context_cds], source=f"the CDS + {len(context_cds)} context CDS")


@dataclass(frozen=True)
class GenomicContext:
    """Where the CDS (as given, before any reconciliation) lies in `--context`, and the context's CDSs."""

    replicon: Replicon
    start: int  # forward-strand start of the CDS
    strand: int  # +1 / -1
    coding_sequences: list[str]  # the context's annotated protein-coding sequences (codon usage)


def read_context(path: Path, cds: str, cds_id: str) -> GenomicContext:
    """Locate the CDS on either strand of the first record of `path` that holds it; its CDS features (none
    when the file has no readable annotation, e.g. a FASTA)."""
    genome = read_genome(path)
    located = None
    for rep in genome.values():
        try:
            located = (rep, *locate(rep, cds))
            break
        except ValueError:
            continue
    if located is None:
        raise ValueError(f"--context {path}: the CDS {cds_id} is not found on either strand of any record")
    try:
        ann = read_annotation(path)
        coding = [cds_sequence(genome[g.seqid], g) for g in ann.genes if g.is_protein_coding and g.seqid in genome]
    except ValueError:
        coding = []
    return GenomicContext(*located, coding)


def parse_mutants(spec: AssaySpec, frame: pd.DataFrame) -> list[list[mut.Mutation]]:
    """Each row's mutant string as mutations; an unreadable one is an error naming the CSV line."""
    parsed = []
    for mutant, line in zip(frame["mutant"], frame["line"], strict=True):
        try:
            parsed.append(mut.parse_mutant(mutant, kind=spec.mutation_type))
        except mut.MutationError as e:
            raise ValueError(f"{spec.dms}:{line}: {e}") from None
    return parsed


@dataclass(frozen=True)
class OffsetFit:
    """The residue offset under which most of the CSV's wild-type residues match the CDS protein."""

    offset: int
    matching_positions: int
    positions: int  # distinct mutated positions


@dataclass(frozen=True)
class Numbering:
    """How CSV residues map to the CDS, and the CDS that encodes the assay's wild type."""

    offset: int  # CSV residue p = CDS residue p + offset
    source: str  # "wt_protein", "auto" or "explicit"
    wt_cds: str  # the CDS, edited to encode the assay's wild type when --wt-protein says it differs
    detected: OffsetFit | None = None  # what the CSV alone suggests (None: no amino-acid mutants, or no fit)
    wt_protein: dict | None = None  # --wt-protein's placement: file, first_residue, offset, identity
    reconciled: list[str] | None = None  # residues edited in the CDS to encode the assay's wild type


def _detect_offset(spec: AssaySpec, name: str, protein: str, parsed: list[list[mut.Mutation]]) -> OffsetFit | None:
    if not any(m.kind == "aa" for v in parsed for m in v):
        return None
    try:
        off, n_match, n_pairs = mut.detect_offset(protein, parsed)
    except mut.MutationError as e:
        if spec.offset == "auto" and spec.wt_protein is None:
            raise ValueError(f"{spec.dms}: {e}") from None
        # The numbering is given (--offset / --wt-protein): each mutant is checked against it later.
        log.warning("%s: residue offset not detectable from the CSV (%s)", name, e)
        return None
    log.info("%s: residue offset %d matches %d/%d mutated positions", name, off, n_match, n_pairs)
    return OffsetFit(off, n_match, n_pairs)


def resolve_numbering(spec: AssaySpec, name: str, cds: str, protein: str, parsed: list[list[mut.Mutation]],
                      usage: mut.CodonUsage) -> Numbering:
    """Numbering: explicit, detected from the CSV, or checked against the assay's wild-type protein."""
    detected = _detect_offset(spec, name, protein, parsed)
    if spec.wt_protein is not None:
        _, desc, ref = read_single_fasta(Path(spec.wt_protein))
        first = _reference_start(desc, spec.wt_protein_start, Path(spec.wt_protein))
        aln = mut.align_reference_protein(protein, ref, first)
        if aln.identity < 0.9:
            raise ValueError(
                f"--wt-protein {spec.wt_protein}: only {aln.identity:.0%} identical to the CDS translation at the "
                f"best placement (offset {aln.offset}); is it the right protein?"
            )
        if spec.offset != "auto" and int(spec.offset) != aln.offset:
            raise ValueError(f"--offset {spec.offset} contradicts --wt-protein, which places residue {first} at offset {aln.offset}")
        if detected is not None and detected.offset != aln.offset:
            raise ValueError(f"the CSV's residues fit offset {detected.offset}, but --wt-protein places them at {aln.offset}")
        wt_cds, changes = mut.reconcile_cds(cds, aln, usage)
        if changes:
            log.warning("%s: the CDS differs from the assay's wild-type protein at %s; the wild-type CDS is edited "
                        "to encode the assay's wild type (minimal codon changes)", name, ", ".join(changes))
        placement = {"file": str(spec.wt_protein), "first_residue": first, "offset": aln.offset,
                     "identity": round(aln.identity, 4)}
        return Numbering(aln.offset, "wt_protein", wt_cds, detected, placement, changes)
    if spec.offset == "auto":
        if detected is None:
            return Numbering(0, "auto", cds, None)
        if detected.matching_positions < 0.9 * detected.positions:
            raise ValueError(
                f"{spec.dms}: the best residue offset ({detected.offset}) matches only {detected.matching_positions}/"
                f"{detected.positions} wild-type residues of the CDS ("
                + "; ".join(mut.wild_type_mismatches(protein, parsed, detected.offset, limit=3))
                + "); pass --offset or --wt-protein"
            )
        return Numbering(detected.offset, "auto", cds, detected)
    offset = int(spec.offset)
    if detected is not None and detected.offset != offset:
        log.warning("%s: --offset %d given, but offset %d matches more wild-type residues", name, offset, detected.offset)
    return Numbering(offset, "explicit", cds, detected)


@dataclass
class MutantWindows:
    rows: list[int]  # rows of the DMS table kept
    windows: list[str]  # per kept row: the wild-type window with the mutant CDS
    nt_changes: list[int]  # per kept row: nucleotides changed in the CDS
    mismatched: list[str]  # mutants dropped because the CDS does not encode their wild type (--skip-mismatched)


def mutant_windows(spec: AssaySpec, name: str, frame: pd.DataFrame, parsed: list[list[mut.Mutation]],
                   numbering: Numbering, wt_window: str, flank: int, usage: mut.CodonUsage) -> MutantWindows:
    """Each mutant's window: the wild-type window with the mutant CDS (fewest nucleotide changes)."""
    wt_cds = numbering.wt_cds
    out = MutantWindows([], [], [], [])
    for i, (variant, mutant, line) in enumerate(zip(parsed, frame["mutant"], frame["line"], strict=True)):
        try:
            m_cds = mut.apply_mutations(wt_cds, variant, offset=numbering.offset, usage=usage, label=mutant)
        except mut.WildTypeMismatch as e:
            if not spec.skip_mismatched:
                raise ValueError(f"{spec.dms}:{line}: {e} (pass --wt-protein with the assay's wild-type protein, "
                                 "or --skip-mismatched to drop such mutants)") from None
            out.mismatched.append(mutant)
            continue
        except mut.MutationError as e:
            raise ValueError(f"{spec.dms}:{line}: {e}") from None
        out.rows.append(i)
        out.windows.append(wt_window[:flank] + m_cds + wt_window[flank + len(wt_cds):])
        out.nt_changes.append(mut.hamming(m_cds, wt_cds))
    if out.mismatched:
        log.warning("%s: %d mutants dropped (wild type not encoded by the CDS): %s", name, len(out.mismatched),
                    ", ".join(out.mismatched[:10]) + (" ..." if len(out.mismatched) > 10 else ""))
    return out


def prepare_assay(spec: AssaySpec) -> Assay:
    """Read, check and map an assay: wild-type window and every mutant window (no model involved)."""
    name = spec.name or Path(spec.dms).stem
    cds_id, _, cds = read_single_fasta(Path(spec.cds))
    protein = mut.check_cds(cds, name=str(spec.cds))
    context = read_context(spec.context, cds, cds_id) if spec.context is not None else None
    usage = _codon_usage(spec, cds, context.coding_sequences if context is not None else [])
    frame, n_missing = load_dms(Path(spec.dms), spec.fitness_column, spec.mutant_column)
    parsed = parse_mutants(spec, frame)
    numbering = resolve_numbering(spec, name, cds, protein, parsed, usage)

    # Windows: the (reconciled) CDS, with flanks from the context in the CDS's orientation.
    flank = spec.flank if spec.flank is not None else (DEFAULT_FLANK if context is not None else 0)
    if flank and context is None:
        raise ValueError("--flank needs --context (the genomic sequence around the CDS)")
    if context is not None:
        full = flanked_window(context.replicon, context.start, len(cds), context.strand, flank)
        wt_window = full[:flank] + numbering.wt_cds + full[flank + len(cds):]
    else:
        wt_window = numbering.wt_cds
    mutants = mutant_windows(spec, name, frame, parsed, numbering, wt_window, flank, usage)
    variants = frame.iloc[mutants.rows].reset_index(drop=True).assign(window=mutants.windows,
                                                                      nt_changes=mutants.nt_changes)
    subsampled = spec.max_variants is not None and spec.max_variants < len(variants)
    if subsampled:
        variants = variants.sample(n=spec.max_variants, random_state=spec.seed).sort_index().reset_index(drop=True)

    info = {"dms": str(spec.dms), "cds": str(spec.cds), "cds_nt": len(cds), "protein_aa": len(protein),
            "fitness_column": spec.fitness_column, "codon_usage": usage.source, "n_missing_fitness": n_missing}
    if numbering.detected is not None:
        d = numbering.detected
        info["offset_detected"] = {"offset": d.offset, "matching_positions": d.matching_positions, "positions": d.positions}
    if numbering.wt_protein is not None:
        info["wt_protein"] = numbering.wt_protein
        info["wt_reconciled"] = numbering.reconciled
    info["offset_source"] = numbering.source
    info["offset"] = numbering.offset
    if context is not None:
        info["context"] = {"file": str(spec.context), "record": context.replicon.id,
                           "cds_start_1based": context.start + 1, "strand": "+" if context.strand > 0 else "-",
                           "circular": context.replicon.circular}
    info["flank"] = flank
    info["window_nt"] = len(wt_window)
    info["skipped_mismatched"] = mutants.mismatched
    if subsampled:
        info["subsampled_to"] = spec.max_variants
    return Assay(name, wt_window, flank, variants, info)


def score_assays(scorer: Scorer, assays: list[Assay], out_dir: Path, model_info: dict | None = None) -> ScoreCache:
    """Log-likelihood of every wild-type and mutant window, resumable through DIR's score cache."""
    digest = hashlib.sha256()
    for a in assays:
        digest.update(a.name.encode() + a.wt_window.encode())
        for mname, w in zip(a.variants["mutant"], a.variants["window"], strict=True):
            digest.update(mname.encode() + w.encode())
    cache = ScoreCache(out_dir, "variants", {"model": model_info, "scoring": scorer.describe(), "inputs": digest.hexdigest()})
    items = []
    for a in assays:
        items.append((f"{a.name}\t<wild type>", a.wt_window))  # scored once per assay
        items.extend((f"{a.name}\t{m}", w) for m, w in zip(a.variants["mutant"], a.variants["window"], strict=True))
    score_with_cache(scorer, items, cache, desc="variants")
    return cache


@dataclass
class AssayResults:
    table: pd.DataFrame  # one row per variant: assay, mutant, fitness, delta_ll, mutant_ll, nt_changes
    per_assay: dict[str, dict]  # assay name -> spearman, n, wt_ll and the assay's preparation record


def aggregate(assays: list[Assay], scores: dict) -> AssayResults:
    """delta_ll per variant and Spearman per assay from the window scores."""
    frames, per_assay = [], {}
    for a in assays:
        wt_ll = scores[f"{a.name}\t<wild type>"][0]
        mutant_ll = np.array([scores[f"{a.name}\t{m}"][0] for m in a.variants["mutant"]])
        delta = mutant_ll - wt_ll
        frames.append(pd.DataFrame({
            "assay": a.name, "mutant": a.variants["mutant"], "fitness": a.variants["fitness"], "delta_ll": delta,
            "mutant_ll": mutant_ll, "nt_changes": a.variants["nt_changes"],
        }))
        rho = spearman(delta, a.variants["fitness"].to_numpy())
        per_assay[a.name] = {"spearman": rho, "n": int(len(delta)), "wt_ll": wt_ll, **a.info}
        log.info("%s: Spearman %.4f over %d variants", a.name, rho, len(delta))
    return AssayResults(pd.concat(frames, ignore_index=True), per_assay)


def summary_report(results: AssayResults, n_assays: int, scorer: Scorer, model_info: dict | None) -> dict:
    """summary.json's content: the mean Spearman over assays (NaN ones left out) and each assay's record."""
    rhos = [v["spearman"] for v in results.per_assay.values() if not math.isnan(v["spearman"])]
    return {
        "spearman": float(np.mean(rhos)) if rhos else float("nan"),  # mean over assays
        "n": int(len(results.table)),
        "n_assays": n_assays,
        "spearman_per_assay": {k: v["spearman"] for k, v in results.per_assay.items()},
        "score": "delta_ll = sum log p(mutant window) - sum log p(wild-type window); first nt unscored",
        "model": model_info,
        "scoring": scorer.describe(),
        "assays": results.per_assay,
    }


def evaluate_assays(scorer: Scorer, assays: list[Assay], out_dir: Path, model_info: dict | None = None) -> dict:
    """Score every assay (resumable), write DIR/variants.csv and DIR/summary.json, return the summary."""
    out_dir = Path(out_dir)
    cache = score_assays(scorer, assays, out_dir, model_info)
    results = aggregate(assays, cache.scores)
    summary = summary_report(results, len(assays), scorer, model_info)
    atomic_write_csv(out_dir / "variants.csv", results.table)
    atomic_write_json(out_dir / "summary.json", summary)
    cache.finish()
    return summary


def _per_assay(values: list | None, n: int, flag: str, default):
    if not values:
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise SystemExit(f"error: {flag} is given {len(values)} times for {n} --dms files (give it once or once per file)")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = evaluation_parser("variant_effect", __doc__)
    a = p.add_argument_group("assays (repeat --dms/--cds for several; other options once, or once per --dms)")
    add_paired_inputs(a, {"--dms": "DMS CSV", "--cds": "wild-type CDS FASTA (one record)"})
    a.add_argument("--fitness-column", action="append", required=True, help="column of measured fitness (e.g. 2500)")
    a.add_argument("--mutant-column", action="append", help="column of mutant strings (default: mutant)")
    a.add_argument("--mutation-type", choices=("auto", "aa", "nt"), default="auto",
                   help="auto: H24C is amino acid, c.123A>G nucleotide; nt: A123G is read as nucleotides")
    a.add_argument("--offset", action="append", help="CSV residue p = CDS residue p + K (default: auto-detected)")
    a.add_argument("--wt-protein", action="append", type=Path, help="the assay's wild-type protein FASTA (checks numbering)")
    a.add_argument("--wt-protein-start", action="append", type=int, help="residue number of --wt-protein's first residue")
    a.add_argument("--context", action="append", type=Path, help="GenBank/FASTA holding the CDS (genomic flanks)")
    a.add_argument("--flank", type=nonnegative_int, default=None, help=f"flank nt each side with --context (default {DEFAULT_FLANK})")
    a.add_argument("--codon-usage", type=Path, default=None,
                   help="GenBank (its CDS features) or FASTA of CDSs for codon-usage ties (default: CDS + context)")
    a.add_argument("--name", action="append", help="assay name (default: the CSV's stem)")
    a.add_argument("--skip-mismatched", action="store_true", help="drop mutants whose wild type the CDS does not encode")
    a.add_argument("--max-variants", type=positive_int, default=None, help="score a seeded random sample per assay (smoke runs)")
    return p


def main(argv: list[str] | None = None) -> dict:
    args = parse_evaluation_args(build_parser(), argv)
    n = count_paired(args, ("--dms", "--cds"))
    cols = _per_assay(args.fitness_column, n, "--fitness-column", None)
    mcols = _per_assay(args.mutant_column, n, "--mutant-column", "mutant")
    offsets = _per_assay(args.offset, n, "--offset", "auto")
    contexts = _per_assay(args.context, n, "--context", None)
    wtp = _per_assay(args.wt_protein, n, "--wt-protein", None)
    wtp_start = _per_assay(args.wt_protein_start, n, "--wt-protein-start", None)
    names = _per_assay(args.name, n, "--name", None)
    for o in offsets:
        if o != "auto" and not re.fullmatch(r"-?\d+", str(o)):
            raise SystemExit(f"error: --offset {o!r} is not an integer or 'auto'")
    specs = [
        AssaySpec(dms=args.dms[i], cds=args.cds[i], fitness_column=cols[i], mutant_column=mcols[i],
                  offset=offsets[i], context=contexts[i], flank=args.flank, wt_protein=wtp[i],
                  wt_protein_start=wtp_start[i], name=names[i], mutation_type=args.mutation_type,
                  skip_mismatched=args.skip_mismatched, codon_usage=args.codon_usage,
                  max_variants=args.max_variants, seed=args.seed)
        for i in range(n)
    ]
    try:
        assays = [prepare_assay(s) for s in specs]
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    if len({a.name for a in assays}) != len(assays):
        raise SystemExit("error: two assays share a name; pass --name for each")
    scorer, model_info = scorer_from_args(args)
    summary = evaluate_assays(scorer, assays, args.out, model_info)
    print(f"\n{'assay':<32} {'n':>6} {'spearman':>9}")
    for name, v in summary["assays"].items():
        print(f"{name:<32} {v['n']:>6} {v['spearman']:>9.4f}")
    print(f"{'mean over assays':<32} {summary['n']:>6} {summary['spearman']:>9.4f}")
    print(f"wrote {args.out / 'variants.csv'} and {args.out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
