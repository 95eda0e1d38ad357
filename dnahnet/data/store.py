"""The token store: one byte per nucleotide in a flat memory-mapped file, plus a record index.

Layout of a store directory::

    tokens.bin      uint8 token ids (dnahnet.tokenizer), all records back to back, no separators
    records.csv     one row per record: genome, record_id, description, length, offset, split,
                    source, gc_count, n_count  (offset/length index tokens.bin)
    manifest.json   format version, key, inputs (path, size, mtime_ns), counts, split config

Stores are written by ``StoreWriter`` into a temporary sibling directory and moved into place with
``os.replace`` only when complete, so a failure never leaves a partial store behind. Parsing the
genome files into a store is ``dnahnet.data.ingest``'s job; this module only owns the format.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the layout or the tokenisation changes: the store key includes it
TOKENS_FILE = "tokens.bin"
INDEX_FILE = "records.csv"
MANIFEST_FILE = "manifest.json"


class DataError(ValueError):
    """Bad input data or a bad store; the message names the file (and record or line)."""


@dataclass(frozen=True)
class RecordInfo:
    """One sequence record (a chromosome, plasmid or contig) in the store."""

    genome: str  # genome name: its input file's stem
    record_id: str  # FASTA/GenBank id, unique within the store
    description: str  # header text
    length: int  # nucleotides
    offset: int  # first token's position in tokens.bin
    split: str  # train / val / test / holdout, as assigned when the store was built
    source: str  # input file path
    gc_count: int  # G + C nucleotides
    n_count: int  # N (ambiguous) nucleotides


INDEX_COLUMNS = [f for f in RecordInfo.__dataclass_fields__]
_INT_COLUMNS = {"length", "offset", "gc_count", "n_count"}


@dataclass(frozen=True)
class GenomeSummary:
    """Per-genome totals for the summary table."""

    genome: str
    records: int
    nucleotides: int
    n_fraction: float
    gc_content: float  # G+C over A+C+G+T (N excluded)
    split: str


class TokenStore:
    """A read-only view of a built store. Picklable: the memmap is reopened lazily in each process."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_FILE
        if not manifest_path.is_file():
            raise DataError(f"{self.path}: not a token store (no {MANIFEST_FILE})")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{manifest_path}: unreadable manifest ({e})") from None
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DataError(
                f"{self.path}: store format version {self.manifest.get('format_version')} != "
                f"{FORMAT_VERSION} (rebuild it)"
            )
        self.records: list[RecordInfo] = _read_index(self.path / INDEX_FILE)
        self.lengths = np.array([r.length for r in self.records], dtype=np.int64)  # (R,)
        self.offsets = np.array([r.offset for r in self.records], dtype=np.int64)  # (R,)
        self.n_tokens = int(self.lengths.sum())
        size = (self.path / TOKENS_FILE).stat().st_size if (self.path / TOKENS_FILE).exists() else -1
        if size != self.n_tokens:
            raise DataError(f"{self.path / TOKENS_FILE}: {size} bytes, index says {self.n_tokens}")
        self._tokens: np.ndarray | None = None
        self._by_id: dict[str, int] | None = None

    @property
    def key(self) -> str:
        return self.manifest["key"]

    @property
    def tokens(self) -> np.ndarray:
        """All tokens, (n_tokens,) uint8, memory-mapped read-only."""
        if self._tokens is None:
            self._tokens = np.memmap(self.path / TOKENS_FILE, dtype=np.uint8, mode="r")
        return self._tokens

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tokens"] = None  # never pickle the mapped data; each worker maps the file itself
        return state

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, genomes={len(self.genomes)}, records={len(self)}, nt={self.n_tokens:,})"

    @property
    def genomes(self) -> list[str]:
        """Genome names in store order."""
        return list(dict.fromkeys(r.genome for r in self.records))

    def genome_records(self) -> dict[str, list[str]]:
        """Genome name -> its record ids."""
        out: dict[str, list[str]] = {}
        for r in self.records:
            out.setdefault(r.genome, []).append(r.record_id)
        return out

    def record_index(self, record_id: str) -> int:
        """Position of a record (by id) in the store."""
        if self._by_id is None:
            self._by_id = {r.record_id: i for i, r in enumerate(self.records)}
        if record_id not in self._by_id:
            raise KeyError(f"record {record_id!r} not in store {self.path}")
        return self._by_id[record_id]

    def record_tokens(self, i: int) -> np.ndarray:
        """Tokens of record ``i`` (a read-only view, uint8)."""
        r = self.records[i]
        return self.tokens[r.offset : r.offset + r.length]

    def indices_of_genomes(self, genomes: set[str] | list[str]) -> np.ndarray:
        """Record indices (int64) belonging to the given genomes, in store order."""
        wanted = set(genomes)
        return np.array([i for i, r in enumerate(self.records) if r.genome in wanted], dtype=np.int64)

    def apply_splits(self, split_of: dict[str, str]) -> None:
        """Set every record's split from a genome -> split mapping (in memory; see ingest.prepare_store)."""
        missing = [g for g in self.genomes if g not in split_of]
        if missing:
            raise DataError(f"{self.path}: no split for genomes {missing}")
        self.records = [replace(r, split=split_of[r.genome]) for r in self.records]

    def split_of(self) -> dict[str, str]:
        """Genome -> split."""
        return {r.genome: r.split for r in self.records}

    def summary(self, split_of: dict[str, str] | None = None) -> list[GenomeSummary]:
        """Per-genome records, nucleotides, N fraction, GC content and split (``split_of`` overrides)."""
        by_genome: dict[str, list[RecordInfo]] = {}
        for r in self.records:
            by_genome.setdefault(r.genome, []).append(r)
        rows = []
        for genome, recs in by_genome.items():
            nt = sum(r.length for r in recs)
            n = sum(r.n_count for r in recs)
            gc = sum(r.gc_count for r in recs)
            split = split_of[genome] if split_of is not None else recs[0].split
            rows.append(GenomeSummary(genome, len(recs), nt, n / nt, gc / max(nt - n, 1), split))
        return rows


