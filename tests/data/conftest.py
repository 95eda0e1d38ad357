"""Fixtures for the data-pipeline tests: small synthetic genome files, and the real corpus store."""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

import numpy as np
import pytest

from dnahnet.data.ingest import prepare_store
from dnahnet.data.paths import default_inputs, resolve_data_dir
from dnahnet.data.splits import SplitConfig

_OPENERS = {None: open, "gz": gzip.open, "xz": lzma.open, "bz2": bz2.open}


def fasta_text(records: dict[str, str], width: int = 60) -> str:
    lines = []
    for header, seq in records.items():
        lines.append(f">{header}")
        lines += [seq[i : i + width] for i in range(0, len(seq), width)]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str, compression: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with _OPENERS[compression](path, "wt") as f:
        f.write(text)
    return path


def random_dna(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), size=n))


@pytest.fixture
def write_fasta():
    """write_fasta(path, {header: seq} or raw text, compression=None|"gz"|"xz"|"bz2") -> path"""

    def _write(path: Path, records: dict[str, str] | str, compression: str | None = None) -> Path:
        text = records if isinstance(records, str) else fasta_text(records)
        return write_text(Path(path), text, compression)

    return _write


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A data directory with genomes/: 5 random genomes (2 records each, 3-6 kb) + an MG1655 stand-in."""
    rng = np.random.default_rng(123)
    root = tmp_path / "data"
    for g in range(5):
        recs = {
            f"G{g}_chr genome {g} chromosome": random_dna(rng, 3000 + 700 * g),
            f"G{g}_plasmid genome {g} plasmid": random_dna(rng, 1500),
        }
        write_text(root / "genomes" / "corpus" / f"genome{g}.fna.gz", fasta_text(recs), "gz")
    write_text(
        root / "genomes" / "k12" / "mg1655.fasta",
        fasta_text({"NC_000913.3 Escherichia coli K-12 MG1655": random_dna(rng, 4000)}),
    )
    return root


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    data_dir = resolve_data_dir()
    if not (data_dir / "genomes" / "corpus").is_dir():
        pytest.skip("the real genome corpus (../shared/data/genomes) is not available")
    return data_dir


@pytest.fixture(scope="session")
def real_store(real_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real corpus + K-12, built once per test session into a temporary directory."""
    out = tmp_path_factory.mktemp("real_store") / "store"
    return prepare_store(
        default_inputs(real_data_dir), base_dir=real_data_dir, store_dir=out, split=SplitConfig(), progress=False
    )
