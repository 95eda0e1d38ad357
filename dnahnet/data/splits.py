"""Train / validation / test splits by genome (never by window), and the evaluation holdout.

Rule (deterministic from ``seed``, independent of input order):
1. Held-out genomes: a genome is held out when a ``holdout`` pattern matches its name or one of its
   record ids (or an accession inside an old-style ``gi|..|ref|ACC|`` id). A pattern is an
   fnmatch glob; a pattern without a version also matches versioned ids (``NC_000913`` matches
   ``NC_000913.3``). Held-out genomes go to split ``"holdout"``: never train, val or test. The
   default holds out E. coli K-12: MG1655 (NC_000913), the zero-shot evaluation genome, and W3110
   (NC_007779), its near-identical sister strain in the offline fallback corpus (``dnahnet.data.paths``).
   Exception: when a single genome remains for training and validation was asked for, the held-out
   genomes are the validation split (still never trained on; logged): a run needs validation windows,
   and the fallback corpus has one genome besides K-12.
2. The remaining n genomes, sorted by name, are permuted with ``numpy.random.default_rng(seed)``;
   the first ``n_test`` go to test, the next ``n_val`` to val, the rest to train.
3. Counts: ``val_genomes``/``test_genomes`` are counts (int >= 0) or fractions (0 < f < 1, rounded,
   at least 1). Few genomes are handled by a fixed rule:
   - n >= 3: the requested counts; at least one genome must remain for training (else an error);
   - n == 2: 1 train + 1 val (if val was requested, else 1 test if test was requested); no test;
   - n == 1: train only (validation and test are empty; logged);
   - n == 0: an error (everything was held out).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dnahnet.data.store import DataError

log = logging.getLogger(__name__)

TRAIN, VAL, TEST, HOLDOUT = "train", "val", "test", "holdout"
SPLITS = (TRAIN, VAL, TEST, HOLDOUT)
# E. coli K-12: MG1655, the evaluation genome, and W3110 (the same strain: the fallback corpus's copy of it)
DEFAULT_HOLDOUT = ("NC_000913", "NC_007779")


@dataclass(frozen=True)
class SplitConfig:
    """How genomes are assigned to splits."""

    val_genomes: int | float = 1  # validation genomes: a count, or a fraction of non-held-out genomes
    test_genomes: int | float = 1  # test genomes: a count, or a fraction
    holdout: tuple[str, ...] = field(default=DEFAULT_HOLDOUT)  # genome-name / record-id patterns kept out
    seed: int = 0  # permutation seed


def _identifiers(record_id: str) -> list[str]:
    """A record id plus the fields of a pipe-separated id (``gi|208433976|ref|NC_011333.1|``)."""
    return [record_id] + [f for f in record_id.split("|") if f and f != record_id]


def _match(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*")


def is_held_out(genome: str, record_ids: Sequence[str], patterns: Sequence[str]) -> bool:
    names = [genome] + [x for rid in record_ids for x in _identifiers(rid)]
    return any(_match(n, p) for p in patterns for n in names)


def _count(spec: int | float, n: int, what: str) -> int:
    if isinstance(spec, bool) or not isinstance(spec, (int, float)):
        raise DataError(f"{what} must be an int count or a float fraction, got {spec!r}")
    if isinstance(spec, float):
        if not 0.0 <= spec < 1.0:
            raise DataError(f"{what}={spec}: a fraction must lie in [0, 1)")
        return 0 if spec == 0.0 else max(1, round(spec * n))
    if spec < 0:
        raise DataError(f"{what}={spec} must be >= 0")
    return spec


def split_counts(n: int, val_genomes: int | float, test_genomes: int | float) -> tuple[int, int]:
    """(n_val, n_test) for n non-held-out genomes, following the small-count rule above."""
    n_val, n_test = _count(val_genomes, n, "val_genomes"), _count(test_genomes, n, "test_genomes")
    if n == 0:
        raise DataError("no genomes left for training: every genome matches a holdout pattern")
    if n == 1:
        if n_val or n_test:
            log.warning("only 1 genome: it is used for training; validation and test are empty")
        return 0, 0
    if n == 2:
        if n_test and n_val:
            log.warning("only 2 genomes: 1 train + 1 validation, no test genome")
        return (1, 0) if n_val else (0, min(n_test, 1))
    if n_val + n_test > n - 1:
        raise DataError(
            f"val_genomes={val_genomes} and test_genomes={test_genomes} leave no training genome "
            f"out of {n} (after holdout)"
        )
    return n_val, n_test


def assign_splits(genome_records: Mapping[str, Sequence[str]], cfg: SplitConfig) -> dict[str, str]:
    """Genome name -> split, for ``genome_records`` mapping each genome to its record ids."""
    held = {g for g, rids in genome_records.items() if is_held_out(g, rids, cfg.holdout)}
    rest = sorted(g for g in genome_records if g not in held)
    n_val, n_test = split_counts(len(rest), cfg.val_genomes, cfg.test_genomes)
    order = [rest[i] for i in np.random.default_rng(cfg.seed).permutation(len(rest))]
    held_split = HOLDOUT
    if len(rest) == 1 and held and _count(cfg.val_genomes, 1, "val_genomes"):
        held_split = VAL  # see the module docstring: validation, never training
        log.warning("one genome left for training (%s): validating on the held-out %s (never trained on)",
                    rest[0], ", ".join(sorted(held)))
    split_of = {g: held_split for g in held}
    split_of.update({g: TEST for g in order[:n_test]})
    split_of.update({g: VAL for g in order[n_test : n_test + n_val]})
    split_of.update({g: TRAIN for g in order[n_test + n_val :]})
    if held:
        log.info("held out of pretraining: %s", ", ".join(sorted(held)))
    return {g: split_of[g] for g in genome_records}  # keep the caller's order
