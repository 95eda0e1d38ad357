"""Token store: contents against an independent encoding, reuse, rebuild on change, location."""

import json
import os
import pickle

import numpy as np
import pytest

from dnahnet import tokenizer as tok
from dnahnet.data import ingest
from dnahnet.data.ingest import prepare_store
from dnahnet.data.store import FORMAT_VERSION, DataError, TokenStore


@pytest.fixture
def two_genomes(tmp_path, write_fasta):
    rng = np.random.default_rng(5)
    seqs = {f"r{i}": "".join(rng.choice(list("ACGTacgtN"), size=300 + 50 * i)) for i in range(3)}
    write_fasta(tmp_path / "in" / "one.fna.gz", {"r0 desc zero": seqs["r0"], "r1": seqs["r1"]}, "gz")
    write_fasta(tmp_path / "in" / "two.fa", {"r2 desc two": seqs["r2"]})
    return tmp_path / "in", seqs


def test_contents_offsets_and_counts(tmp_path, two_genomes):
    folder, seqs = two_genomes
    store = prepare_store([folder], store_dir=tmp_path / "s", progress=False)
    assert [r.record_id for r in store.records] == ["r0", "r1", "r2"]
    assert [r.genome for r in store.records] == ["one", "one", "two"]
    flat = np.fromfile(tmp_path / "s" / "tokens.bin", dtype=np.uint8)
    assert flat.size == sum(map(len, seqs.values())) == store.n_tokens
    for i, r in enumerate(store.records):
        ref = tok.encode(seqs[r.record_id]).numpy()  # independent path: the torch tokenizer
        assert np.array_equal(flat[r.offset : r.offset + r.length], ref)
        assert np.array_equal(store.record_tokens(i), ref)
        upper = seqs[r.record_id].upper()
        assert r.gc_count == upper.count("G") + upper.count("C")
        assert r.n_count == upper.count("N")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["n_records"] == 3 and manifest["n_genomes"] == 2 and manifest["n_tokens"] == store.n_tokens
    assert sorted(os.path.basename(i["path"]) for i in manifest["inputs"]) == ["one.fna.gz", "two.fa"]
    rows = store.summary()
    assert [(s.genome, s.records, s.nucleotides) for s in rows] == [
        ("one", 2, len(seqs["r0"]) + len(seqs["r1"])),
        ("two", 1, len(seqs["r2"])),
    ]


def test_store_is_reused_and_rebuilt_when_an_input_changes(tmp_path, two_genomes, monkeypatch, write_fasta):
    folder, _ = two_genomes
    monkeypatch.setenv("DNAHNET_CACHE", str(tmp_path / "cache"))
    first = prepare_store([folder], progress=False)
    assert first.path == tmp_path / "cache" / "stores" / first.key  # default location: $DNAHNET_CACHE/stores/<key>
    mtime = (first.path / "tokens.bin").stat().st_mtime_ns

    def no_build(*a, **k):
        raise AssertionError("the store was rebuilt although no input changed")

    monkeypatch.setattr(ingest, "build_store", no_build)
    again = prepare_store([folder], progress=False)
    assert again.path == first.path and (again.path / "tokens.bin").stat().st_mtime_ns == mtime
    monkeypatch.undo()
    monkeypatch.setenv("DNAHNET_CACHE", str(tmp_path / "cache"))

    write_fasta(folder / "two.fa", {"r2 changed": "ACGTACGT"})
    os.utime(folder / "two.fa", ns=(mtime + 10**9, mtime + 10**9))  # mtime changes even on coarse clocks
    changed = prepare_store([folder], progress=False)
    assert changed.key != first.key
    assert tok.decode(changed.record_tokens(2).astype(np.int64)) == "ACGTACGT"

    # an explicit store directory is rebuilt in place when its inputs change
    explicit = prepare_store([folder / "one.fna.gz"], store_dir=tmp_path / "mine", progress=False)
    assert len(explicit) == 2
    replaced = prepare_store([folder], store_dir=tmp_path / "mine", progress=False)
    assert len(replaced) == 3 and replaced.key == changed.key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "in", "mine"]


def test_refuses_to_overwrite_a_directory_that_is_not_a_store(tmp_path, two_genomes):
    folder, _ = two_genomes
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("do not delete")
    with pytest.raises(DataError, match="not a token store"):
        prepare_store([folder], store_dir=tmp_path / "precious", progress=False)
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "do not delete"


def test_open_errors_and_pickling(tmp_path, two_genomes):
    folder, _ = two_genomes
    with pytest.raises(DataError, match="not a token store"):
        TokenStore(tmp_path)
    store = prepare_store([folder], store_dir=tmp_path / "s", progress=False)
    _ = store.tokens  # map it, then make sure pickling does not carry the data
    blob = pickle.dumps(store)
    assert len(blob) < 4000
    clone = pickle.loads(blob)
    assert np.array_equal(clone.record_tokens(1), store.record_tokens(1))
    with open(tmp_path / "s" / "tokens.bin", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(DataError, match="index says"):
        TokenStore(tmp_path / "s")
