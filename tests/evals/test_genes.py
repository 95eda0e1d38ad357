"""Gene windows, the stop cassette and annotation readers: hand-checked coordinates and the real genomes."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from dnahnet.evals import genes as G
from dnahnet.evals.genes import Gene, Replicon, Segment
from dnahnet.tokenizer import reverse_complement_str
from tests.helpers.eval_data import data_dir

DATA = data_dir()
ECOLI = DATA / "genomes" / "ecoli_k12_mg1655"
VE = DATA / "variant_effect"
needs_ecoli = pytest.mark.skipif(not ECOLI.is_dir(), reason=f"E. coli K-12 data absent from {ECOLI}")
needs_puc19 = pytest.mark.skipif(not (VE / "pUC19.gb").exists(), reason=f"pUC19 data absent from {VE}")

SEQ = "".join(np.random.default_rng(0).choice(list("ACGT"), size=100))


def gene(start, end, strand, tag="g", cds=None, biotype="protein_coding"):
    return Gene("chr", tag, tag, biotype, start, end, strand, (Segment(start, end, 0),) if cds is None else cds)


def test_plus_strand_window_is_centred_with_start_codon_inside():
    rep = Replicon("chr", SEQ, circular=True)
    w = G.gene_window(rep, gene(40, 55, +1), window=25)  # 15-nt gene: 5 nt upstream, 5 downstream
    assert w.seq == SEQ[35:60] and w.start_codon == 5 and w.seq[5:8] == SEQ[40:43]


def test_minus_strand_window_is_reverse_complemented():
    rep = Replicon("chr", SEQ, circular=True)
    w = G.gene_window(rep, gene(40, 55, -1), window=25)  # upstream of a minus gene lies to its right
    assert w.seq == reverse_complement_str(SEQ[35:60]) and w.start_codon == 5
    assert w.seq[5:8] == reverse_complement_str(SEQ[52:55])  # the start codon's first base is forward position 54
    w = G.gene_window(rep, gene(40, 56, -1), window=25)  # odd flank: upstream 4 (56..60), downstream 5 (35..40)
    assert w.seq == reverse_complement_str(SEQ[35:60]) and w.start_codon == 4


def test_window_wraps_around_the_origin_of_a_circular_replicon():
    rep = Replicon("chr", SEQ, circular=True)
    w = G.gene_window(rep, gene(2, 17, +1), window=25)  # left edge -3: the last 3 nt, then 0..22
    assert w.seq == SEQ[97:] + SEQ[:22] and w.start_codon == 5 and w.genome_start == 97
    w = G.gene_window(rep, gene(90, 98, -1), window=20)  # upstream 6 to the right: 84..104 wraps
    assert w.seq == reverse_complement_str(SEQ[84:] + SEQ[:4]) and w.start_codon == 6
    # A CDS that itself crosses the origin (GFF3 style: end > length).
    w = G.gene_window(rep, gene(95, 110, +1), window=25)
    assert w.seq == SEQ[90:] + SEQ[:15] and w.seq[5:8] == SEQ[95:98]


def test_linear_replicon_window_shifts_inside_and_long_genes_start_at_their_5_end():
    rep = Replicon("chr", SEQ, circular=False)
    w = G.gene_window(rep, gene(2, 17, +1), window=25)
    assert w.seq == SEQ[0:25] and w.start_codon == 2
    w = G.gene_window(rep, gene(90, 98, -1), window=20)
    assert w.seq == reverse_complement_str(SEQ[80:100]) and w.start_codon == 2  # start codon at forward 97
    w = G.gene_window(rep, gene(10, 60, +1), window=30)  # gene longer than the window
    assert w.seq == SEQ[10:40] and w.start_codon == 0
    with pytest.raises(G.WindowError, match="longer than replicon"):
        G.gene_window(rep, gene(10, 60, +1), window=200)


def test_cassette_placement_preserves_length():
    seq = "".join(np.random.default_rng(1).choice(list("ACGT"), size=60))
    ko = G.knockout(seq, start_codon=5)
    # 12 nt after the first base of the start codon (index 5) -> indices 17..31.
    assert len(ko) == 60 and ko[17:32] == "TAATAATAATAGTGA" and ko[:17] == seq[:17] and ko[32:] == seq[32:]
    with pytest.raises(G.WindowError, match="does not fit"):
        G.knockout(seq, start_codon=40)
    # In the start codon's frame (12 nt = 4 codons on) the cassette is five stop codons.
    assert [ko[i : i + 3] for i in range(5 + 12, 32, 3)] == ["TAA", "TAA", "TAA", "TAG", "TGA"]


def test_cassette_eligibility():
    assert G.cassette_eligible(gene(0, 30, +1)) == (True, "")
    assert not G.cassette_eligible(gene(0, 27, +1))[0]  # the cassette would end exactly at the CDS end
    assert not G.cassette_eligible(gene(0, 90, +1, biotype="tRNA", cds=()))[0]


GFF = """##gff-version 3
##sequence-region chr 1 100
chr\tRefSeq\tregion\t1\t100\t.\t+\t.\tID=chr:1..100;Is_circular=true
chr\tRefSeq\tgene\t3\t32\t.\t+\t.\tID=gene-a;Name=aaa;gene_biotype=protein_coding;locus_tag=b1
chr\tRefSeq\tCDS\t3\t32\t.\t+\t0\tID=cds-a;Parent=gene-a;locus_tag=b1
chr\tRefSeq\tgene\t40\t80\t.\t-\t.\tID=gene-b;Name=bbb;gene_biotype=protein_coding;locus_tag=b2
chr\tRefSeq\tCDS\t61\t80\t.\t-\t0\tID=cds-b;Parent=gene-b;locus_tag=b2
chr\tRefSeq\tCDS\t40\t61\t.\t-\t2\tID=cds-b;Parent=gene-b;locus_tag=b2
chr\tRefSeq\tgene\t85\t95\t.\t+\t.\tID=gene-c;Name=ccc%2C1;gene_biotype=tRNA;locus_tag=b3
chr\tRefSeq\ttRNA\t85\t95\t.\t+\t.\tID=rna-c;Parent=gene-c;locus_tag=b3
"""


def test_read_gff3_with_a_frameshifted_minus_strand_cds(tmp_path):
    path = tmp_path / "a.gff.gz"
    with gzip.open(path, "wt") as fh:
        fh.write(GFF)
    ann = G.read_annotation(path)
    assert ann.circular == {"chr": True} and ann.lengths == {"chr": 100}
    a, b, c = ann.genes
    assert (a.locus_tag, a.start, a.end, a.strand, a.start_codon) == ("b1", 2, 32, 1, 2)
    assert b.cds == (Segment(60, 80, 0), Segment(39, 61, 2))  # transcript order, phases kept
    assert b.start_codon == 79 and b.cds_length == 42
    assert c.biotype == "tRNA" and c.name == "ccc,1" and not c.is_protein_coding
    bad = tmp_path / "bad.gff"
    bad.write_text(GFF.replace("\t+\t0\tID=cds-a", "\t+\tX\tID=cds-a"))
    with pytest.raises(G.AnnotationError, match=r"bad.gff:5: CDS phase"):
        G.read_gff3(bad)


def test_read_genome_is_the_training_reader(tmp_path):
    # One reader for training and evaluation (`dnahnet.data.ingest.read_records`): compression from the
    # content, not the name; letters kept (upper-cased, IUPAC codes too); GenBank topology; bad input is
    # an error naming the file and record, where the evaluation's own reader used to take anything.
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    from dnahnet.data.store import DataError

    text = ">chr1 first\n" + SEQ[:50].lower() + "\nRYN" + SEQ[50:] + "\n>p2\nACGTAC\n"
    gz_without_suffix = tmp_path / "g.fna"
    gz_without_suffix.write_bytes(gzip.compress(text.encode()))
    genome = G.read_genome(gz_without_suffix)
    assert list(genome) == ["chr1", "p2"]
    assert genome["chr1"].seq == SEQ[:50] + "RYN" + SEQ[50:] and not genome["chr1"].circular
    assert genome["p2"].seq == "ACGTAC"

    record = SeqRecord(Seq("ACGT" * 10), id="pX.1", name="pX", annotations={"molecule_type": "DNA", "topology": "circular"})
    SeqIO.write([record], tmp_path / "p.gb", "genbank")
    assert G.read_genome(tmp_path / "p.gb")["pX.1"].circular

    (tmp_path / "bad.fna").write_text(">chr1\nACGU\n")
    with pytest.raises(DataError, match=r"bad.fna: record 'chr1': invalid character 'U' at position 4"):
        G.read_genome(tmp_path / "bad.fna")
    with pytest.raises(FileNotFoundError, match="missing.fna"):
        G.read_genome(tmp_path / "missing.fna")


def test_locate_finds_either_strand_and_across_the_origin():
    rep = Replicon("chr", SEQ, circular=True)
    assert G.locate(rep, SEQ[30:50]) == (30, 1)
    assert G.locate(rep, reverse_complement_str(SEQ[30:50])) == (30, -1)
    assert G.locate(rep, SEQ[90:] + SEQ[:10]) == (90, 1)
    with pytest.raises(G.WindowError, match="not found"):
        G.locate(Replicon("x", SEQ, circular=False), SEQ[90:] + SEQ[:10])


@needs_puc19
def test_genbank_cds_of_bla_in_puc19_equals_the_cds_file():
    from Bio import SeqIO

    genome = G.read_genome(VE / "pUC19.gb")
    ann = G.read_annotation(VE / "pUC19.gb")
    rep = next(iter(genome.values()))
    assert rep.circular and len(rep) == 2686
    bla = next(g for g in ann.genes if g.name == "bla")
    assert (bla.start, bla.end, bla.strand, bla.start_codon) == (1625, 2486, -1, 2485)  # complement(1626..2486)
    cds = str(next(SeqIO.parse(VE / "TEM1_bla_cds.fasta", "fasta")).seq)
    assert G.cds_sequence(rep, bla) == cds
    assert G.locate(rep, cds) == (1625, -1)


@needs_ecoli
def test_ecoli_windows_hold_each_genes_start_codon():
    genome = G.read_genome(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz")
    ann = G.read_annotation(ECOLI / "GCF_000005845.2_ASM584v2_genomic.gff.gz")
    G.apply_topology(genome, ann)
    rep = genome["NC_000913.3"]
    assert rep.circular and len(rep) == 4_641_652
    tags = ann.by_locus_tag()
    # thrL (b0001, 190..255 +): an 8,192-nt window centred on it wraps around the origin.
    thrl = tags["b0001"]
    w = G.gene_window(rep, thrl, 8192)
    upstream = (8192 - 66) // 2  # 4063 nt before the gene: 189 - 4063 = -3874
    assert w.start_codon == upstream and w.seq == rep.seq[-3874:] + rep.seq[:4318] and w.seq[upstream:][:3] == "ATG"
    coding = [g for g in ann.genes if g.is_protein_coding]
    assert len(coding) > 4000 and {g.strand for g in coding} == {1, -1}
    for g in coding:  # the window's start codon is the CDS's first codon, on both strands
        w = G.gene_window(rep, g, 200)
        assert w.seq[w.start_codon : w.start_codon + 3] == G.cds_sequence(rep, g)[:3], g.locus_tag
    starts = [G.cds_sequence(rep, g)[:3] for g in coding]
    assert sum(s in ("ATG", "GTG", "TTG") for s in starts) / len(starts) > 0.99


@needs_ecoli
def test_ecoli_gff3_and_genbank_agree_on_cds_coordinates():
    gff = {g.locus_tag: g for g in G.read_annotation(ECOLI / "GCF_000005845.2_ASM584v2_genomic.gff.gz").genes
           if g.is_protein_coding}
    gbk = {g.locus_tag: g for g in G.read_annotation(ECOLI / "GCF_000005845.2_ASM584v2_genomic.gbff.gz").genes
           if g.is_protein_coding}
    common = gff.keys() & gbk.keys()
    assert len(common) > 4000
    same = sum(
        (gff[t].strand, gff[t].start_codon, sorted((s.start, s.end) for s in gff[t].cds))
        == (gbk[t].strand, gbk[t].start_codon, sorted((s.start, s.end) for s in gbk[t].cds))
        for t in common
    )
    assert same == len(common)
    # Genes with several CDS isoforms keep the longest: clpB (ClpB, not ClpB-95), dnaX (tau, not the
    # frameshifted gamma), infB.
    assert gff["b2592"].cds == (Segment(2731599, 2734173, 0),)
    assert gff["b0470"].cds == (Segment(492091, 494023, 0),) and gff["b3168"].cds_length == 3316014 - 3313341
