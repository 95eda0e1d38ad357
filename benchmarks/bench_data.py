"""Window-sampling throughput from a warm token store.

    PYTHONPATH=. python benchmarks/bench_data.py [--data-dir DIR] [--store-dir DIR] [--seconds 2] [--out bench_data.csv]

For each (batch, seq_len) and reverse-complement setting, draws training batches for a fixed
time, in one process, and reports windows/s and nucleotides/s (input tokens, B x L per batch),
both calling the dataset directly and through a DataLoader (num_workers=0). The store is built
first if needed (not timed) and read once so it is warm in the page cache.
"""

from __future__ import annotations

import argparse
import csv
import logging
import time
from itertools import islice

import numpy as np
import torch
from torch.utils.data import DataLoader

from dnahnet.data.ingest import prepare_store
from dnahnet.data.paths import default_inputs, resolve_data_dir
from dnahnet.data.windows import TrainWindows

SETTINGS = [(8, 8192), (32, 8192), (1, 65536), (64, 1024), (256, 1024)]


def measure(ds: TrainWindows, path: str, seconds: float) -> tuple[int, float]:
    """(batches, elapsed) drawing for about ``seconds``."""
    if path == "dataset":
        ds.batch(0)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            ds.batch(n)
            n += 1
        return n, time.perf_counter() - t0
    it = iter(DataLoader(ds, batch_size=None, num_workers=0))
    next(it)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in islice(it, 8):
            n += 1
    return n, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", help="data directory (default: resolve_data_dir())")
    parser.add_argument("--store-dir", help="store directory (default: the cache)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per setting")
    parser.add_argument("--out", default="bench_data.csv", help="CSV output path")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    data_dir = resolve_data_dir(args.data_dir)
    store = prepare_store(default_inputs(data_dir), base_dir=data_dir, store_dir=args.store_dir)
    train = store.indices_of_genomes([g for g, s in store.split_of().items() if s == "train"])
    checksum = int(np.asarray(store.tokens, dtype=np.uint8).sum(dtype=np.int64))  # warm the page cache
    print(f"store {store.path}: {store.n_tokens:,} nt, train records {len(train)}, checksum {checksum}")
    print(f"torch threads {torch.get_num_threads()}")

    rows = []
    header = f"{'path':<10} {'batch':>6} {'seq_len':>8} {'rc':>4} {'batches/s':>11} {'windows/s':>12} {'Mnt/s':>9}"
    print(header + "\n" + "-" * len(header))
    for batch, seq_len in SETTINGS:
        for rc in (0.0, 0.5):
            for path in ("dataset", "dataloader"):
                ds = TrainWindows(store, train, seq_len, batch, seed=0, rc_prob=rc)
                n, dt = measure(ds, path, args.seconds)
                row = {
                    "path": path,
                    "batch": batch,
                    "seq_len": seq_len,
                    "rc_prob": rc,
                    "batches": n,
                    "seconds": round(dt, 3),
                    "batches_per_s": n / dt,
                    "windows_per_s": n * batch / dt,
                    "nt_per_s": n * batch * seq_len / dt,
                }
                rows.append(row)
                print(
                    f"{path:<10} {batch:>6} {seq_len:>8} {rc:>4} {row['batches_per_s']:>11,.0f} "
                    f"{row['windows_per_s']:>12,.0f} {row['nt_per_s'] / 1e6:>9,.1f}"
                )
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
