"""The Markov floor: order-k Markov count models of the training split, scored on the validation windows.

A sweep's losses mean little without a floor to read them against: how far below a k-th order Markov chain
(fitted by counting on the same training genomes) do the neural models get? This module fits such chains
for k = 0..K and scores them exactly as a run is scored: next-nucleotide NLL in nats per nucleotide over the
labels of the same fixed validation windows. A label at position t of a window (input w[:-1], labels w[1:])
has only the t + 1 nucleotides w[0..t] of context, as the model does; the order-k chain then uses its
longest available context, i.e. the order-min(k, t + 1) model (a backoff, so no window position is dropped).

Counting (numpy only, no torch: `python -m analysis` may import this module):
- the alphabet is the 5 store symbols A C G T N (dnahnet.tokenizer ids 0..4), so that a rare N label or
  context is scored, not skipped; an n-gram is its base-5 code (first symbol most significant), the
  context of a code is code // 5 and its next symbol code % 5;
- codes of every length come from one rolling update over the concatenated records
  (code_n[e] = code_{n-1}[e] + s[e - n + 1] * 5^(n - 1), indexed by the gram's last position e), a gram
  counted only when it lies inside one record; counts by np.bincount while 5^n is small, else np.unique;
- both strands: the reverse complement of every training record is counted too (training windows are
  reverse-complemented at random, `data.rc_augment`).

Smoothing (each a proper distribution over the 5 symbols for every context, seen or not):
- `add-1/2`: (c(hw) + 1/2) / (c(h) + 5/2), the reference the issue quoted;
- `witten-bell`: interpolated with the order below, weight of the lower order T(h) / (c(h) + T(h)), T(h) the
  number of distinct symbols seen after h;
- `kneser-ney`: interpolated Kneser-Ney, absolute discount D = n1 / (n1 + 2 n2) per order, lower orders
  estimated from continuation counts (the number of distinct symbols seen *before* a gram).

CLI: `python -m analysis.markov --plan SWEEP/plan.csv --data-dir DATA --out markov.csv` (or `--seq-len`,
`--n-val-windows`, ... instead of --plan) writes `k,smoothing,val_loss` rows. Only the CLI reads the token
store, through `dnahnet.data` (imported on use: it brings torch with it).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

V = 5  # alphabet: A C G T N (store token ids 0..4)
RC_TABLE = np.array([3, 2, 1, 0, 4], dtype=np.uint8)  # complement of each id (A<->T, C<->G, N<->N)
SMOOTHERS = ("add-1/2", "witten-bell", "kneser-ney")
FILENAME = "markov.csv"  # written beside a sweep's results.csv; `python -m analysis` reads it
DENSE_MAX = 5**10  # count n-grams with a dense bincount up to this many codes, np.unique beyond
MAX_ORDER_CAP = 16  # 5^17 still fits an int64


class MarkovError(ValueError):
    """Bad input to the Markov floor (the message names the argument or file)."""


@dataclass
class Table:
    """Counts of one set of keys: sorted unique int64 `codes` and their int64 `counts`."""

    codes: np.ndarray  # (n,) sorted, unique
    counts: np.ndarray  # (n,) > 0

    def lookup(self, query: np.ndarray) -> np.ndarray:
        """Count of each query code (0 where absent). (q,) int64"""
        if len(self.codes) == 0:
            return np.zeros(len(query), dtype=np.int64)
        i = np.searchsorted(self.codes, query).clip(max=len(self.codes) - 1)
        return np.where(self.codes[i] == query, self.counts[i], 0)


def _table(codes: np.ndarray, n_codes: int) -> Table:
    """Count `codes` (values in [0, n_codes))."""
    if n_codes <= DENSE_MAX:
        c = np.bincount(codes, minlength=n_codes)
        keys = np.flatnonzero(c)
        return Table(keys.astype(np.int64), c[keys].astype(np.int64))
    keys, c = np.unique(codes, return_counts=True)
    return Table(keys.astype(np.int64), c.astype(np.int64))


def _groups(t: Table) -> tuple[Table, Table]:
    """Per context h of a table of grams hw: (sum over w of the counts, number of distinct w)."""
    ctx = t.codes // V
    if len(ctx) == 0:
        empty = Table(np.zeros(0, np.int64), np.zeros(0, np.int64))
        return empty, empty
    first = np.r_[True, ctx[1:] != ctx[:-1]]  # codes are sorted, so each context's grams are contiguous
    starts = np.flatnonzero(first)
    keys = ctx[starts]
    return Table(keys, np.add.reduceat(t.counts, starts)), Table(keys, np.diff(np.r_[starts, len(ctx)]))


def _discount(counts: np.ndarray) -> float:
    """Kneser-Ney's absolute discount n1 / (n1 + 2 n2) (Ney et al. 1994); 0.5 when a count-of-counts is 0
    (low orders of a large corpus see every gram many times)."""
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 and n2 else 0.5


def concat_records(records: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(symbols (T,) uint8, position within its record (T,) int64) of the records back to back."""
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    seq = np.concatenate([np.asarray(r, dtype=np.uint8) for r in records]) if len(records) else np.zeros(0, np.uint8)
    if seq.size and int(seq.max()) >= V:
        raise MarkovError(f"token id {int(seq.max())} is not a nucleotide (expected ids 0..{V - 1}: A C G T N)")
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(len(seq), dtype=np.int64) - np.repeat(starts, lengths)
    return seq, pos


