"""Mutation strings, residue numbering and amino-acid -> codon mapping on a wild-type CDS.

Syntax (one variant = one or more mutations joined by ``:``):
- amino acid: ``H24C`` = wild-type His at residue 24 becomes Cys; ``*`` is a stop; ``A1B:C2D`` is a
  multi-mutant. Residue numbers are the assay's; residue ``p`` is residue ``p + offset`` of the protein
  translated from the CDS (1-based, the initiator Met is residue 1).
- nucleotide: ``c.123A>G`` (HGVS coding-DNA style) = CDS position 123 (1-based, first base of the start
  codon = 1) is A and becomes G. The bare form ``A123G`` is read as nucleotides only when the caller
  says so (``kind="nt"``, ``--mutation-type nt``), because it is also a valid amino-acid mutation.
  The residue offset does not apply to nucleotide positions.

Codon choice (ours, where the dnaHNet paper is silent): an amino-acid change becomes the codon of the new residue with
the fewest nucleotide differences from the wild-type codon; ties go to the codon the organism uses most
(a `CodonUsage` counted from coding sequences: by default the CDS itself plus any CDS features of the
genomic context, or every CDS of a genome annotation); remaining ties go to the alphabetically first
codon, so the mapping is deterministic. A wild-type residue that the CDS does not encode is refused with
an error naming the mutant.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from Bio.Data import CodonTable

GENETIC_CODE = 11  # bacterial, archaeal and plant plastid code (same amino acids as the standard code)
AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY*"

_AA_RE = re.compile(r"^([ACDEFGHIKLMNPQRSTVWY*])(\d+)([ACDEFGHIKLMNPQRSTVWY*])$")
_NT_HGVS_RE = re.compile(r"^c\.(\d+)([ACGT])>([ACGT])$")
_NT_BARE_RE = re.compile(r"^([ACGT])(\d+)([ACGT])$")


class MutationError(ValueError):
    """A mutation that cannot be parsed or applied (the message names it)."""


class WildTypeMismatch(MutationError):
    """The mutation's wild-type residue/base is not what the CDS encodes at that position."""


def codon_table(table_id: int = GENETIC_CODE) -> dict[str, str]:
    """Codon -> amino acid (one letter, ``*`` for stops) for an NCBI translation table."""
    t = CodonTable.unambiguous_dna_by_id[table_id]
    table = dict(t.forward_table)
    table.update({c: "*" for c in t.stop_codons})
    return table


CODON_TO_AA = codon_table()
AA_TO_CODONS: dict[str, tuple[str, ...]] = {
    aa: tuple(sorted(c for c, a in CODON_TO_AA.items() if a == aa)) for aa in set(CODON_TO_AA.values())
}


def translate(cds: str, table: dict[str, str] = CODON_TO_AA) -> str:
    """In-frame translation of a CDS (length a multiple of 3; codons with N translate to ``X``)."""
    cds = cds.upper()
    if len(cds) % 3:
        raise MutationError(f"CDS length {len(cds)} is not a multiple of 3")
    return "".join(table.get(cds[i : i + 3], "X") for i in range(0, len(cds), 3))


def check_cds(cds: str, name: str = "CDS") -> str:
    """The CDS's protein without the final stop; raises on a length, stop or alphabet problem."""
    cds = cds.upper()
    bad = set(cds) - set("ACGT")
    if bad:
        raise MutationError(f"{name}: non-ACGT characters {sorted(bad)} in the coding sequence")
    protein = translate(cds)
    if "*" in protein[:-1]:
        raise MutationError(f"{name}: in-frame stop codon at residue {protein.index('*') + 1} (not a CDS?)")
    return protein[:-1] if protein.endswith("*") else protein


@dataclass(frozen=True)
class Mutation:
    kind: str  # "aa" (residue, assay numbering) or "nt" (1-based CDS position)
    wt: str  # wild-type residue / base
    pos: int  # residue number / CDS position
    mt: str  # new residue / base

    def __str__(self) -> str:
        return f"{self.wt}{self.pos}{self.mt}" if self.kind == "aa" else f"c.{self.pos}{self.wt}>{self.mt}"


