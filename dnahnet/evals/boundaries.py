"""Boundary interpretability: where dnaHNet's chunkers put boundaries along an annotated genome.

Run a dnaHNet model over windows of a genome (forward strand) and report, per stage, the fraction of
positions selected as boundaries per region class and, inside coding regions, per codon position
(the dnaHNet paper's boundary analysis of B. subtilis, Shah et al. 2026: stage 1 / stage 2 overall
35.8 / 51.3%, stage-1 codon positions 6.5 / 42.6 / 58.4%). Stages are numbered from 0 here (stage 0 =
the paper's stage 1).

Fractions are conditional, as in the paper: stage s's fraction is over the positions that reached
stage s (the boundaries of stage s-1; every nucleotide for stage 0). `fraction_of_nucleotides` gives
stage s's boundaries over all nucleotides of the class. The first position of every window is a boundary
by construction (p_1 = 1) at every stage and is left out.

Region classes (per forward-strand position; a position covered by several features takes the first
that applies in this order):
  start_codon  the 3 nt of a protein-coding CDS's start codon (either strand)
  stop_codon   the 3 nt of its stop codon
  coding       the rest of a protein-coding CDS
  other_gene   bodies of RNA genes and pseudogenes (not in the paper's table; kept apart)
  promoter     `promoter_span` nt (default 100) upstream of a gene's 5' end, on the gene's strand
  intergenic   everything else
Codon positions 1/2/3 are counted in each CDS's own frame and orientation (GFF3 phases / GenBank
codon_start honoured, so frameshifted CDSs stay in frame); coding positions where overlapping CDSs
disagree on the codon position are left out of that tally.

Accessor (`boundary_masks_from_output`): the model's forward output carries `boundary_masks`, a list
over stages of (B, L_s) bool, outermost first, where stage s > 0 lives on the compressed sequence of
stage s-1 (its j-th row is the j-th boundary of stage s-1, in order), and optionally `valid_masks`
(same shapes; False on padding rows). `dnahnet.model.nucleotide_boundaries` maps them back to nucleotide
positions.

    python -m dnahnet.evals.boundaries --checkpoint runs/dnahnet --genome genome.fna.gz \
        --annotation genome.gff.gz --windows 5 --window-len 49152 --out out/boundaries
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from dnahnet.evals.cli import (
    atomic_write_csv,
    atomic_write_json,
    evaluation_parser,
    model_from_args,
    nonnegative_int,
    parse_evaluation_args,
    positive_int,
    run_main,
)
from dnahnet.evals.genes import Annotation, Gene, Replicon, apply_topology, extract, read_annotation, read_genome
from dnahnet.evals.scoring import load_scoring_model
from dnahnet.fileio import atomic_savefig
from dnahnet.model import nucleotide_boundaries
from dnahnet.tokenizer import encode

log = logging.getLogger(__name__)

REGIONS = ("promoter", "start_codon", "coding", "stop_codon", "intergenic", "other_gene")
INTERGENIC, PROMOTER, OTHER_GENE, CODING, STOP_CODON, START_CODON = (
    REGIONS.index(n) for n in ("intergenic", "promoter", "other_gene", "coding", "stop_codon", "start_codon")
)
DEFAULT_PROMOTER_SPAN = 100


# ------------------------------------------------------------------------------------- annotation tracks


@dataclass
class RegionTrack:
    """Per forward-strand position of one replicon: region class and codon position."""

    region: np.ndarray  # (n,) uint8 index into REGIONS
    codon_pos: np.ndarray  # (n,) int8: 1/2/3 inside protein-coding CDSs, 0 outside, -1 where CDSs disagree


def _idx(start: int, end: int, n: int) -> np.ndarray:
    """Positions [start, end) modulo n (circular features and flanks wrap)."""
    return np.arange(start, end) % n


def region_track(genes: Sequence[Gene], length: int, promoter_span: int = DEFAULT_PROMOTER_SPAN,
                 circular: bool = True) -> RegionTrack:
    """Region classes and codon positions of one replicon from its genes (see the module docstring)."""
    n = length
    region = np.full(n, INTERGENIC, dtype=np.uint8)
    codon = np.zeros(n, dtype=np.int8)

    def paint(start: int, end: int, value: int) -> None:
        if not circular:
            start, end = max(start, 0), min(end, n)
        if end > start:
            region[_idx(start, end, n)] = value

    # Lowest priority first: later paints override earlier ones.
    for g in genes:
        if promoter_span > 0 and g.biotype != "pseudogene":
            if g.strand > 0:
                paint(g.start - promoter_span, g.start, PROMOTER)
            else:
                paint(g.end, g.end + promoter_span, PROMOTER)
    coding = [g for g in genes if g.is_protein_coding]
    for g in genes:
        if not g.is_protein_coding:
            paint(g.start, g.end, OTHER_GENE)
    for g in coding:
        for seg in g.cds:
            paint(seg.start, seg.end, CODING)
            pos = _idx(seg.start, seg.end, n)
            offset = np.arange(seg.end - seg.start)  # 5' -> 3' in forward coordinates
            if g.strand < 0:
                offset = offset[::-1]  # distance from the segment's 5' end in the gene's orientation
            value = ((offset - seg.phase) % 3 + 1).astype(np.int8)
            cur = codon[pos]
            codon[pos] = np.where(cur == 0, value, np.where(cur == value, cur, -1))
    for g in coding:
        last = g.cds[-1]
        paint(*((last.end - 3, last.end) if g.strand > 0 else (last.start, last.start + 3)), STOP_CODON)
    for g in coding:
        sc = g.start_codon
        paint(*((sc, sc + 3) if g.strand > 0 else (sc - 2, sc + 1)), START_CODON)
    return RegionTrack(region, codon)


# ------------------------------------------------------------------------------------------ masks


def boundary_masks_from_output(output) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """(boundary_masks, valid_masks or None) of a forward output; clear error for models without them."""
    masks = getattr(output, "boundary_masks", None)
    if not masks:
        raise ValueError(
            f"the model's output ({type(output).__name__}) has no boundary_masks: boundary interpretability "
            "needs a dnaHNet model (family 'dnahnet')"
        )
    valid = getattr(output, "valid_masks", None) or None
    return list(masks), (list(valid) if valid is not None else None)


# ------------------------------------------------------------------------------------------ tallies


class BoundaryTally:
    """Counts per stage of positions that reached the stage and of boundaries, per region / codon position."""

    def __init__(self, n_stages: int):
        self.n_stages = n_stages
        self.reached = np.zeros((n_stages, len(REGIONS)), dtype=np.int64)
        self.selected = np.zeros((n_stages, len(REGIONS)), dtype=np.int64)
        self.total = np.zeros(len(REGIONS), dtype=np.int64)
        self.codon_reached = np.zeros((n_stages, 3), dtype=np.int64)
        self.codon_selected = np.zeros((n_stages, 3), dtype=np.int64)
        self.codon_total = np.zeros(3, dtype=np.int64)

    def add(self, masks: np.ndarray, region: np.ndarray, codon_pos: np.ndarray) -> None:
        """masks (S, L) bool nucleotide masks of one window; region/codon_pos (L,) of the same positions.
        Position 0 (always a boundary) is skipped."""
        masks, region, codon_pos = masks[:, 1:], region[1:], codon_pos[1:]
        nr = len(REGIONS)
        self.total += np.bincount(region, minlength=nr)
        in_codon = (region == CODING) & (codon_pos > 0)
        cp = codon_pos[in_codon].astype(np.int64) - 1
        self.codon_total += np.bincount(cp, minlength=3)
        reached = np.ones(masks.shape[1], dtype=bool)
        for s in range(self.n_stages):
            sel = masks[s] & reached
            self.reached[s] += np.bincount(region[reached], minlength=nr)
            self.selected[s] += np.bincount(region[sel], minlength=nr)
            self.codon_reached[s] += np.bincount(codon_pos[in_codon & reached].astype(np.int64) - 1, minlength=3)
            self.codon_selected[s] += np.bincount(codon_pos[in_codon & sel].astype(np.int64) - 1, minlength=3)
            reached = sel

    def table(self) -> pd.DataFrame:
        rows = []

        def frac(a, b):
            return float(a) / float(b) if b else float("nan")

        for s in range(self.n_stages):
            r_all, s_all = self.reached[s].sum(), self.selected[s].sum()
            rows.append((s, "overall", "all", int(r_all), int(s_all), frac(s_all, r_all), frac(s_all, self.total.sum())))
            for c, name in enumerate(REGIONS):
                rows.append((s, "region", name, int(self.reached[s, c]), int(self.selected[s, c]),
                             frac(self.selected[s, c], self.reached[s, c]), frac(self.selected[s, c], self.total[c])))
            for k in range(3):
                rows.append((s, "codon_position", str(k + 1), int(self.codon_reached[s, k]),
                             int(self.codon_selected[s, k]), frac(self.codon_selected[s, k], self.codon_reached[s, k]),
                             frac(self.codon_selected[s, k], self.codon_total[k])))
        return pd.DataFrame(rows, columns=["stage", "group", "category", "n_positions", "n_boundaries", "fraction",
                                           "fraction_of_nucleotides"])


def boundary_fractions(masks: Sequence[np.ndarray], tracks: Sequence[RegionTrack | tuple[np.ndarray, np.ndarray]]
                       ) -> pd.DataFrame:
    """The boundary table of windows: masks[i] (S, L_i) nucleotide masks, tracks[i] the window's
    region/codon-position arrays (a RegionTrack or a (region, codon_pos) pair)."""
    tally = BoundaryTally(masks[0].shape[0])
    for m, t in zip(masks, tracks, strict=True):
        region, codon = (t.region, t.codon_pos) if isinstance(t, RegionTrack) else t
        tally.add(np.asarray(m, dtype=bool), np.asarray(region), np.asarray(codon))
    return tally.table()


# ------------------------------------------------------------------------------------------ running


def window_starts(length: int, n_windows: int, window_len: int) -> list[int]:
    """Evenly spaced window starts over a replicon (deterministic): k * (length // n) when the windows
    fit without overlap, else spread from 0 to length - window_len (overlapping)."""
    if window_len > length:
        raise ValueError(f"--window-len {window_len} is longer than the replicon ({length} nt)")
    if n_windows < 1:
        raise ValueError(f"--windows {n_windows} must be >= 1")
    if n_windows * window_len <= length:
        return [k * (length // n_windows) for k in range(n_windows)]
    span = length - window_len
    return [round(k * span / (n_windows - 1)) for k in range(n_windows)]


@torch.inference_mode()
def run_boundaries(model, rep: Replicon, track: RegionTrack, starts: Sequence[int], window_len: int,
                   batch_size: int = 1, precision: str = "fp32") -> pd.DataFrame:
    """Forward the windows through the model and tally its boundaries."""
    device = next(model.parameters()).device
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    tally = None
    for i in tqdm(range(0, len(starts), batch_size), desc="windows", unit="batch"):
        chunk = starts[i : i + batch_size]
        ids = torch.stack([encode(extract(rep, s, s + window_len)) for s in chunk]).to(device)  # (B, L)
        if dtype is not None:
            with torch.autocast(device_type=device.type, dtype=dtype):
                out = model(ids)
        else:
            out = model(ids)
        masks, valid = boundary_masks_from_output(out)
        nuc = torch.stack(nucleotide_boundaries(masks, valid)).cpu().numpy()  # (S, B, L)
        if tally is None:
            tally = BoundaryTally(nuc.shape[0])
        for b, s in enumerate(chunk):
            pos = _idx(s, s + window_len, len(rep))
            tally.add(nuc[:, b], track.region[pos], track.codon_pos[pos])
    return tally.table()


def plot_boundaries(table: pd.DataFrame, path: Path) -> None:
    """Bar plots: boundary fraction per region class and stage; per codon position and stage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2.2, 1]})
    stages = sorted(table["stage"].unique())
    width = 0.8 / len(stages)
    for ax, group, cats, title in (
        (axes[0], "region", ["all", *REGIONS], "region class"),
        (axes[1], "codon_position", ["1", "2", "3"], "codon position (coding)"),
    ):
        for j, s in enumerate(stages):
            sub = table[(table["stage"] == s) & (table["group"].isin([group, "overall"] if group == "region" else [group]))]
            vals = [100 * sub.loc[sub["category"] == c, "fraction"].iloc[0] for c in cats]
            x = np.arange(len(cats)) + (j - (len(stages) - 1) / 2) * width
            bars = ax.bar(x, vals, width, label=f"stage {s}")
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_xticks(np.arange(len(cats)), [c.replace("_", " ") for c in cats], rotation=20)
        ax.set_ylabel("boundaries (% of positions reaching the stage)")
        ax.set_title(title)
        ax.set_ylim(0, 118)
        ax.legend(loc="upper left", ncol=len(stages), fontsize=8)
    fig.tight_layout()
    try:
        atomic_savefig(fig, path, dpi=130)
    finally:
        plt.close(fig)


