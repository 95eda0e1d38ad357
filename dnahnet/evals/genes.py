"""Genomes and gene annotations for the zero-shot evaluations: reading, windows, the stop cassette.

Coordinates are 0-based, half-open ``[start, end)`` on the forward strand of a replicon; ``strand`` is +1
or -1. On a circular replicon a feature may run past the end (``end > length``: it wraps through the
origin) and windows wrap; on a linear one a window that would leave the sequence is shifted inside it.

Readers: GFF3 (NCBI style, ``gene``/``pseudogene`` features with ``CDS`` children, ``Is_circular`` on
``region`` lines) and GenBank (``gene`` features joined to ``CDS``/RNA features by locus tag, topology
from the LOCUS line). Both may be gzip/xz/bz2 compressed (`dnahnet.data.ingest.open_text`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from Bio import SeqIO

from dnahnet.data.ingest import input_file, open_text, read_records
from dnahnet.tokenizer import reverse_complement_str

log = logging.getLogger(__name__)

# The dnaHNet paper's knockout: TAA TAA TAA TAG TGA, five stops in the start codon's frame.
STOP_CASSETTE = "TAATAATAATAGTGA"
CASSETTE_OFFSET = 12  # the cassette starts 12 nt after the first base of the start codon
MIN_CASSETTE_GENE_LENGTH = CASSETTE_OFFSET + len(STOP_CASSETTE)  # 27: the cassette must lie inside the CDS


class AnnotationError(ValueError):
    """An annotation or genome file that cannot be read (the message names the file and line)."""


class WindowError(ValueError):
    """A window that cannot be cut (replicon too short, gene too close to a linear end, ...)."""


@dataclass(frozen=True)
class Segment:
    """One CDS part; `phase` = bases to skip from its 5' end (in the gene's orientation) to a codon start."""

    start: int
    end: int
    phase: int = 0


@dataclass
class Gene:
    seqid: str  # replicon id (FASTA/GenBank record id)
    locus_tag: str
    name: str
    biotype: str  # protein_coding, pseudogene, tRNA, rRNA, ncRNA, ...
    start: int  # gene span, 0-based inclusive
    end: int  # gene span, exclusive (may exceed the replicon length on a circular replicon)
    strand: int  # +1 / -1
    cds: tuple[Segment, ...] = ()  # CDS parts in transcript order (5' -> 3' of the gene)

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def cds_length(self) -> int:
        return sum(s.end - s.start for s in self.cds)

    @property
    def is_protein_coding(self) -> bool:
        return self.biotype == "protein_coding" and bool(self.cds)

    @property
    def start_codon(self) -> int:
        """Forward-strand coordinate of the first base (in the gene's orientation) of the start codon:
        the 5' end of the first CDS part, or of the gene span when there is no CDS."""
        if self.cds:
            first = self.cds[0]
            return first.start if self.strand > 0 else first.end - 1
        return self.start if self.strand > 0 else self.end - 1


@dataclass
class Replicon:
    id: str
    seq: str  # upper case
    circular: bool = False

    def __len__(self) -> int:
        return len(self.seq)


@dataclass
class Annotation:
    genes: list[Gene]
    circular: dict[str, bool] = field(default_factory=dict)  # seqid -> topology, when the file says
    lengths: dict[str, int] = field(default_factory=dict)  # seqid -> length, when the file says
    source: str = ""

    def by_locus_tag(self) -> dict[str, Gene]:
        return {g.locus_tag: g for g in self.genes}


# ----------------------------------------------------------------------------------------------- reading


def is_genbank(path: str | Path) -> bool:
    """Whether a (possibly compressed) file is GenBank (its first non-empty line starts with LOCUS)."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.startswith("LOCUS")
    return False


def read_genome(path: str | Path) -> dict[str, Replicon]:
    """FASTA or GenBank (compressed or not) -> {record id: Replicon}, read and checked as the training
    data is (`dnahnet.data.ingest.read_records`). Topology from GenBank's LOCUS line (FASTA says nothing:
    linear until an annotation says otherwise, see `apply_topology`)."""
    f = input_file(path)
    out: dict[str, Replicon] = {}
    for rec in read_records(f):
        if rec.id in out:
            raise AnnotationError(f"{f.path}: duplicate record id {rec.id}")
        out[rec.id] = Replicon(rec.id, rec.seq.decode("ascii").upper(), rec.circular)
    return out


def apply_topology(genome: dict[str, Replicon], annotation: Annotation) -> None:
    """Mark replicons circular when the annotation says so; check the lengths it gives."""
    for seqid, rep in genome.items():
        if annotation.circular.get(seqid):
            rep.circular = True
        n = annotation.lengths.get(seqid)
        if n is not None and n != len(rep):
            raise AnnotationError(f"{annotation.source}: {seqid} has length {n} there but {len(rep)} in the genome")


def _parse_attributes(text: str, where: str) -> dict[str, str]:
    attrs = {}
    for item in text.strip().strip(";").split(";"):
        if not item:
            continue
        if "=" not in item:
            raise AnnotationError(f"{where}: attribute {item!r} is not key=value")
        k, v = item.split("=", 1)
        attrs[k.strip()] = unquote(v)
    return attrs


def read_gff3(path: str | Path) -> Annotation:
    """NCBI-style GFF3 -> genes with their CDS parts (phases kept, so frameshifted CDSs stay in frame)."""
    path = Path(path)
    genes: dict[str, Gene] = {}
    cds_parts: dict[str, list[tuple[int, int, int, str]]] = {}  # parent -> (start, end, phase, CDS ID)
    rna_types: dict[str, str] = {}
    circular: dict[str, bool] = {}
    lengths: dict[str, int] = {}
    with open_text(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if line.startswith("##FASTA"):
                break
            if line.startswith("##sequence-region"):
                parts = line.split()
                if len(parts) == 4:
                    lengths[parts[1]] = int(parts[3])
                continue
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.rstrip("\n").split("\t")
            where = f"{path}:{lineno}"
            if len(cols) != 9:
                raise AnnotationError(f"{where}: expected 9 tab-separated columns, found {len(cols)}")
            seqid, _, ftype, start, end, _, strand, phase, attr_text = cols
            try:
                start0, end0 = int(start) - 1, int(end)
            except ValueError:
                raise AnnotationError(f"{where}: start/end {start!r}/{end!r} are not integers") from None
            attrs = _parse_attributes(attr_text, where)
            if ftype == "region":
                if attrs.get("Is_circular", "").lower() == "true":
                    circular[seqid] = True
                continue
            if ftype in ("gene", "pseudogene"):
                if strand not in "+-" or not strand:
                    raise AnnotationError(f"{where}: gene strand {strand!r} is not + or -")
                gid = attrs.get("ID")
                if not gid:
                    raise AnnotationError(f"{where}: {ftype} without an ID attribute")
                biotype = attrs.get("gene_biotype") or ("pseudogene" if ftype == "pseudogene" else "unknown")
                tag = attrs.get("locus_tag") or attrs.get("Name") or gid
                genes[gid] = Gene(seqid, tag, attrs.get("Name", tag), biotype, start0, end0, 1 if strand == "+" else -1)
            elif ftype == "CDS":
                parent = attrs.get("Parent", "")
                try:
                    ph = int(phase) if phase not in (".", "") else 0
                except ValueError:
                    raise AnnotationError(f"{where}: CDS phase {phase!r} is not 0, 1 or 2") from None
                cds_id = attrs.get("ID") or f"line{lineno}"
                for p in parent.split(","):
                    cds_parts.setdefault(p, []).append((start0, end0, ph, cds_id))
            elif ftype in ("tRNA", "rRNA", "ncRNA", "tmRNA", "mRNA", "exon"):
                rna_types[attrs.get("ID", "")] = attrs.get("Parent", "")
    # CDS parents may be genes directly (NCBI prokaryotes) or transcripts whose parent is a gene. A gene
    # may carry several CDSs (isoforms: internal starts, programmed frameshifts; each its own CDS ID, one
    # line per part): the longest is kept, the first listed on a tie.
    for parent, parts in cds_parts.items():
        gid = parent if parent in genes else rna_types.get(parent)
        if gid not in genes:
            continue
        g = genes[gid]
        isoforms: dict[str, list] = {}
        for p in parts:
            isoforms.setdefault(p[3], []).append(p)
        best = max(isoforms.values(), key=lambda segs: sum(e - s for s, e, _, _ in segs))  # max keeps the first
        best = sorted(best, key=lambda p: p[0], reverse=g.strand < 0)  # transcript order
        if g.cds:  # another parent ID of the same gene (gene -> transcript -> CDS): keep the longer
            if sum(x.end - x.start for x in g.cds) >= sum(e - s for s, e, _, _ in best):
                continue
        g.cds = tuple(Segment(s, e, ph) for s, e, ph, _ in best)
    if not genes:
        raise AnnotationError(f"{path}: no gene features (is it GFF3?)")
    return Annotation(list(genes.values()), circular, lengths, str(path))


def read_genbank_annotation(path: str | Path) -> Annotation:
    """GenBank genes (joined to CDS/RNA features by locus tag), CDS parts with phases from codon_start."""
    path = Path(path)
    genes: list[Gene] = []
    circular: dict[str, bool] = {}
    lengths: dict[str, int] = {}
    with open_text(path) as fh:
        for rec in SeqIO.parse(fh, "genbank"):
            n = len(rec.seq)
            lengths[rec.id] = n
            circular[rec.id] = rec.annotations.get("topology", "") == "circular"
            by_tag: dict[str, dict] = {}
            order: list[str] = []
            for feat in rec.features:
                if feat.type not in ("gene", "CDS", "tRNA", "rRNA", "ncRNA", "tmRNA"):
                    continue
                tag = (feat.qualifiers.get("locus_tag") or feat.qualifiers.get("gene") or feat.qualifiers.get("label") or [""])[0]
                if not tag:
                    tag = f"{rec.id}:{feat.type}:{int(feat.location.start) + 1}"
                if tag not in by_tag:
                    by_tag[tag] = {}
                    order.append(tag)
                prev = by_tag[tag].get(feat.type)
                if prev is None or len(feat.location) > len(prev.location):  # isoforms: keep the longest
                    by_tag[tag][feat.type] = feat
            for tag in order:
                feats = by_tag[tag]
                main = feats.get("gene") or feats.get("CDS") or next(iter(feats.values()))
                strand = main.location.strand
                if strand not in (1, -1):
                    raise AnnotationError(f"{path}: {rec.id} feature {tag} has no strand")
                parts = main.location.parts  # Biopython lists parts in transcript order
                start, end = _span(parts, strand, n)
                name = (main.qualifiers.get("gene") or main.qualifiers.get("label") or [tag])[0]
                cds = feats.get("CDS")
                pseudo = "pseudo" in main.qualifiers or (cds is not None and "pseudo" in cds.qualifiers)
                if pseudo:
                    biotype = "pseudogene"
                elif cds is not None:
                    biotype = "protein_coding"
                else:
                    biotype = next((t for t in ("tRNA", "rRNA", "ncRNA", "tmRNA") if t in feats), "unknown")
                segments: tuple[Segment, ...] = ()
                if cds is not None:
                    codon_start = int(cds.qualifiers.get("codon_start", ["1"])[0])
                    phase, segs = codon_start - 1, []
                    for part in cds.location.parts:
                        segs.append(Segment(int(part.start), int(part.end), phase))
                        phase = (phase - (int(part.end) - int(part.start))) % 3
                    segments = tuple(segs)
                genes.append(Gene(rec.id, tag, name, biotype, start, end, strand, segments))
    if not genes:
        raise AnnotationError(f"{path}: no gene, CDS or RNA features")
    return Annotation(genes, circular, lengths, str(path))


def _span(parts, strand: int, n: int) -> tuple[int, int]:
    """Span [start, end) of a possibly origin-spanning location (end > n when it wraps)."""
    if len(parts) == 1:
        return int(parts[0].start), int(parts[0].end)
    starts = [int(p.start) for p in parts]
    ends = [int(p.end) for p in parts]
    # Transcript order that decreases in coordinates on the plus strand (or increases on minus) wraps.
    ordered = parts if strand > 0 else parts[::-1]
    wraps = any(int(b.start) < int(a.start) for a, b in zip(ordered, ordered[1:], strict=False))
    if wraps:
        first, last = ordered[0], ordered[-1]
        return int(first.start), int(last.end) + n
    return min(starts), max(ends)


def read_annotation(path: str | Path) -> Annotation:
    """GFF3 or GenBank, by content."""
    path = Path(path)
    return read_genbank_annotation(path) if is_genbank(path) else read_gff3(path)


# ----------------------------------------------------------------------------------------------- windows


def extract(rep: Replicon, start: int, end: int) -> str:
    """Forward-strand ``rep.seq[start:end]``; on a circular replicon the coordinates wrap."""
    n = len(rep)
    if end - start > n:
        raise WindowError(f"{rep.id}: a {end - start}-nt window is longer than the {n}-nt replicon")
    if 0 <= start and end <= n:
        return rep.seq[start:end]
    if not rep.circular:
        raise WindowError(f"{rep.id}: [{start}, {end}) leaves the linear replicon (0..{n})")
    s = start % n
    e = s + (end - start)
    return rep.seq[s:e] if e <= n else rep.seq[s:] + rep.seq[: e - n]


@dataclass(frozen=True)
class GeneWindow:
    seq: str  # the window, in the gene's orientation
    start_codon: int  # index in `seq` of the first base of the start codon
    genome_start: int  # forward-strand coordinate of the window's leftmost base (mod the replicon length)
    strand: int


def gene_window(rep: Replicon, gene: Gene, window: int = 8192) -> GeneWindow:
    """A `window`-nt window centred on the gene span, in the gene's orientation.

    In the gene's orientation the upstream flank gets floor((window - length) / 2) nt and the downstream
    flank the rest, so plus- and minus-strand genes are placed identically. A gene longer than the window
    gets a window that starts at the gene's 5' end. Circular replicons wrap; on a linear replicon a window
    that would leave the sequence is shifted inside it.
    """
    n = len(rep)
    if window > n:
        raise WindowError(f"{gene.locus_tag}: window {window} is longer than replicon {rep.id} ({n} nt)")
    upstream = max((window - gene.length) // 2, 0)
    if gene.strand > 0:
        left = gene.start - upstream
    else:
        left = gene.end + upstream - window
    if not rep.circular:
        left = min(max(left, 0), n - window)
    fwd = extract(rep, left, left + window)
    # Start codon position inside the window, in forward coordinates, then in the gene's orientation.
    sc = (gene.start_codon - left) % n if rep.circular else gene.start_codon - left
    if gene.strand > 0:
        return GeneWindow(fwd, sc, left % n, 1)
    return GeneWindow(reverse_complement_str(fwd), window - 1 - sc, left % n, -1)


def knockout(seq: str, start_codon: int, cassette: str = STOP_CASSETTE, offset: int = CASSETTE_OFFSET) -> str:
    """`seq` with `cassette` written over the len(cassette) nt starting `offset` nt after the first base of
    the start codon (length preserved)."""
    a = start_codon + offset
    b = a + len(cassette)
    if start_codon < 0 or b > len(seq):
        raise WindowError(f"the cassette [{a}, {b}) does not fit in a {len(seq)}-nt window")
    return seq[:a] + cassette + seq[b:]


def cassette_eligible(gene: Gene) -> tuple[bool, str]:
    """Protein-coding genes whose CDS is longer than 27 nt (so the cassette at +12..+26 lies inside it)."""
    if gene.biotype != "protein_coding":
        return False, f"biotype {gene.biotype}"
    if not gene.cds:
        return False, "no CDS"
    if gene.cds_length <= MIN_CASSETTE_GENE_LENGTH:
        return False, f"CDS of {gene.cds_length} nt (needs > {MIN_CASSETTE_GENE_LENGTH})"
    return True, ""


def locate(haystack: Replicon, needle: str) -> tuple[int, int]:
    """(forward-strand start, strand) of the unique occurrence of `needle` in a replicon (either strand;
    across the origin of a circular one). Raises when it is absent or occurs more than once."""
    needle = needle.upper()
    n, m = len(haystack), len(needle)
    text = haystack.seq + (haystack.seq[: m - 1] if haystack.circular else "")
    hits = []
    for strand, probe in ((1, needle), (-1, reverse_complement_str(needle))):
        i = text.find(probe)
        while i != -1:
            if i < n:
                hits.append((i, strand))
            i = text.find(probe, i + 1)
    hits = sorted(set(hits))
    if not hits:
        raise WindowError(f"the sequence ({m} nt) is not found on either strand of {haystack.id}")
    if len(hits) > 1:
        raise WindowError(f"the sequence ({m} nt) occurs {len(hits)} times in {haystack.id}: {hits[:5]}")
    return hits[0]


def flanked_window(rep: Replicon, start: int, length: int, strand: int, flank: int) -> str:
    """The feature [start, start+length) with `flank` nt on each side, in the feature's orientation."""
    fwd = extract(rep, start - flank, start + length + flank)
    return fwd if strand > 0 else reverse_complement_str(fwd)


def cds_sequence(rep: Replicon, gene: Gene) -> str:
    """The gene's coding sequence (CDS parts joined in transcript order, 5' phase bases dropped)."""
    if not gene.cds:
        raise AnnotationError(f"{gene.locus_tag} has no CDS")
    parts = []
    for seg in gene.cds:
        s = extract(rep, seg.start, seg.end)
        parts.append(s if gene.strand > 0 else reverse_complement_str(s))
    return "".join(parts)[gene.cds[0].phase :]