def parse_mutant(text: str, kind: str = "auto") -> tuple[Mutation, ...]:
    """Parse ``H24C``, ``A1B:C2D``, ``c.123A>G`` (``kind`` = "auto" | "aa" | "nt")."""
    if kind not in ("auto", "aa", "nt"):
        raise ValueError(f"kind={kind!r}; choose auto, aa or nt")
    if not isinstance(text, str) or not text.strip():
        raise MutationError(f"empty mutant string {text!r}")
    out = []
    for part in text.strip().split(":"):
        part = part.strip()
        m_nt = _NT_HGVS_RE.match(part) if kind in ("auto", "nt") else None
        if m_nt:
            out.append(Mutation("nt", m_nt.group(2), int(m_nt.group(1)), m_nt.group(3)))
            continue
        if kind == "nt":
            m = _NT_BARE_RE.match(part)
            if not m:
                raise MutationError(f"cannot parse nucleotide mutation {part!r} in {text!r} (expected c.123A>G or A123G)")
            out.append(Mutation("nt", m.group(1), int(m.group(2)), m.group(3)))
            continue
        m = _AA_RE.match(part)
        if not m:
            raise MutationError(
                f"cannot parse mutation {part!r} in {text!r} (expected an amino-acid change like H24C, "
                "or a nucleotide change like c.123A>G)"
            )
        out.append(Mutation("aa", m.group(1), int(m.group(2)), m.group(3)))
    if len({(m.kind, m.pos) for m in out}) != len(out):
        raise MutationError(f"{text!r} changes the same position twice")
    return tuple(out)


class CodonUsage:
    """Codon counts of an organism (in-frame codons of its coding sequences); breaks codon-choice ties."""

    def __init__(self, counts: Counter | dict[str, int] | None = None, source: str = "none"):
        self.counts = Counter(counts or {})
        self.source = source

    @classmethod
    def from_sequences(cls, cds_list: Iterable[str], source: str = "sequences") -> CodonUsage:
        counts: Counter = Counter()
        for cds in cds_list:
            cds = cds.upper()
            for i in range(0, len(cds) - len(cds) % 3, 3):
                codon = cds[i : i + 3]
                if codon in CODON_TO_AA:
                    counts[codon] += 1
        return cls(counts, source)

    def __getitem__(self, codon: str) -> int:
        return self.counts.get(codon, 0)

    def __len__(self) -> int:
        return sum(self.counts.values())


