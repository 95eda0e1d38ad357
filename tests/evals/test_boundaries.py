"""Boundary interpretability: region classes and codon positions on a hand-made annotation, stage masks
mapped back to nucleotides, tallies against a naive loop, and the CLI on a tiny dnaHNet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dnahnet.evals import boundaries as B
from dnahnet.evals.genes import Gene, Segment
from dnahnet.registry import build_model
from tests.helpers.eval_data import data_dir

ECOLI = data_dir() / "genomes" / "ecoli_k12_mg1655"
needs_ecoli = pytest.mark.skipif(not ECOLI.is_dir(), reason=f"E. coli data absent from {ECOLI}")
# p promoter, S start codon, c coding, E stop codon, . intergenic, o other gene (RNA / pseudogene)
LETTER = {"p": B.PROMOTER, "S": B.START_CODON, "c": B.CODING, "E": B.STOP_CODON, ".": B.INTERGENIC, "o": B.OTHER_GENE}


def cds_gene(start, end, strand, segments=None, biotype="protein_coding"):
    segs = segments if segments is not None else ((Segment(start, end, 0),) if biotype == "protein_coding" else ())
    return Gene("chr", "g", "g", biotype, start, end, strand, segs)


def test_region_classes_and_codon_positions_by_hand():
    genes = [
        cds_gene(10, 25, +1),  # 5 codons: start 10-12, coding 13-21, stop 22-24; promoter 5-9
        cds_gene(35, 50, -1),  # start codon 47-49, coding 38-46, stop 35-37; promoter 50-54
        cds_gene(0, 4, +1, biotype="tRNA"),  # RNA gene; its promoter wraps to 55-59 on the circular replicon
    ]
    track = B.region_track(genes, 60, promoter_span=5, circular=True)
    #            0         1         2         3         4         5
    #            012345678901234567890123456789012345678901234567890123456789
    expected = ("oooo.pppppSSScccccccccEEE..........EEEcccccccccSSSpppppppppp")
    assert track.region.tolist() == [LETTER[ch] for ch in expected]
    codon = track.codon_pos.tolist()
    assert codon[10:25] == [1, 2, 3] * 5  # plus strand: counted left to right from the start codon
    assert codon[35:50] == [3, 2, 1] * 5  # minus strand: position 49 is the first base of the start codon
    assert codon[:10] == [0] * 10 and codon[25:35] == [0] * 10
    linear = B.region_track(genes, 60, promoter_span=5, circular=False)
    assert linear.region[55:].tolist() == [B.INTERGENIC] * 5  # linear: the tRNA's promoter does not wrap
    assert linear.region[50:55].tolist() == [B.PROMOTER] * 5  # the minus gene's promoter, to its right


def test_codon_positions_follow_phases_and_overlaps_are_excluded():
    # A frameshifted plus CDS: part 1 = 0..10 (3 codons + 1 nt), part 2 = 9..21 with phase 2
    # (its first 2 bases finish the codon begun by part 1's last base).
    g = cds_gene(0, 21, +1, segments=(Segment(0, 10, 0), Segment(9, 21, 2)))
    track = B.region_track([g], 30, promoter_span=0)
    assert track.codon_pos[:9].tolist() == [1, 2, 3] * 3
    assert track.codon_pos[9] == -1  # part 1 says codon position 1, part 2 says 2: ambiguous, left out
    assert track.codon_pos[10:21].tolist() == [3] + [1, 2, 3] * 3 + [1]
    # Overlapping genes on opposite strands in different frames.
    a, b = cds_gene(0, 12, +1), cds_gene(3, 15, -1)
    track = B.region_track([a, b], 20, promoter_span=0)
    # plus: 1 2 3 1 2 3 1 2 3 at 3..11; minus (5' end at 14): 3 2 1 3 2 1 3 2 1: only the 2s agree.
    assert track.codon_pos[3:12].tolist() == [-1, 2, -1] * 3
    same = B.region_track([cds_gene(0, 12, +1), cds_gene(3, 9, +1)], 20, promoter_span=0)
    assert same.codon_pos[:12].tolist() == [1, 2, 3] * 4  # same frame: kept


def test_boundary_masks_are_read_from_a_dnahnet_output_only():
    torch.manual_seed(0)
    out = build_model("dnahnet", "tiny").eval()(torch.randint(0, 4, (2, 32)))
    masks, valid = B.boundary_masks_from_output(out)
    assert len(masks) == len(valid) == 2 and all(m is o for m, o in zip(masks, out.boundary_masks, strict=True))
    with pytest.raises(ValueError, match="needs a dnaHNet model"):
        B.boundary_masks_from_output(build_model("transformer", "tiny")(torch.zeros(1, 4, dtype=torch.long)))


def test_tally_against_a_naive_loop():
    rng = np.random.default_rng(0)
    windows, tracks = [], []
    for _ in range(3):
        L = 300
        m0 = rng.random(L) < 0.4
        m1 = m0 & (rng.random(L) < 0.5)
        windows.append(np.stack([m0, m1]))
        tracks.append((rng.integers(0, len(B.REGIONS), L).astype(np.uint8), rng.integers(-1, 4, L).astype(np.int8)))
    table = B.boundary_fractions(windows, tracks)
    for stage in (0, 1):
        for c, name in enumerate(B.REGIONS):
            reached = selected = 0
            for m, (region, _) in zip(windows, tracks, strict=True):
                for t in range(1, m.shape[1]):  # position 0 is skipped
                    if region[t] == c and (stage == 0 or m[0, t]):
                        reached += 1
                        selected += bool(m[stage, t])
            row = table[(table.stage == stage) & (table.group == "region") & (table.category == name)].iloc[0]
            assert (row.n_positions, row.n_boundaries) == (reached, selected)
            assert row.fraction == pytest.approx(selected / reached)
        for k in (1, 2, 3):
            reached = selected = 0
            for m, (region, codon) in zip(windows, tracks, strict=True):
                for t in range(1, m.shape[1]):
                    if region[t] == B.CODING and codon[t] == k and (stage == 0 or m[0, t]):
                        reached += 1
                        selected += bool(m[stage, t])
            row = table[(table.stage == stage) & (table.group == "codon_position") & (table.category == str(k))].iloc[0]
            assert (row.n_positions, row.n_boundaries) == (reached, selected)


def test_window_starts():
    assert B.window_starts(1000, 4, 100) == [0, 250, 500, 750]
    assert B.window_starts(1000, 3, 600) == [0, 200, 400]  # overlapping, spread to the end
    assert B.window_starts(1000, 1, 1000) == [0]
    with pytest.raises(ValueError, match="longer than the replicon"):
        B.window_starts(100, 1, 101)


@needs_ecoli
def test_cli_on_a_tiny_dnahnet(tmp_path, capsys):
    out = tmp_path / "bd"
    table = B.main([
        "--family", "dnahnet", "--preset", "tiny", "--device", "cpu", "--genome",
        str(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz"), "--annotation",
        str(ECOLI / "GCF_000005845.2_ASM584v2_genomic.gff.gz"), "--windows", "2", "--window-len", "256",
        "--out", str(out),
    ])
    saved = pd.read_csv(out / "boundaries.csv")
    assert (out / "boundaries.png").stat().st_size > 10_000 and len(saved) == len(table)
    assert set(saved["stage"]) == {0, 1}
    assert "start_codon" in capsys.readouterr().out
    # The overall stage-0 fraction is the model's own boundary rate over the same windows (minus position 0).
    from dnahnet.evals.genes import read_genome

    seq = read_genome(ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz")["NC_000913.3"].seq
    starts = B.window_starts(len(seq), 2, 256)
    torch.manual_seed(0)
    model = build_model("dnahnet", "tiny").eval()
    from dnahnet.tokenizer import encode

    with torch.no_grad():
        out_ = model(torch.stack([encode(seq[s : s + 256]) for s in starts]))
    b0 = out_.boundary_masks[0][:, 1:]
    overall = saved[(saved.stage == 0) & (saved.group == "overall")].iloc[0]
    assert overall.n_boundaries == int(b0.sum()) and overall.n_positions == 2 * 255
    coding = saved[(saved.stage == 0) & (saved.group == "region") & (saved.category == "coding")].iloc[0]
    assert coding.n_positions > 300  # E. coli is ~88% coding
