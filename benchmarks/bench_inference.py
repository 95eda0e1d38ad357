"""Inference speed: prefill latency, nucleotides/s and peak memory vs context length; decoding speed.

    python benchmarks/bench_inference.py --out bench-out                        # CPU, L = 2^10 .. 2^15
    python benchmarks/bench_inference.py --device cuda --dtype bfloat16 --max-log2 19 --out bench-gpu
    python benchmarks/bench_inference.py --quick --out /tmp/b                   # seconds (tests)

Models are given as `family:preset[:key=value,...]` (default: matched ~3M-parameter models). Batch 1.
Each (model, length) prefill runs in its own subprocess on CPU so that its peak RSS is its own; on
CUDA peak memory is `torch.cuda.max_memory_allocated`. Prints a table with ratios to Transformer++,
writes CSV and a figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dnahnet.registry import build_model  # noqa: E402

DEFAULT_MODELS = [
    "transformer:small",
    "dnahnet:mini",
    "stripedhyena:small",
]
QUICK_MODELS = ["transformer:tiny", "dnahnet:tiny", "stripedhyena:tiny"]


def parse_spec(spec: str):
    parts = spec.split(":")
    if len(parts) < 2:
        raise SystemExit(f"error: model spec {spec!r} must be family:preset[:key=value,...]")
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


def time_prefill(model, seq_len: int, device: str, dtype: torch.dtype, reps: int) -> dict:
    ids = torch.randint(0, 4, (1, seq_len), device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    with torch.no_grad(), autocast:
        model(ids[:, : min(seq_len, 256)])  # warm-up
        _sync(device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            model(ids)
            _sync(device)
            times.append(time.perf_counter() - start)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:  # growth of this process's peak RSS during the forward passes (kB on Linux)
        peak_mb = max(0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
    latency = sorted(times)[len(times) // 2]
    return {"latency_s": latency, "nt_per_s": seq_len / latency, "peak_mem_mb": peak_mb}


def time_decode(model, prompt_len: int, new_tokens: int, device: str, dtype: torch.dtype) -> float:
    ids = torch.randint(0, 4, (1, prompt_len), device=device)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    with torch.no_grad(), autocast:
        cache = model.init_cache(1, prompt_len + new_tokens + 1)
        logits = model.prefill(ids, cache)
        tok = logits.argmax(-1)
        _sync(device)
        start = time.perf_counter()
        for _ in range(new_tokens):
            tok = model.step(tok, cache).argmax(-1)
        _sync(device)
    return new_tokens / (time.perf_counter() - start)


def _one_point(args) -> None:
    """Subprocess entry: one (model, length) prefill measurement, printed as JSON."""
    torch.set_num_threads(args.threads)
    _, model = make_model(args.point_model, args.device)
    res = time_prefill(model, args.point_len, args.device, getattr(torch, args.dtype), args.reps)
    print("RESULT " + json.dumps(res))


def measure_prefill(spec, seq_len, args) -> dict:
    if args.device != "cpu" or args.in_process:
        _, model = make_model(spec, args.device)
        try:
            return time_prefill(model, seq_len, args.device, getattr(torch, args.dtype), args.reps)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            return {"latency_s": math.nan, "nt_per_s": math.nan, "peak_mem_mb": math.nan, "note": "OOM"}
    cmd = [sys.executable, __file__, "--point-model", spec, "--point-len", str(seq_len), "--device", args.device,
           "--dtype", args.dtype, "--reps", str(args.reps), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.point_timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"latency_s": math.nan, "nt_per_s": math.nan, "peak_mem_mb": math.nan,
            "note": (proc.stderr.strip().splitlines() or ["failed"])[-1][:120]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=None, help="family:preset[:k=v,...] specs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--min-log2", type=int, default=10)
    p.add_argument("--max-log2", type=int, default=15)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--decode-prompt", type=int, default=1024)
    p.add_argument("--decode-tokens", type=int, default=256)
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
    if args.quick:
        args.models = args.models or QUICK_MODELS
        args.min_log2, args.max_log2 = min(args.min_log2, 7), min(args.max_log2, 8)
        args.decode_prompt, args.decode_tokens, args.reps, args.in_process = 32, 16, 1, True
    specs = args.models or DEFAULT_MODELS
    torch.set_num_threads(args.threads)
    import pandas as pd
    from tqdm import tqdm

    rows = []
    lengths = [2**k for k in range(args.min_log2, args.max_log2 + 1)]
    for spec in specs:
        family, model = make_model(spec, args.device)
        params = model.param_counts().total
        dec = time_decode(model, args.decode_prompt, args.decode_tokens, args.device, getattr(torch, args.dtype))
        del model
        for L in tqdm(lengths, desc=spec, leave=False):
            res = measure_prefill(spec, L, args)
            rows.append({"model": spec, "family": family, "params": params, "seq_len": L, **res,
                         "decode_nt_per_s": dec, "device": args.device, "dtype": args.dtype})
    df = pd.DataFrame(rows)
    tf = df[df.family == "transformer"].set_index("seq_len")["nt_per_s"]
    df["prefill_speedup_vs_transformer"] = [r.nt_per_s / tf.get(r.seq_len, math.nan) for r in df.itertuples()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "inference.csv", index=False)
    cols = ["model", "params", "seq_len", "latency_s", "nt_per_s", "peak_mem_mb", "decode_nt_per_s",
            "prefill_speedup_vs_transformer"]
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
    for ax, ylabel in zip(axes, ["prefill throughput (nt/s)", "peak memory (MiB)"]):
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