def rolling_codes(seq: np.ndarray, max_len: int):
    """Yield (n, codes (T,) int64) for n = 1..max_len: codes[e] is the n-gram ending at e (valid where the
    position within the record is >= n - 1; elsewhere it mixes records and must be masked by the caller)."""
    code = seq.astype(np.int64)
    yield 1, code
    for n in range(2, max_len + 1):
        code = code.copy()
        code[n - 1:] += seq[: len(seq) - n + 1].astype(np.int64) * V ** (n - 1)
        yield n, code


@dataclass
class MarkovCounts:
    """Gram counts of orders 0..max_order (grams of 1..max_order + 1 symbols) of a training corpus."""

    grams: list[Table]  # grams[j]: counts of the (j + 1)-grams
    continuation: list[Table]  # continuation[j]: distinct left extensions of each (j + 1)-gram (j < max_order)
    tokens: int  # counted positions (both strands when both_strands)

    @property
    def max_order(self) -> int:
        return len(self.grams) - 1


def fit(records: Sequence[np.ndarray], max_order: int, both_strands: bool = True,
        progress: bool = False, previous: MarkovCounts | None = None) -> MarkovCounts:
    """Count every (j + 1)-gram, j = 0..max_order, inside each record (and each reverse complement).
    `previous`: counts of the same records to lower orders, reused (only the orders above are counted)."""
    if not 0 <= max_order <= MAX_ORDER_CAP:
        raise MarkovError(f"max_order={max_order} must lie in 0..{MAX_ORDER_CAP}")
    records = [np.asarray(r, dtype=np.uint8) for r in records]
    bad = [int(r.max()) for r in records if r.size and int(r.max()) >= V]
    if bad:
        raise MarkovError(f"token id {bad[0]} is not a nucleotide (expected ids 0..{V - 1}: A C G T N)")
    if both_strands:
        records = records + [RC_TABLE[r[::-1]] for r in records]
    seq, pos = concat_records(records)
    grams: list[Table] = list(previous.grams[: max_order + 1]) if previous is not None else []
    bar = _bar(max_order + 1 - len(grams), "counting", progress)
    for n, code in rolling_codes(seq, max_order + 1):
        if n > len(grams):
            grams.append(_table(code[pos >= n - 1], V**n))
            bar.update(1)
    bar.close()
    continuation = []
    for j in range(max_order):  # left extensions of a (j + 1)-gram: distinct (j + 2)-grams ending with it
        continuation.append(_table(grams[j + 1].codes % V ** (j + 1), V ** (j + 1)))
    return MarkovCounts(grams, continuation, int(len(seq)))


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False)


