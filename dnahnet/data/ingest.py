"""Genome files -> token store.

Inputs are FASTA or GenBank files, plain or compressed (gzip, xz, bzip2: told by the content, not the
name), given as files, directories (searched recursively for known extensions) or globs. Parsing is
Biopython's (``Bio.SeqIO``); the format comes from the extension, or for an unknown extension from the
first non-empty line (``>`` FASTA, ``LOCUS`` GenBank). The evaluations read their genomes through the
same reader (``read_records``), so both see the same sequences and the same errors. One input file is one genome (all its records:
chromosomes and plasmids); the genome's name is the file name without compression/format extensions.

The store is keyed by a hash of the resolved input paths, sizes and mtimes and the store format
version, so it is built once, reused while the inputs are unchanged, and rebuilt when one changes.
"""

from __future__ import annotations

import bz2
import functools
import glob
import gzip
import hashlib
import io
import json
import logging
import lzma
import os
import warnings
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from Bio import BiopythonParserWarning, SeqIO
from Bio.Seq import UndefinedSequenceError
from tqdm.auto import tqdm

from dnahnet.data.paths import default_store_root
from dnahnet.data.splits import SplitConfig, assign_splits
from dnahnet.data.store import FORMAT_VERSION, DataError, StoreWriter, TokenStore, read_manifest
from dnahnet.tokenizer import ENCODE_LUT, INVALID

log = logging.getLogger(__name__)

FASTA, GENBANK = "fasta", "genbank"
FORMAT_EXTENSIONS = {
    ".fa": FASTA,
    ".fasta": FASTA,
    ".fna": FASTA,
    ".fas": FASTA,
    ".fsa": FASTA,
    ".gb": GENBANK,
    ".gbk": GENBANK,
    ".gbff": GENBANK,
    ".genbank": GENBANK,
}
COMPRESSIONS = {".gz": gzip.open, ".xz": lzma.open, ".bz2": bz2.open}
_GLOB_CHARS = set("*?[")
_SNIFF_LINES = 1000  # non-empty line search limit when sniffing a file with an unknown extension


@dataclass(frozen=True)
class InputFile:
    """One genome file to ingest."""

    path: Path  # resolved path
    genome: str  # genome name (file stem without compression/format extensions)
    fmt: str | None  # "fasta" / "genbank" from the extension; None = sniff the content
    compression: str | None  # ".gz" / ".xz" / ".bz2" from the name, or None (reading detects it from the content)
    size: int  # bytes on disk (part of the store key)
    mtime_ns: int  # modification time (part of the store key)


def parse_name(path: Path) -> tuple[str, str | None, str | None]:
    """(genome name, format from extension or None, compression extension or None)."""
    name = path.name
    compression = next((ext for ext in COMPRESSIONS if name.lower().endswith(ext)), None)
    if compression:
        name = name[: -len(compression)]
    stem, ext = os.path.splitext(name)
    fmt = FORMAT_EXTENSIONS.get(ext.lower())
    strip = fmt is not None or ext[1:].isalpha()  # "x.txt" -> "x", but "NC_000913.3" stays whole
    return (stem if strip and stem else name), fmt, compression