def format_table(table: pd.DataFrame) -> str:
    """A stage-by-category table of percentages, like the paper's."""
    t = table.assign(label=np.where(table["group"] == "codon_position", "codon pos " + table["category"],
                                    table["category"]))
    wide = t.pivot(index="label", columns="stage", values="fraction") * 100
    order = ["all", *REGIONS, "codon pos 1", "codon pos 2", "codon pos 3"]
    wide = wide.reindex([o for o in order if o in wide.index])
    wide.columns = [f"stage {c} %" for c in wide.columns]
    return wide.to_string(float_format=lambda v: f"{v:6.1f}")


def build_parser() -> argparse.ArgumentParser:
    p = evaluation_parser("boundaries", __doc__, scoring=False)
    p.add_argument("--genome", required=True, type=Path, help="genome FASTA or GenBank")
    p.add_argument("--annotation", required=True, type=Path, help="GFF3 or GenBank annotation")
    p.add_argument("--seqid", default=None, help="replicon to use (default: the longest)")
    p.add_argument("--windows", type=positive_int, default=5, help="number of windows (default 5)")
    p.add_argument("--window-len", type=positive_int, default=49152, help="window length, nt (default 49,152)")
    p.add_argument("--promoter-span", type=nonnegative_int, default=DEFAULT_PROMOTER_SPAN,
                   help=f"nt upstream of a gene's 5' end counted as promoter (default {DEFAULT_PROMOTER_SPAN})")
    return p


