"""Variant effect: Spearman equals scipy's; assay preparation on the real TEM-1 data; the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from dnahnet.evals import mutations as mut
from dnahnet.evals import variant_effect as ve
from dnahnet.evals.genes import read_genome
from dnahnet.evals.scoring import score_sequences
from dnahnet.registry import build_model
from dnahnet.tokenizer import reverse_complement_str
from tests.helpers.eval_data import data_dir

VE = data_dir() / "variant_effect"
needs_tem1 = pytest.mark.skipif(not (VE / "BLAT_ECOLX_Stiffler2015.csv").exists(), reason=f"TEM-1 data absent from {VE}")
CSV, CDS, WTP, PUC = (VE / f for f in ("BLAT_ECOLX_Stiffler2015.csv", "TEM1_bla_cds.fasta",
                                       "BLAT_ECOLX_wt_protein_24-286.fasta", "pUC19.gb"))


def test_spearman_equals_scipy():
    rng = np.random.default_rng(0)
    for n, ties in ((50, False), (200, True), (7, True)):
        a = rng.normal(size=n)
        b = 0.3 * a + rng.normal(size=n)
        if ties:
            a, b = np.round(a, 0), np.round(b * 2, 0) / 2  # many tied values in both
        # torchmetrics adds eps = 1e-6 to the denominator: agreement to ~1e-6 relative.
        assert ve.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-5)
    assert np.isnan(ve.spearman([1.0, 2.0], [2.0, 1.0]))


@needs_tem1
def test_mismatched_wild_type_is_refused_with_its_name():
    spec = ve.AssaySpec(dms=CSV, cds=CDS, fitness_column="2500")
    with pytest.raises(ValueError, match=r"BLAT_ECOLX_Stiffler2015.csv:\d+: mutant V82A: wild-type residue V82"):
        ve.prepare_assay(spec)
    skipped = ve.prepare_assay(ve.AssaySpec(dms=CSV, cds=CDS, fitness_column="2500", skip_mismatched=True))
    assert len(skipped.info["skipped_mismatched"]) == 38 and len(skipped.variants) == 4996 - 38
    with pytest.raises(ValueError, match="contradicts --wt-protein"):
        ve.prepare_assay(ve.AssaySpec(dms=CSV, cds=CDS, fitness_column="2500", wt_protein=WTP, offset=3))


@needs_tem1
def test_tem1_assay_windows_with_puc19_flanks():
    flank = 40
    a = ve.prepare_assay(ve.AssaySpec(dms=CSV, cds=CDS, fitness_column="2500", wt_protein=WTP, context=PUC, flank=flank))
    assert a.info["offset"] == 0 and a.info["wt_reconciled"] == ["I82V", "V182A"] and len(a.variants) == 4996
    assert a.info["context"]["strand"] == "-" and a.info["context"]["cds_start_1based"] == 1626
    puc = next(iter(read_genome(PUC).values())).seq
    # bla = complement(1626..2486): upstream of the CDS (its 5' side) is pUC19 2487..2526 reverse-complemented.
    assert a.wt_window[:flank] == reverse_complement_str(puc[2486 : 2486 + flank])
    assert a.wt_window[-flank:] == reverse_complement_str(puc[1625 - flank : 1625])
    cds_wt = a.wt_window[flank:-flank]
    assert mut.translate(cds_wt)[23:286] == ve.read_single_fasta(WTP)[2]  # a protein, not a genome
    row = a.variants.set_index("mutant").loc["H24C"]
    diff = [i for i, (x, y) in enumerate(zip(a.wt_window, row["window"], strict=True)) if x != y]
    assert len(row["window"]) == len(a.wt_window) == 861 + 2 * flank
    assert diff == [flank + 69, flank + 70] and row["window"][flank + 69 : flank + 72] == "TGC"  # CAC -> TGC
    assert (a.variants["nt_changes"] >= 1).all() and (a.variants["nt_changes"] <= 3).all()


@needs_tem1
def test_cli_end_to_end_on_tem1(tmp_path):
    out = tmp_path / "ve"
    args = [
        "--family", "transformer", "--preset", "tiny", "--device", "cpu", "--batch-size", "8",
        "--dms", str(CSV), "--cds", str(CDS), "--name", "tem1_2500",
        "--dms", str(CSV), "--cds", str(CDS), "--name", "tem1_39",
        "--fitness-column", "2500", "--fitness-column", "39",
        "--wt-protein", str(WTP), "--context", str(PUC), "--flank", "16", "--max-variants", "8", "--out", str(out),
    ]
    summary = ve.main(args)
    table = pd.read_csv(out / "variants.csv")
    assert list(table.columns[:4]) == ["assay", "mutant", "fitness", "delta_ll"] and len(table) == 16
    saved = json.loads((out / "summary.json").read_text())
    assert saved["n"] == 16 and saved["n_assays"] == 2 and not list(out.glob("*.partial.jsonl"))
    for name, sub in table.groupby("assay"):
        assert saved["assays"][name]["spearman"] == pytest.approx(spearmanr(sub["delta_ll"], sub["fitness"]).statistic, abs=1e-5)
    assert saved["spearman"] == pytest.approx(np.mean(list(saved["spearman_per_assay"].values())))
    assert summary["spearman"] == pytest.approx(saved["spearman"])
    # delta_ll is LL(mutant window) - LL(wild-type window), recomputed here directly.
    torch.manual_seed(0)
    model = build_model("transformer", "tiny")
    a = ve.prepare_assay(ve.AssaySpec(dms=CSV, cds=CDS, fitness_column="2500", wt_protein=WTP, context=PUC, flank=16))
    first = table.iloc[0]
    mutant_window = a.variants.set_index("mutant").loc[first["mutant"], "window"]
    ll = score_sequences(model, [a.wt_window, mutant_window], device="cpu").sum_ll
    assert first["delta_ll"] == pytest.approx(ll[1] - ll[0], abs=1e-3)


@needs_tem1
def test_cli_rejects_bad_arguments(tmp_path):
    with pytest.raises(SystemExit, match="no column 'nope'"):
        ve.main(["--family", "transformer", "--dms", str(CSV), "--cds", str(CDS), "--fitness-column", "nope",
                 "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="in pairs"):
        ve.main(["--family", "transformer", "--dms", str(CSV), "--dms", str(CSV), "--cds", str(CDS),
                 "--fitness-column", "2500", "--out", str(tmp_path)])
    assert not (tmp_path / "variants.csv").exists()