def input_file(path: str | os.PathLike) -> InputFile:
    """One genome file, named and keyed (raises FileNotFoundError naming it when it is missing or is a
    directory: a command that takes one genome file says which, instead of 'not found')."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FileNotFoundError(f"{path}: is a directory, not a genome file (FASTA or GenBank, compressed or not)")
    if not path.is_file():
        raise FileNotFoundError(f"file not found: {path}")
    path = path.resolve()
    genome, fmt, compression = parse_name(path)
    st = path.stat()
    return InputFile(path, genome, fmt, compression, st.st_size, st.st_mtime_ns)


def _is_genome_file(path: Path) -> bool:
    return path.is_file() and parse_name(path)[1] is not None


def _scan_directory(folder: Path) -> list[Path]:
    """Genome files under ``folder`` (recursive). A genome present in several formats in one
    folder (the K-12 folder holds both .fna.gz and .gbff.gz of NC_000913.3) is taken once,
    preferring FASTA, so the same records are not ingested twice."""
    chosen: dict[tuple[Path, str], Path] = {}
    for path in sorted(p for p in folder.rglob("*") if _is_genome_file(p)):
        key = (path.parent, parse_name(path)[0])
        if key in chosen:
            keep = min(chosen[key], path, key=lambda p: (parse_name(p)[1] != FASTA, p.name))
            log.info(
                "%s: %s and %s hold the same genome; using %s", path.parent, chosen[key].name, path.name, keep.name
            )
            chosen[key] = keep
        else:
            chosen[key] = path
    return list(chosen.values())


def discover_inputs(inputs: Iterable[str | os.PathLike], base_dir: str | os.PathLike | None = None) -> list[InputFile]:
    """Expand files, directories and globs (relative ones against ``base_dir``) into genome files,
    sorted by path. Errors: a missing path, a glob or directory with no genome file, two files
    with the same genome name."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    paths: list[Path] = []
    for entry in inputs:
        text = os.fspath(entry)
        full = Path(text).expanduser()
        full = full if full.is_absolute() else base / full
        if _GLOB_CHARS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(str(full), recursive=True))]
            found = [p for p in matches if p.is_file()] + [q for p in matches if p.is_dir() for q in _scan_directory(p)]
            if not found:
                raise DataError(f"input {text!r}: the pattern {full} matches no file")
            paths += found
        elif full.is_dir():
            found = _scan_directory(full)
            if not found:
                raise DataError(
                    f"input {text!r}: no FASTA/GenBank file under {full} "
                    f"(extensions {', '.join(FORMAT_EXTENSIONS)}, optionally {', '.join(COMPRESSIONS)})"
                )
            paths += found
        elif full.is_file():
            paths.append(full)
        else:
            raise DataError(f"input {text!r}: {full} does not exist")
    files: dict[Path, InputFile] = {}
    for p in paths:
        f = input_file(p)
        files.setdefault(f.path, f)  # the same file listed twice is read once
    by_genome: dict[str, InputFile] = {}
    for f in sorted(files.values(), key=lambda f: str(f.path)):
        if f.genome in by_genome:
            raise DataError(
                f"two input files have the same genome name {f.genome!r}: {by_genome[f.genome].path} and {f.path}"
            )
        by_genome[f.genome] = f
    if not by_genome:
        raise DataError("no input files given")
    return list(by_genome.values())