def _read_index(path: Path) -> list[RecordInfo]:
    if not path.is_file():
        raise DataError(f"{path}: missing record index")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != INDEX_COLUMNS:
            raise DataError(f"{path}: columns {reader.fieldnames} != {INDEX_COLUMNS}")
        try:
            return [RecordInfo(**{k: int(v) if k in _INT_COLUMNS else v for k, v in row.items()}) for row in reader]
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}, line {reader.line_num}: {e}") from None


def is_store(path: str | os.PathLike) -> bool:
    return (Path(path) / MANIFEST_FILE).is_file()


def read_manifest(path: str | os.PathLike) -> dict[str, Any] | None:
    """The manifest of the store at ``path``, or None when there is none (or it is unreadable)."""
    try:
        return json.loads((Path(path) / MANIFEST_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


class StoreWriter:
    """Writes a store into a temporary directory; ``commit`` moves it to ``dest`` atomically.

    Use as a context manager: an exception inside the block deletes the temporary directory, and
    ``dest`` keeps whatever it held before (nothing, or the previous complete store)::

        with StoreWriter(dest) as w:
            w.append(genome, record_id, description, source, ids)
            store = w.commit(manifest_extra)
    """

    def __init__(self, dest: str | os.PathLike):
        self.dest = Path(dest)
        if self.dest.exists() and not is_store(self.dest) and any(self.dest.iterdir()):
            raise DataError(f"{self.dest}: exists, is not empty and is not a token store; refusing to overwrite")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.tmp-", dir=self.dest.parent))
        self._bin = open(self.tmp / TOKENS_FILE, "wb")
        self._rows: list[RecordInfo] = []
        self._offset = 0
        self._committed = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self.abort()

    def append(
        self, genome: str, record_id: str, description: str, source: str, ids: np.ndarray, split: str = ""
    ) -> None:
        """Append one record's uint8 ids."""
        counts = np.bincount(ids, minlength=5)
        self._bin.write(memoryview(np.ascontiguousarray(ids, dtype=np.uint8)))
        self._rows.append(
            RecordInfo(
                genome,
                record_id,
                description,
                int(ids.size),
                self._offset,
                split,
                source,
                int(counts[1] + counts[2]),
                int(counts[4]),
            )
        )
        self._offset += int(ids.size)

    def set_splits(self, split_of: dict[str, str]) -> None:
        """Fill the split column from a genome -> split mapping."""
        self._rows = [replace(r, split=split_of[r.genome]) for r in self._rows]

    def commit(self, manifest: dict[str, Any]) -> TokenStore:
        self._bin.close()
        with open(self.tmp / INDEX_FILE, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=INDEX_COLUMNS)
            writer.writeheader()
            writer.writerows(asdict(r) for r in self._rows)
        manifest = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "n_records": len(self._rows),
            "n_genomes": len({r.genome for r in self._rows}),
            "n_tokens": self._offset,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (self.tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        os.chmod(self.tmp, 0o755)  # mkdtemp makes 0700; stores are shared between users of a cache
        self._replace_dest()
        self._committed = True
        return TokenStore(self.dest)

    def _replace_dest(self) -> None:
        old = None
        if self.dest.exists():  # a previous (stale) store: move it aside, then swap the new one in
            old = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.old-", dir=self.dest.parent))
            os.replace(self.dest, old / "store")
        try:
            os.replace(self.tmp, self.dest)
        except OSError:
            theirs, ours = read_manifest(self.dest), read_manifest(self.tmp)
            if theirs is not None and ours is not None and theirs.get("key") == ours.get("key"):
                # Another process (a second node sharing the filesystem) finished the same store first.
                log.info("store %s was completed concurrently; keeping that one", self.dest)
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                if old is not None and not self.dest.exists():
                    os.replace(old / "store", self.dest)  # put the previous store back
                raise
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)

    def abort(self) -> None:
        if not self._bin.closed:
            self._bin.close()
        shutil.rmtree(self.tmp, ignore_errors=True)
