"""The real corpus (../shared/data): counts against MANIFEST.md, parsing against independent paths,
splits by genome with K-12 held out, and windows from the real store."""

import gzip

import numpy as np
import torch

from dnahnet import tokenizer as tok
from dnahnet.data.ingest import input_file, read_genome
from dnahnet.data.module import DataConfig, GenomeDataModule

# From ../shared/data/MANIFEST.md: genome file stem -> (records, bp).
MANIFEST = {
    "GCF_000006945.1_ASM694v1_genomic": (2, 4_951_371),
    "GCF_000008865.2_Ecoli_O157H7_Sakai": (3, 5_594_605),
    "NC_013790.1_Methanobrevibacter_ruminantium_M1": (1, 2_937_203),
    "GCF_000009725.1_ASM972v1_genomic": (5, 3_947_019),
    "GCF_000019485.1_ASM1948v1_genomic": (7, 3_409_935),
    "GCF_000009285.1_ASM928v2_genomic": (3, 7_416_678),
    "GCF_000196015.1_ASM19601v1_genomic": (4, 6_913_352),
    "B_henselae": (1, 1_931_047),
    "B_quintana": (1, 1_587_646),
    "NC_004829_Mgallisepticum_Rlow": (1, 1_012_800),
    "ragout_Hpylori_G27": (1, 1_652_982),
    "ragout_Saureus_N315": (1, 2_814_816),
    "ragout_Vcholerae_N16961": (2, 4_033_464),
    "kleborate_Kpneumoniae_HS11286": (7, 5_682_322),
    "GCF_000005845.2_ASM584v2_genomic": (1, 4_641_652),  # E. coli K-12 MG1655
}
K12 = "GCF_000005845.2_ASM584v2_genomic"


def test_counts_match_the_manifest(real_store):
    rows = {s.genome: s for s in real_store.summary()}
    assert {g: (s.records, s.nucleotides) for g, s in rows.items()} == MANIFEST
    assert all(0.25 < s.gc_content < 0.70 for s in rows.values())
    assert rows["GCF_000009285.1_ASM928v2_genomic"].gc_content > 0.65  # C. necator: "high GC"


def test_tokens_match_independent_parses(real_store, real_data_dir):
    # a FASTA file read with a plain line loop, not Biopython
    with gzip.open(real_data_dir / "genomes" / "corpus" / "B_quintana.fna.gz", "rt") as f:
        seq = "".join(line.strip() for line in f if not line.startswith(">"))
    i = real_store.record_index("CP003784.1")
    assert np.array_equal(real_store.record_tokens(i), tok.encode(seq).numpy())
    # K-12 is ingested from its FASTA; its GenBank flat file must hold the same sequence
    gb = read_genome(
        input_file(real_data_dir / "genomes" / "ecoli_k12_mg1655" / "GCF_000005845.2_ASM584v2_genomic.gbff.gz")
    )
    assert len(gb) == 1 and gb[0][0] == "NC_000913.3"
    assert np.array_equal(real_store.record_tokens(real_store.record_index("NC_000913.3")), gb[0][2])
    # old-style gi| headers keep their full id
    assert any(r.record_id.startswith("gi|") and "NC_011333.1" in r.record_id for r in real_store.records)


def test_real_datamodule(real_data_dir, real_store):
    cfg = DataConfig(
        data_dir=str(real_data_dir), store_dir=str(real_store.path), seq_len=8192, batch_size=8, n_val_windows=16
    )
    dm = GenomeDataModule(cfg)
    dm.setup("fit")
    assert dm.store.key == real_store.key  # reused, not rebuilt
    assert dm.split_of[K12] == "holdout"
    train = set(dm.records("train").tolist())
    k12 = dm.store.record_index("NC_000913.3")
    assert k12 not in train and k12 not in set(dm.records("val").tolist())
    for b in range(20):
        starts, _, _ = dm.train_windows.windows(b)
        rec = np.searchsorted(dm.store.offsets, starts, side="right") - 1
        assert set(rec.tolist()) <= train
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (8, 8192) and int(batch["input_ids"].max()) <= tok.N_ID
    val = list(dm.val_dataloader())
    again = GenomeDataModule(cfg)
    again.setup("validate")
    assert all(torch.equal(x["labels"], y["labels"]) for x, y in zip(val, again.val_dataloader(), strict=True))