def store_key(files: Sequence[InputFile]) -> str:
    """Hash of the resolved input paths, sizes and mtimes, and the store format version."""
    payload = {
        "format_version": FORMAT_VERSION,
        "inputs": [[str(f.path), f.size, f.mtime_ns] for f in sorted(files, key=lambda f: str(f.path))],
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


_SAMPLE_BYTES = 1 << 16  # contents_key reads this much from each end of a file


def contents_key(files: Sequence[InputFile]) -> str:
    """Hash of what the inputs hold, wherever they are: each genome's name, file size and first and last
    64 KiB, and the store format version. Unlike `store_key` it ignores paths and modification times, so a
    copy of the same genomes elsewhere has the same key (a run's identity: `dnahnet.run_config.config_differences`)."""
    return _contents_key(tuple(sorted(files, key=lambda f: f.genome)))


@functools.lru_cache(maxsize=64)  # a sweep's check resolves every run's config: read each file set once
def _contents_key(files: tuple[InputFile, ...]) -> str:
    digest = hashlib.sha256(json.dumps({"format_version": FORMAT_VERSION}).encode())
    for f in files:
        with open(f.path, "rb") as fh:
            head = fh.read(_SAMPLE_BYTES)
            fh.seek(max(0, f.size - _SAMPLE_BYTES))
            tail = fh.read(_SAMPLE_BYTES)
        digest.update(json.dumps([f.genome, f.size]).encode())
        digest.update(hashlib.sha256(head + tail).digest())
    return digest.hexdigest()[:16]


_MAGIC = ((b"\x1f\x8b", ".gz"), (b"\xfd7zXZ\x00", ".xz"), (b"BZh", ".bz2"))  # leading bytes -> compression


def detect_compression(path: str | os.PathLike) -> str | None:
    """".gz" / ".xz" / ".bz2" from a file's leading bytes, None for plain text. The content decides,
    not the name: a gzipped FASTA saved without ".gz" (or a plain one with it) is still read."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    return next((ext for magic, ext in _MAGIC if head.startswith(magic)), None)


def open_text(path: str | os.PathLike) -> io.TextIOBase:
    """Open a plain, gzip, xz or bzip2 text file (the compression from its content)."""
    opener = COMPRESSIONS.get(detect_compression(path) or "", open)
    # errors="replace": a stray non-UTF-8 byte in a GenBank comment must not sink a valid file;
    # in sequence data it becomes U+FFFD and is reported as an invalid character.
    return opener(path, "rt", encoding="utf-8", errors="replace")


def _io_error(f: InputFile, e: BaseException) -> DataError:
    kind = {".gz": "gzip", ".xz": "xz", ".bz2": "bzip2"}.get(detect_compression(f.path) or "", "")
    if isinstance(e, EOFError):
        return DataError(f"{f.path}: truncated {kind} file ({e})")
    return DataError(f"{f.path}: cannot read{' ' + kind if kind else ''} file: {type(e).__name__}: {e}")


_READ_ERRORS = (EOFError, OSError, lzma.LZMAError, zlib.error)


def sniff_format(f: InputFile) -> str:
    """Check the first non-empty line against the format (from the extension, or detect it)."""
    try:
        with open_text(f.path) as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    break
                if line_no >= _SNIFF_LINES:
                    line = ""
                    break
            else:
                raise DataError(f"{f.path}: empty file")
    except _READ_ERRORS as e:
        raise _io_error(f, e) from None
    if not line.strip():
        raise DataError(f"{f.path}: empty file (only blank lines)")
    found = FASTA if line.startswith(">") else GENBANK if line.startswith("LOCUS") else None
    if found is None:
        raise DataError(
            f"{f.path}, line {line_no}: neither FASTA (starts with '>') nor GenBank "
            f"(starts with 'LOCUS'): {line.strip()[:60]!r}"
        )
    if f.fmt is not None and found != f.fmt:
        raise DataError(f"{f.path}, line {line_no}: the extension says {f.fmt} but the content is {found}")
    return found


def encode_record(raw: bytes, f: InputFile, record_id: str) -> np.ndarray:
    """ASCII sequence bytes -> uint8 ids; a bad character is an error naming file, record, position."""
    arr = np.frombuffer(raw, dtype=np.uint8)
    ids = ENCODE_LUT[arr]
    if ids.size and ids.max() == INVALID:
        pos = int(np.flatnonzero(ids == INVALID)[0])
        raise DataError(
            f"{f.path}: record {record_id!r}: invalid character {chr(arr[pos])!r} at position "
            f"{pos + 1:,} (1-based); allowed: ACGT and IUPAC codes RYSWKMBDHVN, any case"
        )
    return ids


@dataclass(frozen=True)
class GenomeRecord:
    """One record (chromosome, plasmid) of a genome file."""

    id: str  # record id (FASTA header's first word, GenBank VERSION)
    description: str
    seq: bytes  # the nucleotides as written (any case, IUPAC codes), every byte checked valid
    ids: np.ndarray  # (len(seq),) uint8 token ids of `seq`
    circular: bool  # GenBank LOCUS topology "circular"; FASTA cannot say (False)


def read_records(f: InputFile) -> list[GenomeRecord]:
    """All records of one genome file, parsed by Biopython and checked; every problem is a DataError
    naming the file (and record, position): bad format, truncated or corrupt compression, empty or
    missing sequence, a character that is not a nucleotide."""
    fmt = sniff_format(f)
    records = []
    try:
        with warnings.catch_warnings(record=True) as caught, open_text(f.path) as handle:
            warnings.simplefilter("always", BiopythonParserWarning)
            for k, rec in enumerate(SeqIO.parse(handle, fmt), 1):
                if not rec.id:
                    raise DataError(f"{f.path}: record #{k} has an empty id")
                try:
                    raw = bytes(rec.seq)
                except UndefinedSequenceError:
                    raise DataError(
                        f"{f.path}: record {rec.id!r} has no sequence data "
                        "(a GenBank record with CONTIG but no ORIGIN?)"
                    ) from None
                if not raw:
                    raise DataError(f"{f.path}: record {rec.id!r} (#{k}) has no sequence")
                circular = fmt == GENBANK and rec.annotations.get("topology", "") == "circular"
                ids = encode_record(raw, f, rec.id)
                records.append(GenomeRecord(rec.id, rec.description, raw, ids, circular))
            for w in caught:
                if "Premature end" in str(w.message):
                    raise DataError(f"{f.path}: truncated {fmt} file ({w.message})")
                log.warning("%s: %s", f.path, w.message)
    except DataError:
        raise
    except _READ_ERRORS as e:
        raise _io_error(f, e) from None
    except UnicodeError as e:
        raise DataError(f"{f.path}: non-ASCII character in sequence data ({e})") from None
    except ValueError as e:  # Biopython's parse errors
        raise DataError(f"{f.path}: not a valid {fmt} file: {str(e).splitlines()[0]}") from None
    if not records:
        raise DataError(f"{f.path}: no {fmt} records found")
    return records


def read_genome(f: InputFile) -> list[tuple[str, str, np.ndarray]]:
    """All records of one genome file as (record id, description, uint8 ids)."""
    return [(r.id, r.description, r.ids) for r in read_records(f)]


def build_store(
    files: Sequence[InputFile], dest: str | os.PathLike, split: SplitConfig | None = None, progress: bool = True
) -> TokenStore:
    """Parse ``files`` into a new store at ``dest`` (atomically replacing what was there)."""
    split = split or SplitConfig()
    files = sorted(files, key=lambda f: str(f.path))
    seen: dict[str, Path] = {}
    genome_records: dict[str, list[str]] = {}
    with StoreWriter(dest) as writer:
        bar = tqdm(
            total=sum(f.size for f in files), unit="B", unit_scale=True, desc="ingest genomes", disable=not progress
        )
        with bar:
            for f in files:
                bar.set_postfix_str(f.genome[:40])
                for record_id, description, ids in read_genome(f):
                    if record_id in seen:
                        where = (
                            "twice in that file" if seen[record_id] == f.path else f"in {seen[record_id]} and {f.path}"
                        )
                        raise DataError(f"{f.path}: duplicate record id {record_id!r}: {where}")
                    seen[record_id] = f.path
                    genome_records.setdefault(f.genome, []).append(record_id)
                    writer.append(f.genome, record_id, description, str(f.path), ids)
                bar.update(f.size)
        writer.set_splits(assign_splits(genome_records, split))
        store = writer.commit(
            {
                "key": store_key(files),
                "inputs": [
                    {"path": str(f.path), "genome": f.genome, "size": f.size, "mtime_ns": f.mtime_ns} for f in files
                ],
                "split_config": asdict(split),
            }
        )
    log.info("built %r", store)
    return store


def prepare_store(
    inputs: Iterable[str | os.PathLike],
    base_dir: str | os.PathLike | None = None,
    store_dir: str | os.PathLike | None = None,
    split: SplitConfig | None = None,
    progress: bool = True,
    rebuild: bool = False,
) -> TokenStore:
    """Open the store for ``inputs`` when it is up to date, else build it.

    ``store_dir`` is the store's own directory; None = ``<$DNAHNET_CACHE or ~/.cache/dnahnet>/stores/<key>``.
    The returned store's ``split`` column follows ``split`` (the split config), whatever config the
    store was built with.
    """
    split = split or SplitConfig()
    files = discover_inputs(inputs, base_dir)
    key = store_key(files)
    dest = Path(store_dir).expanduser() if store_dir is not None else default_store_root() / key
    manifest = read_manifest(dest)
    if (
        not rebuild
        and manifest is not None
        and manifest.get("key") == key
        and manifest.get("format_version") == FORMAT_VERSION
    ):
        log.info("reusing token store %s (key %s)", dest, key)
        store = TokenStore(dest)
        store.apply_splits(assign_splits(store.genome_records(), split))
    else:
        if manifest is not None:
            log.info("token store %s is stale (inputs changed); rebuilding", dest)
        log.info("building token store %s from %d files", dest, len(files))
        store = build_store(files, dest, split, progress=progress)
    return store
