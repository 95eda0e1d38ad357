"""Ingestion: formats, naming, and every bad-input case (clear message, no store left behind)."""

import gzip
import io
import lzma
from pathlib import Path

import numpy as np
import pytest
from Bio import SeqIO
from Bio.Seq import Seq
from Bio.SeqRecord import SeqRecord

from dnahnet import tokenizer as tok
from dnahnet.data.ingest import discover_inputs, input_file, parse_name, prepare_store
from dnahnet.data.store import DataError

SEQS = {"chr1 first chromosome": "ACGTACGTTTGA" * 20 + "acgtnRY", "pl1 a plasmid": "GGGCCCAAAT" * 7}


def genbank_text(records: dict[str, str]) -> str:
    out = io.StringIO()
    recs = [
        SeqRecord(Seq(s), id=h.split()[0], name=h.split()[0], description=h, annotations={"molecule_type": "DNA"})
        for h, s in records.items()
    ]
    SeqIO.write(recs, out, "genbank")
    return out.getvalue()


def store_contents(store) -> dict[str, str]:
    return {r.record_id: tok.decode(store.record_tokens(i).astype(np.int64)) for i, r in enumerate(store.records)}


def expected(records: dict[str, str]) -> dict[str, str]:
    return {h.split()[0]: tok.decode(tok.encode(s)) for h, s in records.items()}


def build(tmp_path, inputs, **kw):
    return prepare_store(inputs, base_dir=tmp_path, store_dir=tmp_path / "store", progress=False, **kw)


@pytest.mark.parametrize(
    "name, compression, fmt",
    [
        ("g.fna", None, "fasta"),
        ("g.fasta.gz", "gz", "fasta"),
        ("g.fa.xz", "xz", "fasta"),
        ("g.fas.bz2", "bz2", "fasta"),
        ("g.gbff", None, "genbank"),
        ("g.gbk.gz", "gz", "genbank"),
        ("g.gb.xz", "xz", "genbank"),
        ("g.seq", None, "fasta"),
        ("g.dat.gz", "gz", "genbank"),  # sniffed
    ],
)
def test_formats_round_trip(tmp_path, write_fasta, name, compression, fmt):
    text = genbank_text(SEQS) if fmt == "genbank" else None
    write_fasta(tmp_path / name, text or SEQS, compression)
    store = build(tmp_path, [name])
    assert store_contents(store) == expected(SEQS)
    assert [r.genome for r in store.records] == ["g", "g"]
    assert [r.description for r in store.records][0].startswith("chr1 first chromosome")
    assert store.records[1].offset == store.records[0].length  # flat layout, no separators


@pytest.mark.parametrize("name, compression", [("g.fna", "gz"), ("g.fna", "xz"), ("g.fna.gz", None)])
def test_compression_comes_from_the_content_not_the_name(tmp_path, write_fasta, name, compression):
    write_fasta(tmp_path / name, SEQS, compression)
    assert store_contents(build(tmp_path, [name])) == expected(SEQS)


def test_genome_names():
    assert parse_name(Path("GCF_000005845.2_ASM584v2_genomic.fna.gz")) == (
        "GCF_000005845.2_ASM584v2_genomic",
        "fasta",
        ".gz",
    )
    assert parse_name(Path("kleborate_Kpneumoniae_HS11286.fna.xz")) == ("kleborate_Kpneumoniae_HS11286", "fasta", ".xz")
    assert parse_name(Path("NC_004829_Mgallisepticum_Rlow.gbff.gz")) == (
        "NC_004829_Mgallisepticum_Rlow",
        "genbank",
        ".gz",
    )
    assert parse_name(Path("NC_000913.3")) == ("NC_000913.3", None, None)
    assert parse_name(Path("reads.txt")) == ("reads", None, None)


def test_directory_recursion_picks_known_extensions(tmp_path, write_fasta):
    write_fasta(tmp_path / "d" / "a.fna.gz", {"a1": "ACGT" * 10}, "gz")
    write_fasta(tmp_path / "d" / "sub" / "b.fasta", {"b1": "GGCC" * 10})
    write_fasta(tmp_path / "d" / "sub" / "c.gbk", genbank_text({"c1": "TTAA" * 10}))
    (tmp_path / "d" / "notes.txt").write_text("not a genome\n")
    (tmp_path / "d" / "a.gff.gz").write_bytes(gzip.compress(b"##gff-version 3\n"))
    # the same genome in two formats in one folder (like the K-12 folder) is taken once, as FASTA
    write_fasta(tmp_path / "d" / "sub" / "b.gbff", genbank_text({"b1": "GGCC" * 10}))
    files = discover_inputs(["d"], tmp_path)
    assert sorted(f.path.name for f in files) == ["a.fna.gz", "b.fasta", "c.gbk"]
    store = build(tmp_path, ["d"])
    assert store.genomes == ["a", "b", "c"]
    # globs, relative to the base directory
    assert [f.genome for f in discover_inputs(["d/**/*.fasta"], tmp_path)] == ["b"]


def assert_no_store(tmp_path: Path):
    assert not (tmp_path / "store").exists()
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


