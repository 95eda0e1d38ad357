"""Inference speed: prefill latency, nucleotides/s and peak memory vs context length; decoding speed.

    python benchmarks/bench_inference.py --out bench-out                        # CPU, L = 2^10 .. 2^15
    python benchmarks/bench_inference.py --device cuda --dtype bfloat16 --max-log2 19 --out bench-gpu
    python benchmarks/bench_inference.py --quick --out /tmp/b                   # seconds (tests)

Models are given as `family:preset[:key=value,...]` (default: the matched ~3.2M-parameter models of
benchmarks/matched.py, the same as bench_models.py and gpu_check.py). Batch 1.

Prefill: --warmup untimed passes at the timed shape, then the median of --reps timed passes.
Decoding: per repetition a fresh cache, the prompt's prefill and --decode-warmup untimed steps, then
--decode-tokens timed steps; the median over --reps.
Peak memory (`peak_mem_mb`) is the real peak during the prefill passes (warm-up included): on CUDA
`torch.cuda.max_memory_allocated` (weights + activations); on CPU the measuring process's peak resident
set (VmHWM, reset just before the passes through /proc/self/clear_refs; it includes the interpreter,
torch and the weights). `activation_mb` is that peak minus what was resident (CPU) or allocated (CUDA)
just before the passes. Each CPU point runs in its own subprocess (--quick / --in-process: in this
process, where memory freed by earlier points can still be resident). Prints a table with ratios to
Transformer++, writes CSV and a figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from matched import matched_specs  # benchmarks/matched.py: a script's own folder is first on the import path

from dnahnet.registry import build_model

DEFAULT_MODELS = matched_specs()
QUICK_MODELS = ["transformer:tiny", "dnahnet:tiny", "stripedhyena:tiny"]


def parse_spec(spec: str):
    parts = spec.split(":")
    if len(parts) < 2:
        raise ValueError(f"--models {spec!r}: must be family:preset[:key=value,...]")
    family, preset = parts[0], parts[1]
    overrides = {}
    if len(parts) > 2 and parts[2]:
        for item in parts[2].split(","):
            k, _, v = item.partition("=")
            overrides[k] = v
    return family, preset, overrides


def make_model(spec: str, device: str):
    family, preset, overrides = parse_spec(spec)
    model = build_model(family, preset, **overrides).to(device).eval()
    return family, model


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MiB (Linux /proc; else ru_maxrss for both)."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
        return peak, peak


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _median(values: list[float]) -> float:
    return statistics.median(values)


def time_prefill(model, seq_len: int, device: str, dtype: torch.dtype, reps: int, warmup: int = 1) -> dict:
    """Median latency of `reps` forward passes over (1, seq_len) after `warmup` passes of the same shape;
    the real peak memory of all of them."""
    ids = torch.randint(0, 4, (1, seq_len), device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    cuda = device.startswith("cuda")
    _sync(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
        note = ""
    else:
        note = "" if _reset_peak_rss() else "peak RSS over the process lifetime (clear_refs unavailable)"
        before = _rss_mb()[0]
    with torch.no_grad(), autocast:
        for _ in range(warmup):
            model(ids)
        _sync(device)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            model(ids)
            _sync(device)
            times.append(time.perf_counter() - start)
    peak_mb = torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb()[1]
    latency = _median(times)
    return {"latency_s": latency, "nt_per_s": seq_len / latency, "peak_mem_mb": peak_mb,
            "activation_mb": max(0.0, peak_mb - before), "mem_note": note}


def time_decode(model, prompt_len: int, new_tokens: int, device: str, dtype: torch.dtype, reps: int = 3,
                warmup_tokens: int = 8) -> float:
    """Median decoding speed (tokens/s) over `reps` repetitions; each: a fresh cache, the prompt's prefill,
    `warmup_tokens` untimed steps, then `new_tokens` timed steps."""
    ids = torch.randint(0, 4, (1, prompt_len), device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    speeds = []
    with torch.no_grad(), autocast:
        for _ in range(reps):
            cache = model.init_cache(1, prompt_len + warmup_tokens + new_tokens + 1)
            tok = model.prefill(ids, cache).argmax(-1)
            for _ in range(warmup_tokens):
                tok = model.step(tok, cache).argmax(-1)
            _sync(device)
            start = time.perf_counter()
            for _ in range(new_tokens):
                tok = model.step(tok, cache).argmax(-1)
            _sync(device)
            speeds.append(new_tokens / (time.perf_counter() - start))
    return _median(speeds)


def _one_point(args) -> None:
    """Subprocess entry: one (model, length) prefill measurement, printed as JSON."""
    torch.set_num_threads(args.threads)
    _, model = make_model(args.point_model, args.device)
    res = time_prefill(model, args.point_len, args.device, getattr(torch, args.dtype), args.reps, args.warmup)
    print("RESULT " + json.dumps(res))


def measure_prefill(spec, seq_len, args) -> dict:
    if args.device != "cpu" or args.in_process:
        _, model = make_model(spec, args.device)
        try:
            return time_prefill(model, seq_len, args.device, getattr(torch, args.dtype), args.reps, args.warmup)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {"latency_s": math.nan, "nt_per_s": math.nan, "peak_mem_mb": math.nan, "note": "OOM"}
    cmd = [sys.executable, __file__, "--point-model", spec, "--point-len", str(seq_len), "--device", args.device,
           "--dtype", args.dtype, "--reps", str(args.reps), "--warmup", str(args.warmup),
           "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.point_timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    last = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
    if proc.returncode >= 0 and "out of memory" not in last.lower():  # a crash, not the OOM killer
        raise RuntimeError(f"{spec} at L={seq_len} failed (exit {proc.returncode}): {last}")
    return {"latency_s": math.nan, "nt_per_s": math.nan, "peak_mem_mb": math.nan,
            "note": f"killed (signal {-proc.returncode})" if proc.returncode < 0 else last[:120]}


def check_args(args) -> None:
    """Refuse what would fail minutes later (or print a table of nothing) before anything runs or is written:
    ValueError naming the option."""
    from dnahnet.checkpoint import resolve_device
    from dnahnet.registry import get_config

    for name, low in (("reps", 1), ("warmup", 0), ("threads", 1), ("decode_prompt", 1), ("decode_tokens", 1),
                      ("decode_warmup", 0), ("min_log2", 0), ("max_log2", 0)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if args.min_log2 > args.max_log2:
        raise ValueError(f"--min-log2 {args.min_log2} is above --max-log2 {args.max_log2}: no context length to time")
    if not args.point_timeout > 0:
        raise ValueError(f"--point-timeout must be > 0 seconds, got {args.point_timeout}")
    resolve_device(args.device, "--device")
    for spec in args.models or []:
        family, preset, overrides = parse_spec(spec)
        try:
            get_config(family, preset, None, **overrides)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"--models {spec}: {str(exc).strip(chr(39))}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a folder")
    parent = next(p for p in (out, *out.parents) if p.exists())  # the folder that would receive it
    try:  # a real attempt: os.access says yes for root on a read-only mount or sysfs
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".bench-inference-check-"))
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write in {parent} ({exc.strerror or exc})") from None


def main(argv=None) -> int:
    try:
        return _main(argv)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out on a full or read-only filesystem
        print(f"error: {exc.filename or 'bench_inference'}: {exc.strerror or exc}", file=sys.stderr)
        return 2


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None, help="family:preset[:k=v,...] specs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--min-log2", type=int, default=10)
    p.add_argument("--max-log2", type=int, default=15)
    p.add_argument("--reps", type=int, default=3, help="timed prefill passes / decoding runs (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed prefill passes at the timed shape")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--decode-prompt", type=int, default=1024)
    p.add_argument("--decode-tokens", type=int, default=256)
    p.add_argument("--decode-warmup", type=int, default=8, help="untimed decoding steps before the timed ones")
    p.add_argument("--quick", action="store_true", help="tiny models, short lengths, in-process (tests)")
    p.add_argument("--in-process", action="store_true", help="no subprocess per point (CPU memory less exact)")
    p.add_argument("--point-timeout", type=float, default=1800)
    p.add_argument("--out", default="bench-inference")
    p.add_argument("--point-model", help=argparse.SUPPRESS)
    p.add_argument("--point-len", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.point_model:
        _one_point(args)
        return 0
    check_args(args)
    if args.quick:
        args.models = args.models or QUICK_MODELS
        args.min_log2, args.max_log2 = min(args.min_log2, 7), min(args.max_log2, 8)
        args.decode_prompt, args.decode_tokens, args.decode_warmup = 32, 16, 4
        args.reps, args.warmup, args.in_process = 2, 1, True
    specs = args.models or DEFAULT_MODELS
    torch.set_num_threads(args.threads)
    import pandas as pd
    from tqdm import tqdm

    rows = []
    lengths = [2**k for k in range(args.min_log2, args.max_log2 + 1)]
    for spec in specs:
        family, model = make_model(spec, args.device)
        params = model.param_counts().total
        weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        dec = time_decode(model, args.decode_prompt, args.decode_tokens, args.device, getattr(torch, args.dtype),
                          reps=args.reps, warmup_tokens=args.decode_warmup)
        del model
        for L in tqdm(lengths, desc=spec, leave=False):
            res = measure_prefill(spec, L, args)
            rows.append({"model": spec, "family": family, "params": params, "weights_mb": weights_mb, "seq_len": L,
                         **res, "decode_nt_per_s": dec, "device": args.device, "dtype": args.dtype,
                         "warmup": args.warmup, "reps": args.reps})
    df = pd.DataFrame(rows)
    tf = df[df.family == "transformer"].set_index("seq_len")["nt_per_s"]
    df["prefill_speedup_vs_transformer"] = [r.nt_per_s / tf.get(r.seq_len, math.nan) for r in df.itertuples()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "inference.csv", index=False)
    cols = ["model", "params", "seq_len", "latency_s", "nt_per_s", "peak_mem_mb", "activation_mb",
            "decode_nt_per_s", "prefill_speedup_vs_transformer"]
    print(df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    _figure(df, out)
    return 0


def _figure(df, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for spec, g in df.groupby("model"):
        label = f"{spec} ({g.params.iloc[0] / 1e6:.1f}M)"
        axes[0].plot(g.seq_len, g.nt_per_s, marker="o", label=label)
        axes[1].plot(g.seq_len, g.peak_mem_mb, marker="o", label=label)
    for ax, ylabel in zip(axes, ["prefill throughput (nt/s)", "peak memory (MiB)"], strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context length (nt)")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Inference, batch 1, {df.device.iloc[0]} {df.dtype.iloc[0]}")
    fig.tight_layout()
    fig.savefig(out / "inference.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
