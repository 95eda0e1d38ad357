"""Mutation parsing and amino-acid -> codon mapping on hand-checked examples and the real TEM-1 data."""

from __future__ import annotations

import pandas as pd
import pytest

from dnahnet.evals import mutations as mut
from dnahnet.evals.mutations import CodonUsage, Mutation, WildTypeMismatch
from tests.helpers.eval_data import data_dir

VE = data_dir() / "variant_effect"
needs_tem1 = pytest.mark.skipif(not (VE / "TEM1_bla_cds.fasta").exists(), reason=f"TEM-1 data absent from {VE}")

#            M   A   H   W   *
TOY_CDS = "ATG" "GCT" "CAT" "TGG" "TAA"


def test_parse_amino_acid_nucleotide_and_multi():
    assert mut.parse_mutant("H24C") == (Mutation("aa", "H", 24, "C"),)
    assert mut.parse_mutant("H24C:P25Q") == (Mutation("aa", "H", 24, "C"), Mutation("aa", "P", 25, "Q"))
    assert mut.parse_mutant("W3*") == (Mutation("aa", "W", 3, "*"),)
    assert mut.parse_mutant("c.123A>G") == (Mutation("nt", "A", 123, "G"),)
    assert mut.parse_mutant("A123G", kind="nt") == (Mutation("nt", "A", 123, "G"),)
    assert mut.parse_mutant("A123G") == (Mutation("aa", "A", 123, "G"),)  # auto: amino acids
    assert str(mut.parse_mutant("c.5C>T")[0]) == "c.5C>T"
    with pytest.raises(mut.MutationError, match="'H24'"):
        mut.parse_mutant("H24")
    with pytest.raises(mut.MutationError, match="same position twice"):
        mut.parse_mutant("H24C:H24D")
    with pytest.raises(mut.MutationError, match="nucleotide"):
        mut.parse_mutant("H24C", kind="nt")


def test_best_codon_fewest_changes_then_usage_then_alphabet():
    # His CAT -> Cys: TGT differs at 2 bases, TGC at 3.
    assert mut.best_codon("CAT", "C") == "TGT"
    # Asp GAT -> Glu: GAA and GAG both differ at 1 base: usage decides, else alphabetical.
    assert mut.best_codon("GAT", "E") == "GAA"
    assert mut.best_codon("GAT", "E", CodonUsage({"GAG": 10, "GAA": 3})) == "GAG"
    assert mut.best_codon("GAT", "E", CodonUsage({"GAG": 1, "GAA": 3})) == "GAA"
    # Leu TTA -> Ser: only TCA is one change away (TCT/TCC/TCG two, AGT/AGC three).
    assert mut.best_codon("TTA", "S", CodonUsage({"AGC": 1000})) == "TCA"
    # Trp TGG -> stop: TGA and TAG one change away.
    assert mut.best_codon("TGG", "*", CodonUsage({"TAG": 5, "TGA": 1})) == "TAG"
    # Synonymous: the wild-type codon itself (no change).
    assert mut.best_codon("CTG", "L") == "CTG"


def test_codon_usage_counts_in_frame_codons():
    usage = CodonUsage.from_sequences(["ATGGCTGCT", "ATGAA"])
    assert usage["ATG"] == 2 and usage["GCT"] == 2 and usage["AAN"] == 0 and len(usage) == 4


def test_apply_multi_mutant_and_offset():
    # A2G: GCT -> GGT (1 change); H3C: CAT -> TGT (2 changes).
    assert mut.apply_mutations(TOY_CDS, mut.parse_mutant("A2G:H3C")) == "ATG" "GGT" "TGT" "TGG" "TAA"
    # The same change numbered from 0 (assay residue 1 = CDS residue 2): offset +1.
    assert mut.apply_mutations(TOY_CDS, mut.parse_mutant("A1G"), offset=1) == "ATG" "GGT" "CAT" "TGG" "TAA"
    # Nucleotide mutation: 1-based CDS position, offset does not apply.
    assert mut.apply_mutations(TOY_CDS, mut.parse_mutant("c.4G>A"), offset=5) == "ATG" "ACT" "CAT" "TGG" "TAA"
    # Nonsense mutation.
    assert mut.apply_mutations(TOY_CDS, mut.parse_mutant("W4*")) == "ATG" "GCT" "CAT" "TAG" "TAA"
    assert mut.translate(mut.apply_mutations(TOY_CDS, mut.parse_mutant("M1L:W4F"))) == "LAHF*"


def test_wrong_wild_type_is_refused_by_name():
    with pytest.raises(WildTypeMismatch, match=r"H2C.*encodes A \(codon GCT\) at residue 2"):
        mut.apply_mutations(TOY_CDS, mut.parse_mutant("H2C"))
    with pytest.raises(WildTypeMismatch, match="mutant A2G:H4C"):
        mut.apply_mutations(TOY_CDS, mut.parse_mutant("A2G:H4C"))
    with pytest.raises(WildTypeMismatch, match="c.1T>C"):
        mut.apply_mutations(TOY_CDS, mut.parse_mutant("c.1T>C"))
    with pytest.raises(mut.MutationError, match="outside"):
        mut.apply_mutations(TOY_CDS, mut.parse_mutant("A9G"))