def _bad_cases(tmp_path: Path, write_fasta):
    """(files to write, expected message fragments) for each bad-input case."""
    gz_full = gzip.compress(b">x\n" + b"ACGT" * 5000 + b"\n")
    xz_full = lzma.compress(b">x\n" + b"ACGT" * 5000 + b"\n")
    return {
        "empty": (lambda: (tmp_path / "e.fna").write_text(""), ["e.fna", "empty file"]),
        "blank": (lambda: (tmp_path / "e.fna").write_text("\n\n  \n"), ["e.fna", "empty file"]),
        "neither": (
            lambda: (tmp_path / "x.fa").write_text("hello world\nACGT\n"),
            ["x.fa", "line 1", "neither FASTA", "hello world"],
        ),
        "unknown_ext": (lambda: (tmp_path / "x.bin").write_bytes(b"\x00\x01binary"), ["x.bin", "neither FASTA"]),
        "mismatch": (lambda: write_fasta(tmp_path / "x.gbk", {"a": "ACGT"}), ["x.gbk", "extension says genbank"]),
        "no_sequence": (
            lambda: write_fasta(tmp_path / "x.fa", ">a first\nACGT\n>b second\n>c third\nAC\n"),
            ["x.fa", "record 'b'", "no sequence"],
        ),
        "invalid_char": (
            lambda: write_fasta(tmp_path / "x.fa", {"a": "ACGT" * 30, "rna": "ACGU" * 30}),
            ["x.fa", "record 'rna'", "'U'", "position 4 "],
        ),
        "gap_char": (
            lambda: write_fasta(tmp_path / "x.fa", {"a": "ACGT" * 30 + "--ACGT"}),
            ["record 'a'", "'-'", "position 121 "],
        ),
        "truncated_gz": (
            lambda: (tmp_path / "x.fna.gz").write_bytes(gz_full[: len(gz_full) // 2]),
            ["x.fna.gz", "truncated gzip"],
        ),
        "truncated_xz": (
            lambda: (tmp_path / "x.fna.xz").write_bytes(xz_full[: len(xz_full) // 2]),
            ["x.fna.xz", "truncated xz"],
        ),
        "corrupt_gz": (
            lambda: (tmp_path / "x.fna.gz").write_bytes(b"\x1f\x8b" + b"garbage" * 10),
            ["x.fna.gz", "gzip"],
        ),
        "truncated_gb": (
            lambda: write_fasta(tmp_path / "x.gbk", genbank_text({"a": "ACGT" * 100})[:-200]),
            ["x.gbk", "truncated genbank"],
        ),
        "duplicate_ids": (
            lambda: (
                write_fasta(tmp_path / "x.fa", {"dup one": "ACGT"}),
                write_fasta(tmp_path / "y.fa", {"dup two": "GGCC"}),
            ),
            ["duplicate record id 'dup'", "x.fa", "y.fa"],
        ),
        "duplicate_in_file": (
            lambda: write_fasta(tmp_path / "x.fa", ">a\nAC\n>a\nGT\n"),
            ["duplicate record id 'a'", "twice in that file"],
        ),
    }


CASES = [
    "empty",
    "blank",
    "neither",
    "unknown_ext",
    "mismatch",
    "no_sequence",
    "invalid_char",
    "gap_char",
    "truncated_gz",
    "truncated_xz",
    "corrupt_gz",
    "truncated_gb",
    "duplicate_ids",
    "duplicate_in_file",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_named_and_leaves_no_store(tmp_path, write_fasta, case):
    make, fragments = _bad_cases(tmp_path, write_fasta)[case]
    make()
    write_fasta(tmp_path / "good.fna", {"good1": "ACGT" * 50})  # a valid genome alongside
    inputs = [p.name for p in tmp_path.iterdir() if p.is_file()]
    with pytest.raises(DataError) as e:
        build(tmp_path, inputs)
    for fragment in fragments:
        assert fragment in str(e.value), (fragment, str(e.value))
    assert_no_store(tmp_path)


def test_failed_rebuild_keeps_the_previous_store(tmp_path, write_fasta):
    f = write_fasta(tmp_path / "x.fa", {"a": "ACGT" * 10})
    first = build(tmp_path, ["x.fa"])
    write_fasta(f, {"a": "ACGU" * 10})  # the input changes and is now bad
    with pytest.raises(DataError, match="'U'"):
        build(tmp_path, ["x.fa"])
    assert store_contents(type(first)(tmp_path / "store")) == {"a": "ACGT" * 10}
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name] == []


def test_missing_inputs_and_same_genome_names(tmp_path, write_fasta):
    with pytest.raises(DataError, match="does not exist"):
        discover_inputs(["nope.fa"], tmp_path)
    with pytest.raises(DataError, match="matches no file"):
        discover_inputs(["*.fna"], tmp_path)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DataError, match="no FASTA/GenBank file under"):
        discover_inputs(["empty_dir"], tmp_path)
    write_fasta(tmp_path / "a" / "g.fa", {"x": "AC"})
    write_fasta(tmp_path / "b" / "g.fna", {"y": "AC"})
    with pytest.raises(DataError, match="same genome name 'g'"):
        discover_inputs(["a", "b"], tmp_path)


def test_one_genome_file_expected_and_a_directory_given_says_so(tmp_path):
    """`--genome DIR` of the evaluations: the error names the directory as a directory, not as missing."""
    with pytest.raises(FileNotFoundError, match="is a directory, not a genome file"):
        input_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="file not found"):
        input_file(tmp_path / "absent.fna")