def hamming(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def best_codon(wt_codon: str, aa: str, usage: CodonUsage | None = None) -> str:
    """The codon for `aa` with the fewest changes from `wt_codon`; ties by usage, then alphabetically."""
    if aa not in AA_TO_CODONS:
        raise MutationError(f"unknown amino acid {aa!r}")
    usage = usage or CodonUsage()
    return min(AA_TO_CODONS[aa], key=lambda c: (hamming(c, wt_codon.upper()), -usage[c], c))


def apply_mutations(
    cds: str,
    mutations: Sequence[Mutation],
    *,
    offset: int = 0,
    usage: CodonUsage | None = None,
    label: str | None = None,
) -> str:
    """The mutant CDS (same length). Amino-acid residue p is CDS codon p + offset (1-based)."""
    label = label or ":".join(str(m) for m in mutations)
    cds = cds.upper()
    n_codons = len(cds) // 3
    out = list(cds)
    for m in mutations:
        if m.kind == "nt":
            if not 1 <= m.pos <= len(cds):
                raise MutationError(f"mutant {label}: nucleotide position {m.pos} is outside the CDS (1..{len(cds)})")
            if cds[m.pos - 1] != m.wt:
                raise WildTypeMismatch(
                    f"mutant {label}: wild-type base {m.wt} at CDS position {m.pos}, but the CDS has {cds[m.pos - 1]}"
                )
            out[m.pos - 1] = m.mt
            continue
        residue = m.pos + offset
        if not 1 <= residue <= n_codons:
            raise MutationError(
                f"mutant {label}: residue {m.pos} (+ offset {offset} = {residue}) is outside the CDS's "
                f"{n_codons} codons"
            )
        codon = cds[3 * (residue - 1) : 3 * residue]
        encoded = CODON_TO_AA.get(codon, "X")
        if encoded != m.wt:
            raise WildTypeMismatch(
                f"mutant {label}: wild-type residue {m.wt}{m.pos} does not match the CDS, which encodes {encoded} "
                f"(codon {codon}) at residue {residue} (offset {offset})"
            )
        out[3 * (residue - 1) : 3 * residue] = best_codon(codon, m.mt, usage)
    return "".join(out)


def wild_type_mismatches(protein: str, variants: Iterable[Sequence[Mutation]], offset: int = 0,
                         limit: int | None = 5) -> list[str]:
    """The amino-acid mutations whose wild-type residue the CDS protein does not have at `offset`, one
    line each (``W2C: position 2 is A in the CDS``), in order of first appearance, at most `limit`."""
    out, seen = [], set()
    for v in variants:
        for m in v:
            if m.kind != "aa" or (m.pos, m.wt) in seen:
                continue
            seen.add((m.pos, m.wt))
            residue = m.pos + offset
            where = f"position {m.pos}" + (f" (CDS residue {residue})" if offset else "")
            if not 1 <= residue <= len(protein):
                out.append(f"{m}: {where} is outside the {len(protein)}-residue CDS protein")
            elif protein[residue - 1] != m.wt:
                out.append(f"{m}: {where} is {protein[residue - 1]} in the CDS")
            if limit is not None and len(out) >= limit:
                return out
    return out


def detect_offset(protein: str, variants: Iterable[Sequence[Mutation]]) -> tuple[int, int, int]:
    """The residue offset under which the most distinct (position, wild-type) pairs match `protein`.

    Returns (offset, n_matching, n_distinct). Only amino-acid mutations count. Raises when there is no
    amino-acid mutation, when no offset matches any wild-type residue (a `WildTypeMismatch` naming the
    mutants that disagree with the CDS under the assay's own numbering), or when the best offset is not
    unique.
    """
    variants = [tuple(v) for v in variants]
    pairs = {(m.pos, m.wt) for v in variants for m in v if m.kind == "aa"}
    if not pairs:
        raise MutationError("no amino-acid mutations to detect the residue offset from")
    lo = 1 - min(p for p, _ in pairs)
    hi = len(protein) - max(p for p, _ in pairs)
    if lo > hi:
        raise MutationError(
            f"the mutations span residues {min(p for p, _ in pairs)}..{max(p for p, _ in pairs)}, "
            f"wider than the {len(protein)}-residue protein: no offset fits"
        )
    scores = {k: sum(protein[p + k - 1] == wt for p, wt in pairs) for k in range(lo, hi + 1)}
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    best, n_best = ranked[0]
    if n_best == 0:
        every = wild_type_mismatches(protein, variants, 0, limit=None)
        shown, more = every[:5], len(every) - 5
        raise WildTypeMismatch(
            f"no residue offset makes any of the {len(pairs)} mutated positions' wild-type residues match the "
            f"{len(protein)}-residue CDS protein (is it the right CDS?); with the assay's numbering: "
            + "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
        )
    if len(ranked) > 1 and ranked[1][1] == n_best:
        raise MutationError(f"ambiguous residue offset: {best} and {ranked[1][0]} both match {n_best} positions")
    return best, n_best, len(pairs)


@dataclass(frozen=True)
class ProteinAlignment:
    offset: int  # reference residue r is CDS-protein residue r + offset
    identity: float  # fraction of the reference's residues that match
    differences: tuple[tuple[int, str, str], ...]  # (reference residue number, CDS residue, reference residue)


def align_reference_protein(protein: str, reference: str, first_residue: int) -> ProteinAlignment:
    """Best ungapped placement of the assay's wild-type protein (numbered from `first_residue`) on the CDS
    protein: the offset, the identity and the residues that differ."""
    if len(reference) > len(protein):
        raise MutationError(f"the reference protein ({len(reference)} aa) is longer than the CDS protein ({len(protein)} aa)")
    best = None
    for start in range(len(protein) - len(reference) + 1):
        matches = sum(a == b for a, b in zip(protein[start : start + len(reference)], reference, strict=True))
        if best is None or matches > best[1]:
            best = (start, matches)
    start, matches = best
    offset = (start + 1) - first_residue
    diffs = tuple(
        (first_residue + i, protein[start + i], r) for i, r in enumerate(reference) if protein[start + i] != r
    )
    return ProteinAlignment(offset, matches / len(reference), diffs)


def reconcile_cds(
    cds: str, alignment: ProteinAlignment, usage: CodonUsage | None = None
) -> tuple[str, list[str]]:
    """Edit the CDS so it encodes the assay's wild-type protein (minimal codon changes, as for mutants).

    Returns (new CDS, the applied changes in assay numbering, e.g. ["I82V"]).
    """
    muts = [Mutation("aa", cds_aa, res, ref_aa) for res, cds_aa, ref_aa in alignment.differences]
    new = apply_mutations(cds, muts, offset=alignment.offset, usage=usage, label="wild-type reconciliation")
    return new, [str(m) for m in muts]
