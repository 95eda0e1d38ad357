"""Training throughput of whole language models: forward + backward tokens/s of StripedHyena 2 beside
Transformer++ and dnaHNet at matched parameter counts (~3.2M, benchmarks/matched.py), over context lengths.

    PYTHONPATH=. python benchmarks/bench_models.py --quick --out bench_models.csv
    PYTHONPATH=. python benchmarks/bench_models.py --lengths 1024 2048 4096 8192 16384 --out bench_models.csv
    PYTHONPATH=. python benchmarks/bench_models.py --device cuda --dtype bfloat16 --batch 8 --out gpu.csv

Each row is the median over --repeats timed iterations (after --warmup untimed ones of the same shape) of
one forward pass, the cross-entropy loss and one backward pass on a (batch, L) window of random
nucleotides (seeded by L); tokens/s = batch * L / median seconds. --dtype bfloat16 runs under autocast
with float32 weights, as in training. The analytic training FLOPs per token (dnahnet.flops convention)
give an achieved FLOP rate beside it: for dnaHNet at the compression the timed passes actually had
(`measured_flops_per_token` from their selection rates, column `selection_rates`), not at the target
ratios (`train_flops_per_token` keeps the target-ratio count). A row whose previous length took longer
than --max-seconds per iteration, or that runs out of memory, prints "skipped" / "oom": nothing is
extrapolated. A family that does not build is an error. Prints a table and writes CSV (--out, written
atomically).
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import statistics
import sys
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from matched import MATCHED  # benchmarks/matched.py: a script's own folder is first on the import path

import dnahnet
from dnahnet.fileio import atomic_write_text

log = logging.getLogger("bench_models")

MODELS = MATCHED  # family -> (preset, overrides): the matched ~3.2M models (params printed at run time)
DEFAULT_LENGTHS = (1024, 2048, 4096, 8192, 16384)
QUICK_LENGTHS = (1024, 2048)
FIELDS = ("model", "params", "seq_len", "batch", "device", "dtype", "status", "warmup", "repeats", "seconds",
          "tokens_per_s", "train_flops_per_token", "measured_flops_per_token", "selection_rates",
          "achieved_gflops", "peak_mem_mib")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS), help="families to run")
    p.add_argument("--lengths", nargs="+", type=int, default=None,
                   help=f"context lengths L (default {' '.join(map(str, DEFAULT_LENGTHS))}; --quick: "
                        f"{' '.join(map(str, QUICK_LENGTHS))})")
    p.add_argument("--batch", type=int, default=1, help="windows per batch")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="autocast dtype")
    p.add_argument("--repeats", type=int, default=3, help="timed iterations per row (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed iterations per row")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="skip longer lengths of a model once one iteration took longer than this")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="L = 1k and 2k, 1 warm-up, 1 repeat (a smoke run)")
    p.add_argument("--out", default=None, help="CSV path")
    args = p.parse_args(argv)
    if args.quick:
        args.lengths, args.repeats, args.warmup = args.lengths or list(QUICK_LENGTHS), 1, 1
    args.lengths = args.lengths or list(DEFAULT_LENGTHS)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 0 or any(L < 1 for L in args.lengths):
        p.error("--batch, --repeats and --lengths must be >= 1, --warmup >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device}: CUDA is not available")
    return args


def build(family: str, device: torch.device):
    preset, overrides = MODELS[family]
    torch.manual_seed(0)
    return dnahnet.build_model(family, preset, **overrides).to(device).train()


def time_step(model, ids: torch.Tensor, autocast, device: torch.device) -> tuple[float, dict[str, float]]:
    """Seconds for forward + loss + backward, and the forward's metrics (dnaHNet: selection rates)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    with autocast:
        out = model(ids[:, :-1])
        loss = F.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
    loss.backward()
    sync()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed, {k: float(v) for k, v in out.metrics.items()}


def run(args) -> list[dict]:
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    rows = []
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    todo = [(m, L) for m in args.models for L in args.lengths]
    bar = tqdm(total=len(todo), desc="bench", file=sys.stderr) if tqdm else None
    for family in args.models:
        model = build(family, device)
        params = model.param_counts().total
        too_slow = False
        for L in args.lengths:
            row = dict(model=family, params=params, seq_len=L, batch=args.batch, device=str(device), dtype=args.dtype,
                       warmup=args.warmup, repeats=args.repeats)
            if too_slow:
                row["status"] = "skipped"
                rows.append(row)
                if bar:
                    bar.update(1)
                continue
            autocast = torch.autocast(device.type, dtype=dtype) if dtype != torch.float32 else nullcontext()
            ids = torch.randint(0, 4, (args.batch, L + 1), generator=torch.Generator().manual_seed(L)).to(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            try:
                for _ in range(args.warmup):
                    time_step(model, ids, autocast, device)
                timed = [time_step(model, ids, autocast, device) for _ in range(args.repeats)]
            except torch.OutOfMemoryError:
                model.zero_grad(set_to_none=True)
                torch.cuda.empty_cache() if device.type == "cuda" else None
                row["status"] = "oom"
                rows.append(row)
                too_slow = True
                if bar:
                    bar.update(1)
                continue
            times = [t for t, _ in timed]
            metrics = timed[-1][1]  # same weights and input in every pass: the same boundaries
            seconds = statistics.median(times)
            measured = model.measured_flops_per_token(L, metrics).training
            rates = [metrics[k] for k in sorted(metrics) if k.endswith("/selection_rate")]
            row.update(
                status="ok", seconds=seconds, tokens_per_s=args.batch * L / seconds,
                train_flops_per_token=model.flops_per_token(L).training, measured_flops_per_token=measured,
                selection_rates="/".join(f"{r:.4f}" for r in rates),
                achieved_gflops=measured * args.batch * L / seconds / 1e9,
                peak_mem_mib=torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
            )
            rows.append(row)
            too_slow = max(times) > args.max_seconds
            if bar:
                bar.update(1)
        del model
    if bar:
        bar.close()
    return rows


def format_table(rows: list[dict]) -> str:
    header = f"{'model':<13} {'params':>9} {'L':>6} {'status':<10} {'s/iter':>9} {'tokens/s':>10} {'GFLOP/s':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        ok = r.get("status") == "ok"
        lines.append(
            f"{r['model']:<13} {r.get('params') or 0:>9,} {r['seq_len']:>6} {r.get('status', ''):<10} "
            + (f"{r['seconds']:>9.3f} {r['tokens_per_s']:>10,.0f} {r['achieved_gflops']:>8.1f}" if ok else "")
        )
    return "\n".join(lines)


def write_csv(path: str, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in FIELDS})
    atomic_write_text(path, buf.getvalue())


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    log.info("device %s, dtype %s, batch %d, lengths %s, threads %d", args.device, args.dtype, args.batch,
             args.lengths, torch.get_num_threads())
    rows = run(args)
    print(format_table(rows))
    if args.out:
        write_csv(args.out, rows)
        log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
