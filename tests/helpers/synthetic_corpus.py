"""Synthetic genomes with learnable structure for the sweep tests (a helper module, not a test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def markov_corpus(root: Path, genomes: int, length: int, seed: int, file_name: str, header: str) -> Path:
    """First-order Markov genomes (the successor nucleotide with probability 0.7), one FASTA each.

    `file_name` and `header` are format strings of the genome index `g`, e.g. "g{g}.fasta", "S{g} x".
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for g in range(genomes):
        x = np.empty(length, dtype=np.int64)
        x[0] = rng.integers(4)
        keep, rand = rng.random(length) < 0.7, rng.integers(0, 4, length)
        for t in range(1, length):
            x[t] = (x[t - 1] + 1) % 4 if keep[t] else rand[t]
        seq = "".join("ACGT"[i] for i in x)
        body = "\n".join(seq[i:i + 80] for i in range(0, length, 80))
        (root / file_name.format(g=g)).write_text(f">{header.format(g=g)}\n{body}\n")
    return root