def test_detect_offset_and_reference_alignment_on_a_toy_protein():
    variants = [mut.parse_mutant(m) for m in ("H2C", "W3A", "A1V")]  # numbered from 0
    assert mut.detect_offset("MAHW", variants) == (1, 3, 3)
    aln = mut.align_reference_protein("MAHWK", "AHFK", first_residue=10)  # residue 10 = CDS residue 2
    assert aln.offset == -8 and aln.differences == ((12, "W", "F"),) and aln.identity == 0.75


def test_check_cds_rejects_broken_sequences():
    assert mut.check_cds(TOY_CDS) == "MAHW"
    with pytest.raises(mut.MutationError, match="in-frame stop"):
        mut.check_cds("ATGTAAGCTTAA")
    with pytest.raises(mut.MutationError, match="multiple of 3"):
        mut.check_cds("ATGGC")


@needs_tem1
def test_tem1_numbering_against_the_reference_protein():
    from Bio import SeqIO

    cds = str(next(SeqIO.parse(VE / "TEM1_bla_cds.fasta", "fasta")).seq)
    ref = str(next(SeqIO.parse(VE / "BLAT_ECOLX_wt_protein_24-286.fasta", "fasta")).seq)
    protein = mut.check_cds(cds)
    assert len(protein) == 286 and protein[23] == "H"  # residue 24 of the CDS protein is H (H24)
    aln = mut.align_reference_protein(protein, ref, first_residue=24)
    # pUC19's bla (TEM-116-like) differs from the assay's TEM-1 at residues 82 and 182.
    assert aln.offset == 0 and aln.differences == ((82, "I", "V"), (182, "V", "A"))
    csv = pd.read_csv(VE / "BLAT_ECOLX_Stiffler2015.csv", encoding="utf-8-sig")
    variants = [mut.parse_mutant(m) for m in csv["mutant"]]
    assert mut.detect_offset(protein, variants) == (0, 261, 263)
    fixed, changes = mut.reconcile_cds(cds, aln)
    assert changes == ["I82V", "V182A"]
    assert mut.translate(fixed)[23:286] == ref
    assert mut.hamming(fixed, cds) == 2  # ATT -> GTT and GTA -> GCA: one base each
    # Every assay mutant now applies; H24C turns codon CAC into TGC (2 changes; TGT would be 3).
    assert mut.apply_mutations(fixed, mut.parse_mutant("H24C"))[69:72] == "TGC"
    with pytest.raises(WildTypeMismatch, match="V82A"):
        mut.apply_mutations(cds, mut.parse_mutant("V82A"))


def test_no_matching_offset_names_the_mutants_that_disagree_with_the_cds():
    """Wild-type residues that match under no offset: the error says which mutants disagree with the CDS
    and what the CDS has there (it used to be "ambiguous residue offset: -1 and 0 both match 0 positions")."""
    variants = [mut.parse_mutant(m) for m in ("W2C", "M3A", "W2C:M3A")]  # MAHW has W at 4, M at 1
    with pytest.raises(WildTypeMismatch) as err:
        mut.detect_offset("MAHW", variants)
    msg = str(err.value)
    assert "W2C: position 2 is A in the CDS" in msg and "M3A: position 3 is H in the CDS" in msg
    assert "ambiguous" not in msg
    assert mut.wild_type_mismatches("MAHW", variants, offset=1) == [
        "W2C: position 2 (CDS residue 3) is H in the CDS", "M3A: position 3 (CDS residue 4) is W in the CDS"]
    assert mut.wild_type_mismatches("MAHW", [mut.parse_mutant("H9A")]) == [
        "H9A: position 9 is outside the 4-residue CDS protein"]
    assert mut.wild_type_mismatches("MAHW", [mut.parse_mutant("A2G:H3C")]) == []


def test_a_dms_file_matching_no_offset_fails_naming_the_mutants(tmp_path):
    from dnahnet.evals import variant_effect as ve

    (tmp_path / "cds.fasta").write_text(">toy\n" + TOY_CDS + "\n")
    (tmp_path / "dms.csv").write_text("mutant,score\nW2C,0.5\nM3A,0.1\n")
    spec = ve.AssaySpec(dms=tmp_path / "dms.csv", cds=tmp_path / "cds.fasta", fitness_column="score")
    with pytest.raises(ValueError, match=r"dms\.csv: .*W2C: position 2 is A in the CDS.*M3A: position 3 is H"):
        ve.prepare_assay(spec)
    # With the numbering given, the per-mutant check names the first offender with its CSV line.
    with pytest.raises(ValueError, match=r"dms\.csv:2: mutant W2C: wild-type residue W2 does not match"):
        ve.prepare_assay(ve.AssaySpec(**{**spec.__dict__, "offset": 0}))
