"""Forward+backward speed of the sequence mixers: Mamba-2 (chunked SSD), Mamba-2 with the naive
sequential scan, Mamba-2 with the CUDA kernels (when usable) and causal attention.

    PYTHONPATH=. python benchmarks/bench_layers.py --threads 1 --out bench_layers.csv
    PYTHONPATH=. python benchmarks/bench_layers.py --device cuda --dtype bfloat16 --lengths 1024 4096 16384 65536

Each row is the median over --repeats timed iterations, after --warmup untimed ones of the same shape,
of one forward and one backward pass of one layer on a (batch, L, d_model) input: the same protocol for
every layer, the naive scan included, so the printed chunked-vs-naive ratios compare like with like
(columns warmup, repeats). --dtype bfloat16 runs under autocast with float32 weights, as in training.
The naive scan runs only up to --naive-max-len (it is O(L) Python steps); longer lengths print
"skipped" -- nothing is extrapolated. --quick: a small layer at L = 64, 128 (a smoke run, seconds). Prints a table and
writes CSV (--out). Columns: fwd_bwd_ms (wall clock), tokens_per_s (batch * L / wall time), cpu_ms
(process CPU time: on a shared CPU with --threads 1 it is the figure that other jobs disturb least;
meaningless for CUDA, where the host waits), peak_mem_mib (CUDA only).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from unittest import mock

import torch
from torch import nn

from dnahnet import kernels
from dnahnet.nn import mamba2 as mamba2_module
from dnahnet.nn.attention import Attention
from dnahnet.nn.mamba2 import Mamba2
from dnahnet.nn.ssd import ssd_naive

log = logging.getLogger("bench_layers")


def make_attention(d_model: int, n_heads: int) -> tuple[nn.Module, str]:
    return Attention(d_model, n_heads), "dnahnet.nn.attention.Attention"


def naive_scan(x, dt, A, B, C, chunk_size=256, D=None, initial_state=None):
    """ssd_chunked's signature, sequential recurrence inside (chunk_size ignored)."""
    return ssd_naive(x, dt, A, B, C, D=D, initial_state=initial_state)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fwd_bwd(layer: nn.Module, x: torch.Tensor, amp_dtype, warmup: int, repeats: int,
                 patch_naive: bool) -> tuple[float, float, float | None]:
    """Median wall seconds and median process-CPU seconds of forward+backward, and peak CUDA
    memory in MiB (None on CPU)."""
    device = x.device
    ctx = mock.patch.object(mamba2_module, "ssd_chunked", naive_scan) if patch_naive else nullcontext()
    amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
    times, cpu_times = [], []
    with ctx:
        for i in range(warmup + repeats):
            if device.type == "cuda" and i == warmup:
                torch.cuda.reset_peak_memory_stats(device)
            layer.zero_grad(set_to_none=True)
            xi = x.detach().requires_grad_(True)
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            with amp:
                y = layer(xi)
            y.float().square().mean().backward()
            sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return statistics.median(times), statistics.median(cpu_times), peak


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--d-state", type=int, default=128, help="Mamba-2 state size (mamba_ssm default 128)")
    ap.add_argument("--headdim", type=int, default=64)
    ap.add_argument("--chunk-size", type=int, default=256)
    ap.add_argument("--attn-heads", type=int, default=None, help="default: d_model // 64")
    ap.add_argument("--naive-max-len", type=int, default=4096,
                    help="longest L for the naive sequential scan (longer: skipped)")
    ap.add_argument("--layers", nargs="+", default=["mamba2-chunked", "mamba2-naive", "mamba2-kernel", "attention"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="bfloat16 = autocast with float32 weights")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_layers.csv", help="CSV path")
    ap.add_argument("--quick", action="store_true", help="d_model 32, d_state 16, L 64 and 128 (smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.lengths, args.d_model, args.d_state, args.headdim, args.chunk_size = [64, 128], 32, 16, 16, 32
        args.warmup, args.repeats = 1, 2
    if args.warmup < 0 or args.repeats < 1:
        ap.error("--warmup must be >= 0 and --repeats >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False")
    amp_dtype = torch.bfloat16 if args.dtype == "bfloat16" else None
    heads = args.attn_heads or max(1, args.d_model // 64)
    torch.manual_seed(args.seed)

    kernel_ok = not kernels.missing_packages("mamba2") and device.type == "cuda"
    builders = {
        "mamba2-chunked": lambda: (Mamba2(args.d_model, d_state=args.d_state, headdim=args.headdim,
                                          chunk_size=args.chunk_size, backend="torch"), "torch, chunked SSD"),
        "mamba2-naive": lambda: (Mamba2(args.d_model, d_state=args.d_state, headdim=args.headdim,
                                        backend="torch"), "torch, sequential scan"),
        "mamba2-kernel": lambda: (Mamba2(args.d_model, d_state=args.d_state, headdim=args.headdim,
                                         chunk_size=args.chunk_size, backend="kernel"), "mamba_ssm kernels"),
        "attention": lambda: make_attention(args.d_model, heads),
    }
    unknown = set(args.layers) - set(builders)
    if unknown:
        ap.error(f"unknown --layers {sorted(unknown)}; choose from {sorted(builders)}")

    rows = []
    print(f"device={device} dtype={args.dtype} d_model={args.d_model} batch={args.batch} "
          f"d_state={args.d_state} headdim={args.headdim} chunk={args.chunk_size} attn_heads={heads} "
          f"threads={torch.get_num_threads()}", flush=True)
    for name in args.layers:
        layer, impl = builders[name]()
        layer = layer.to(device)
        for L in args.lengths:
            row = dict(layer=name, impl=impl, seq_len=L, batch=args.batch, d_model=args.d_model,
                       device=str(device), dtype=args.dtype, status="ok", warmup=args.warmup,
                       repeats=args.repeats, fwd_bwd_ms="", tokens_per_s="", cpu_ms="", peak_mem_mib="")
            if name == "mamba2-naive" and L > args.naive_max_len:
                row["status"] = f"skipped (L > --naive-max-len {args.naive_max_len})"
            elif name == "mamba2-kernel" and not kernel_ok:
                row["status"] = "skipped (kernels unavailable or not on CUDA)"
            else:
                x = torch.randn(args.batch, L, args.d_model, device=device)
                try:
                    sec, cpu_sec, peak = time_fwd_bwd(layer, x, amp_dtype, args.warmup, args.repeats,
                                                      patch_naive=name == "mamba2-naive")
                    row.update(fwd_bwd_ms=f"{sec * 1e3:.2f}", tokens_per_s=f"{args.batch * L / sec:.0f}",
                               cpu_ms=f"{cpu_sec * 1e3:.2f}",
                               peak_mem_mib="" if peak is None else f"{peak:.0f}")
                except torch.OutOfMemoryError:
                    row["status"] = "out of memory"
                    torch.cuda.empty_cache()
            rows.append(row)
            print(f"  {name:15s} L={L:7d} {row['status']:>4s} {row['fwd_bwd_ms']:>10s} ms "
                  f"{row['tokens_per_s']:>10s} tok/s", flush=True)

    print_table(rows)
    write_csv(rows, args.out)
    print(f"wrote {args.out}")
    return 0


def print_table(rows: list[dict]) -> None:
    cols = ["layer", "seq_len", "fwd_bwd_ms", "tokens_per_s", "cpu_ms", "peak_mem_mib", "status"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print()
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(widths[c]) for c in cols))
    # speed-up of the chunked scan over the naive scan, and chunked time per token vs L
    by = {(r["layer"], r["seq_len"]): r for r in rows if r["status"] == "ok"}
    for (layer, L), r in sorted(by.items()):
        if layer == "mamba2-chunked" and ("mamba2-naive", L) in by:
            naive = by[("mamba2-naive", L)]
            ratio = float(naive["fwd_bwd_ms"]) / float(r["fwd_bwd_ms"])
            cpu_ratio = float(naive["cpu_ms"]) / float(r["cpu_ms"])
            print(f"chunked vs naive at L={L}: {ratio:.1f}x faster (wall), {cpu_ratio:.1f}x (process CPU time)")


def write_csv(rows: list[dict], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