def main(argv: list[str] | None = None) -> pd.DataFrame:
    args = parse_evaluation_args(build_parser(), argv)
    try:
        genome = read_genome(args.genome)
        annotation: Annotation = read_annotation(args.annotation)
        apply_topology(genome, annotation)
        seqid = args.seqid or max(genome, key=lambda k: len(genome[k]))
        if seqid not in genome:
            raise ValueError(f"--seqid {seqid} is not in {args.genome} (records: {', '.join(genome)})")
        rep = genome[seqid]
        genes = [g for g in annotation.genes if g.seqid == seqid]
        track = region_track(genes, len(rep), args.promoter_span, rep.circular)
        starts = window_starts(len(rep), args.windows, args.window_len)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None
    model, desc = model_from_args(args)
    model = load_scoring_model(model, args.device)
    log.info("%s: %d genes; windows at %s (%d nt each)", seqid, len(genes), starts, args.window_len)
    table = run_boundaries(model, rep, track, starts, args.window_len, args.batch_size, args.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(args.out / "boundaries.csv", table)
    atomic_write_json(args.out / "summary.json", {
        "model": desc, "genome": str(args.genome), "annotation": str(args.annotation), "seqid": seqid,
        "window_starts": starts, "window_len": args.window_len, "promoter_span": args.promoter_span,
        "fractions": {f"stage{r.stage}/{r.group}/{r.category}": r.fraction for r in table.itertuples()},
    })
    plot_boundaries(table, args.out / "boundaries.png")
    print(format_table(table))
    print(f"wrote {args.out / 'boundaries.csv'}, {args.out / 'boundaries.png'} and {args.out / 'summary.json'}")
    return table


if __name__ == "__main__":
    sys.exit(run_main(main, sys.argv[1:]))
