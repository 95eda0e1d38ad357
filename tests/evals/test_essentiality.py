"""Gene essentiality: AUROC equals scikit-learn's; stratified sampling; the CLI end to end on E. coli K-12."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from dnahnet.evals import essentiality as ess
from dnahnet.evals import genes as G
from dnahnet.evals.scoring import score_sequences
from dnahnet.registry import build_model
from tests.helpers.eval_data import data_dir

DATA = data_dir()
ECOLI = DATA / "genomes" / "ecoli_k12_mg1655"
LABELS = DATA / "essentiality" / "ecoli_mg1655_keio_essential.tsv"
needs_ecoli = pytest.mark.skipif(not (ECOLI.is_dir() and LABELS.exists()), reason=f"E. coli data absent from {DATA}")
FNA = ECOLI / "GCF_000005845.2_ASM584v2_genomic.fna.gz"
GFF = ECOLI / "GCF_000005845.2_ASM584v2_genomic.gff.gz"


def _sklearn_auroc():
    """scikit-learn's AUROC, the independent reference (the dev extra; skipped with the reason without it)."""
    return pytest.importorskip("sklearn.metrics", reason='scikit-learn, of the dev extra: pip install -e ".[dev]"') \
        .roc_auc_score


def test_auroc_equals_sklearn_including_ties_and_large_scores():
    roc_auc_score = _sklearn_auroc()
    rng = np.random.default_rng(0)
    for n in (20, 300):
        y = rng.integers(0, 2, size=n)
        cases = [
            rng.normal(size=n) + y,  # continuous scores
            np.round(rng.normal(size=n) + y),  # heavy ties
            rng.integers(100, 9000, size=n) + 500 * y,  # gene lengths: a sigmoid would saturate these
            -rng.exponential(50, size=n) - 20 * y,  # large negative LL differences
        ]
        for s in cases:
            assert ess.auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-6)
            # Exact: the share of (essential, other) pairs ordered right, a tie counting half.
            pos, neg = s[y == 1], s[y == 0]
            pairs = sum(2 * int((p > neg).sum()) + int((p == neg).sum()) for p in pos)
            assert ess.auroc(s, y) == pairs / (2 * len(pos) * len(neg))
    assert np.isnan(ess.auroc([1.0, 2.0], [1, 1]))
    with pytest.raises(ValueError, match="0/1"):
        ess.auroc([1.0, 2.0], [0, 2])


def test_stratified_sample_keeps_the_essential_fraction_and_is_seeded():
    labels = np.array([1] * 30 + [0] * 270)
    idx = ess.stratified_sample(labels, 50, seed=3)
    assert len(idx) == 50 and labels[idx].sum() == 5 and len(set(idx)) == 50
    assert np.array_equal(idx, ess.stratified_sample(labels, 50, seed=3))
    assert not np.array_equal(idx, ess.stratified_sample(labels, 50, seed=4))
    assert labels[ess.stratified_sample(labels, 4, seed=0)].sum() == 1  # rounds to 0: still one of each class
    assert len(ess.stratified_sample(labels, 1000)) == 300


def test_read_labels_names_a_bad_row(tmp_path):
    p = tmp_path / "labels.tsv"
    p.write_text("locus_tag\tgene\tessential_x\nb1\ta\t1\nb2\tb\tyes\n")
    with pytest.raises(ValueError, match=r"labels.tsv:3: label 'yes'"):
        ess.read_labels(p)
    p.write_text("locus_tag\tgene\tessential_x\nb1\ta\t1\nb2\tb\t0\n")
    assert ess.read_labels(p)["essential"].tolist() == [1, 0]


@needs_ecoli
def test_cli_end_to_end_on_ecoli(tmp_path):
    roc_auc_score = _sklearn_auroc()
    out = tmp_path / "ess"
    summary = ess.main([
        "--family", "transformer", "--preset", "tiny", "--device", "cpu", "--genome", str(FNA), "--annotation",
        str(GFF), "--labels", str(LABELS), "--max-genes", "10", "--window", "256", "--batch-size", "10",
        "--out", str(out),
    ])
    table = pd.read_csv(out / "genes.csv")
    assert {"locus_tag", "essential", "length", "delta_ll"} <= set(table.columns) and len(table) == 10
    assert table["essential"].sum() == 1  # 296 of 4,286 eligible genes are essential: 10 * 0.069 -> 1
    saved = json.loads((out / "summary.json").read_text())
    assert saved["auroc"] == pytest.approx(roc_auc_score(table["essential"], -table["delta_ll"]), abs=1e-6)
    assert saved["length_baseline_auroc"] == pytest.approx(roc_auc_score(table["essential"], table["length"]), abs=1e-6)
    assert saved["n_genes"] == 10 and saved["n_essential"] == 1 and summary["auroc"] == saved["auroc"]
    org = saved["organisms"]["GCF_000005845.2_ASM584v2_genomic"]
    assert org["n_eligible"] == 4286 and org["excluded"]["biotype tRNA"] == 86 and org["excluded"]["CDS <= 27 nt"] == 2
    # One gene recomputed by hand: its window, the cassette, and the two scores.
    genome = G.read_genome(FNA)
    ann = G.read_annotation(GFF)
    G.apply_topology(genome, ann)
    row = table.iloc[int(np.argmax(table["strand"] == "-"))] if (table["strand"] == "-").any() else table.iloc[0]
    gene = ann.by_locus_tag()[row["locus_tag"]]
    w = G.gene_window(genome[gene.seqid], gene, 256)
    ko = w.seq[: w.start_codon + 12] + "TAATAATAATAGTGA" + w.seq[w.start_codon + 27 :]
    torch.manual_seed(0)
    ll = score_sequences(build_model("transformer", "tiny"), [w.seq, ko], device="cpu").sum_ll
    assert row["delta_ll"] == pytest.approx(ll[1] - ll[0], abs=1e-3)


@needs_ecoli
def test_prepare_organism_windows_carry_the_cassette_in_frame():
    org = ess.prepare_organism("ecoli", FNA, GFF, LABELS, window=512, max_genes=40, seed=1)
    assert len(org.genes) == 40 and set(org.genes["strand"]) == {1, -1}
    starts = []
    for wt, ko, length in zip(org.genes["wt"], org.genes["ko"], org.genes["length"], strict=True):
        i = max((512 - length) // 2, 0)  # the start codon sits after the upstream flank, on either strand
        assert len(wt) == len(ko) == 512 and ko == wt[: i + 12] + "TAATAATAATAGTGA" + wt[i + 27 :]
        starts.append(wt[i : i + 3])
    assert sum(s in ("ATG", "GTG", "TTG") for s in starts) >= 39