def log_probs(counts: MarkovCounts, windows: np.ndarray, smoothing: str) -> np.ndarray:
    """Log-probability of every label of every window under the order-k chain, for k = 0..max_order.

    `windows` (n, L + 1) of ids; labels are windows[:, 1:], the label at t has context windows[:, :t + 1]
    and gets the order-min(k, t + 1) model. Returns (max_order + 1, n, L) float64 (natural log).
    """
    if smoothing not in SMOOTHERS:
        raise MarkovError(f"smoothing {smoothing!r} is not one of {', '.join(SMOOTHERS)}")
    windows = np.asarray(windows)
    if windows.ndim != 2 or windows.shape[1] < 2:
        raise MarkovError(f"windows must be (n, L + 1) with L >= 1, got shape {windows.shape}")
    n_win, width = windows.shape
    seq, pos = concat_records(list(windows))
    scored = pos >= 1  # every label: position 1..L of each window
    avail = pos[scored]  # (Q,) context available to each label
    K = counts.max_order
    out = np.empty((K + 1, int(scored.sum())), dtype=np.float64)
    lower = np.full(len(avail), 1.0 / V)  # the distribution below order 0: uniform
    final = None
    for n, code in rolling_codes(seq, K + 1):
        j = n - 1  # the order: context length
        q = code[scored]  # (Q,) the (j + 1)-gram ending at each label (valid where avail >= j)
        ok = avail >= j
        g = counts.grams[j]
        c_hw = g.lookup(q)
        c_h_t, types_t = _groups(g)
        c_h, types = c_h_t.lookup(q // V), types_t.lookup(q // V)
        seen = c_h > 0
        if smoothing == "add-1/2":
            top = (c_hw + 0.5) / (c_h + V / 2)
        elif smoothing == "witten-bell":
            top = np.where(seen, (c_hw + types * lower) / np.maximum(c_h + types, 1), lower)
            lower = np.where(ok, top, lower)
        else:  # interpolated Kneser-Ney: the top order from raw counts, the orders below from continuations
            top = _kn(c_hw, c_h, types, lower, _discount(g.counts))
            if j < K:
                cont = counts.continuation[j]
                cc_t, ctypes_t = _groups(cont)
                lower = np.where(ok, _kn(cont.lookup(q), cc_t.lookup(q // V), ctypes_t.lookup(q // V), lower,
                                         _discount(cont.counts)), lower)
        final = top if final is None else np.where(ok, top, final)  # backoff: short contexts keep order < j
        out[j] = np.log(final)
    return out.reshape(K + 1, n_win, width - 1)


def _kn(c_hw, c_h, types, lower, d: float) -> np.ndarray:
    """max(c(hw) - D, 0) / c(h) + D T(h) / c(h) * P_lower(w | h'); P_lower for an unseen context."""
    safe = np.maximum(c_h, 1)
    return np.where(c_h > 0, np.maximum(c_hw - d, 0) / safe + d * types / safe * lower, lower)


@dataclass
class FloorRow:
    """One chain's score."""

    k: int  # Markov order (context length)
    smoothing: str  # one of SMOOTHERS
    val_loss: float  # mean NLL over the validation labels, nats per nucleotide


def score(counts: MarkovCounts, windows: np.ndarray, smoothers: Sequence[str] = SMOOTHERS) -> list[FloorRow]:
    """Validation loss of every order 0..max_order under every smoother (mean over all labels)."""
    rows = []
    for s in smoothers:
        lp = log_probs(counts, windows, s)  # (K + 1, n, L)
        rows += [FloorRow(k, s, float(-lp[k].mean())) for k in range(counts.max_order + 1)]
    return rows


def floor_sweep(records: Sequence[np.ndarray], windows: np.ndarray, max_order: int = 12, patience: int = 2,
                smoothers: Sequence[str] = SMOOTHERS, both_strands: bool = True,
                progress: bool = False) -> list[FloorRow]:
    """Orders 0, 1, ... until the best smoother's loss fails to improve on its best for `patience`
    consecutive orders (or max_order); the rows up to the last order examined are returned. Orders are
    counted in rounds (0..4, then up to the best + patience + 1, ...), each round counting only new orders."""
    k_hi, counts = min(max_order, 4), None
    while True:
        counts = fit(records, k_hi, both_strands, progress, previous=counts)
        rows = score(counts, windows, smoothers)
        best = _best_by_order(rows)
        k_best = int(np.argmin(best))
        if k_hi >= max_order or k_hi - k_best >= patience:
            stop = min(k_hi, k_best + patience)
            return [r for r in rows if r.k <= stop]
        k_hi = min(max_order, max(k_hi + 2, k_best + patience + 1))


def _best_by_order(rows: Sequence[FloorRow]) -> np.ndarray:
    K = max(r.k for r in rows)
    best = np.full(K + 1, np.inf)
    for r in rows:
        best[r.k] = min(best[r.k], r.val_loss)
    return best


def best_row(rows: Sequence[FloorRow]) -> FloorRow:
    """The lowest loss (the floor)."""
    return min(rows, key=lambda r: (r.val_loss, r.k))


def to_csv(rows: Sequence[FloorRow]) -> str:
    buf = io.StringIO()
    buf.write("k,smoothing,val_loss\n")
    for r in sorted(rows, key=lambda r: (SMOOTHERS.index(r.smoothing), r.k)):
        buf.write(f"{r.k},{r.smoothing},{r.val_loss:.6f}\n")
    return buf.getvalue()


def write_csv(path: str | Path, rows: Sequence[FloorRow]) -> None:
    """Atomic write (a temporary file beside it, then os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(to_csv(rows))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_csv(path: str | Path) -> list[FloorRow]:
    """Rows of a markov.csv; MarkovError naming the file (and line) when it is not one."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise MarkovError(f"{path}: cannot read ({err.strerror})") from None
    if not lines or lines[0].strip() != "k,smoothing,val_loss":
        raise MarkovError(f"{path}: not a markov.csv (expected the header k,smoothing,val_loss)")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        parts = line.split(",")
        try:
            k, s, loss = int(parts[0]), parts[1], float(parts[2])
        except (ValueError, IndexError):
            raise MarkovError(f"{path}:{i}: expected k,smoothing,val_loss, got {line!r}") from None
        if len(parts) != 3 or k < 0 or not math.isfinite(loss) or loss <= 0:
            raise MarkovError(f"{path}:{i}: bad row {line!r}")
        rows.append(FloorRow(k, s, loss))
    if not rows:
        raise MarkovError(f"{path}: no rows")
    return rows


@dataclass
class Floor:
    """The Markov chains of a sweep's data, as `python -m analysis` reads them."""

    rows: list[FloorRow]  # every (order, smoother) scored
    source: str  # the markov.csv they came from

    @property
    def best(self) -> FloorRow:
        return best_row(self.rows)


def find_floor(results_paths: Sequence[str | Path], markov_path: str | Path | None = None) -> Floor | None:
    """`markov_path` when given (MarkovError if unreadable), else the first markov.csv beside one of the
    results.csv files or in its parent folder (a sweep per family sharing one data setting keeps one file
    above them, as analysis/reference/cpu does); None when there is none. Several different files: the
    first wins, logged."""
    if markov_path is not None:
        return Floor(read_csv(markov_path), str(markov_path))
    from analysis.collect import files_beside  # collect loads pandas; the Markov counts alone need numpy

    found = files_beside(results_paths, FILENAME)
    if not found:
        return None
    floors = [Floor(read_csv(f), str(f)) for f in found]
    if len({round(f.best.val_loss, 6) for f in floors}) > 1:
        log.warning("different Markov floors in %s; using %s", ", ".join(map(str, found)), found[0])
    return floors[0]


# ------------------------------------------------------------------------------------------- CLI
DATA_KEYS = ("seq_len", "n_val_windows", "split_seed", "val_genomes", "test_genomes", "holdout", "inputs")


def data_settings(args: argparse.Namespace) -> dict:
    """DataConfig fields: the plan's data_overrides (every row must agree), then explicit flags."""
    settings: dict = {}
    if args.plan is not None:
        import csv

        try:
            with open(args.plan, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as err:
            raise MarkovError(f"--plan {args.plan}: cannot read ({err.strerror})") from None
        if not rows or "data_overrides" not in rows[0]:
            raise MarkovError(f"--plan {args.plan}: no data_overrides column (not a sweep's plan.csv)")
        found = set()
        for r in rows:  # runs may differ in batch size, never in what decides the windows
            try:
                overrides = json.loads(r["data_overrides"] or "{}")
            except json.JSONDecodeError:
                raise MarkovError(f"--plan {args.plan}: data_overrides of {r.get('run_id')} is not JSON") from None
            found.add(json.dumps({k: v for k, v in overrides.items() if k in DATA_KEYS}, sort_keys=True))
        if len(found) > 1:
            raise MarkovError(f"--plan {args.plan}: runs differ in their data settings ({' vs '.join(sorted(found))})")
        settings.update(json.loads(found.pop()))
    for key in ("seq_len", "n_val_windows", "split_seed"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.data_dir is not None:
        settings["data_dir"] = str(args.data_dir)
    return settings


def load_data(settings: dict) -> tuple[list[np.ndarray], np.ndarray]:
    """(training records, fixed validation windows (n, seq_len + 1)) exactly as a run sees them: the
    DataModule's split and `fixed_windows("val")`; the training records are those a training window can
    come from (records at least one window long, dnahnet.data.windows.WindowIndex)."""
    from dnahnet.data.module import DataConfig, GenomeDataModule
    from dnahnet.data.store import DataError

    try:
        dm = GenomeDataModule(DataConfig(**settings))
        dm.setup()
        val = dm.fixed_windows("val")
        if val is None:
            raise MarkovError("the data has no validation genome (no windows to score)")
        index = dm.train_windows.index
    except (DataError, ValueError, TypeError) as err:
        raise MarkovError(f"data: {err}") from None
    tokens = np.asarray(dm.store.tokens)
    records = [tokens[o : o + n] for o, n in zip(index.offsets, index.n_starts + index.window - 1, strict=True)]
    return records, np.asarray(val.index.gather(val.starts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.markov", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", type=Path, help="a sweep's plan.csv: its data settings (seq_len, windows, ...)")
    parser.add_argument("--data-dir", type=Path, help="genome data directory (default: as training resolves it)")
    parser.add_argument("--seq-len", type=int, help="context length (window = seq_len + 1); overrides the plan")
    parser.add_argument("--n-val-windows", type=int, help="fixed validation windows; overrides the plan")
    parser.add_argument("--split-seed", type=int, help="genome split and window seed; overrides the plan")
    parser.add_argument("--max-order", type=int, default=12, help="highest order tried (default 12)")
    parser.add_argument("--patience", type=int, default=2,
                        help="stop after this many orders without improvement (default 2)")
    parser.add_argument("--one-strand", action="store_true", help="count the forward strand only")
    parser.add_argument("--out", type=Path, required=True, help="markov.csv to write")
    parser.add_argument("--quiet", action="store_true", help="warnings only, no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        if not 0 <= args.max_order <= MAX_ORDER_CAP:
            raise MarkovError(f"--max-order {args.max_order} must lie in 0..{MAX_ORDER_CAP}")
        if args.patience < 1:
            raise MarkovError(f"--patience {args.patience} must be >= 1")
        t0 = time.perf_counter()
        records, windows = load_data(data_settings(args))
        t1 = time.perf_counter()
        rows = floor_sweep(records, windows, args.max_order, args.patience, both_strands=not args.one_strand,
                           progress=not args.quiet)
        write_csv(args.out, rows)
    except MarkovError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: --out {args.out}: {err}", file=sys.stderr)
        return 2
    b = best_row(rows)
    log.info("%s train nt, %d x %d validation windows; data %.1f s, chains %.1f s",
             f"{sum(len(r) for r in records):,}", *windows.shape, t1 - t0, time.perf_counter() - t1)
    print(f"Markov floor: {b.val_loss:.4f} nats/nt (order {b.k}, {b.smoothing}); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
