"""Our pure-PyTorch Mamba-2 against Hugging Face transformers' `Mamba2Mixer` on its PyTorch path, on the
same weights: forward + backward time, side by side.

    pip install transformers   # an optional benchmark dependency (the `bench` extra)
    python benchmarks/bench_mamba_hf.py --out bench_mamba_hf.csv [--batch 4 --seq-len 2048 --d-model 64]

Both layers get the mamba_ssm defaults (d_state 128, head dim 64, expand 2, chunk 256, one group) and our
layer's initial weights (the parameter names are the same), and are checked to agree (max |dy| printed)
before timing. Without mamba_ssm/causal_conv1d, transformers runs its reference PyTorch implementation,
as our layer does on CPU. One timed pass is forward, y.square().mean() and backward; the layers alternate
(ours, HF, ours, ...) over --repeats passes after --warmup untimed ones each, so a busy machine slows both
alike. Prints the median ms and the ratio; writes CSV atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from dnahnet.fileio import atomic_write_text
from dnahnet.nn.mamba2 import Mamba2


def hf_mixer(d_model: int, d_state: int, headdim: int, expand: int, chunk: int):
    try:
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
    except ImportError:
        raise SystemExit("error: this benchmark needs Hugging Face transformers: pip install transformers") from None
    config = Mamba2Config(hidden_size=d_model, state_size=d_state, expand=expand, head_dim=headdim,
                          num_heads=expand * d_model // headdim, n_groups=1, conv_kernel=4, chunk_size=chunk,
                          use_bias=False, use_conv_bias=True, time_step_limit=(0.0, float("inf")))
    return Mamba2Mixer(config, layer_idx=0)


def timed_pass(layer: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    layer(x).square().mean().backward()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq-len", type=int, default=2048)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--d-state", type=int, default=128)
    p.add_argument("--headdim", type=int, default=64)
    p.add_argument("--chunk", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="bench_mamba_hf.csv")
    args = p.parse_args(argv)
    if min(args.batch, args.seq_len, args.d_model, args.warmup, args.repeats, args.threads) < 1:
        print("error: sizes, --warmup, --repeats and --threads must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    ours = Mamba2(args.d_model, d_state=args.d_state, headdim=args.headdim, expand=2, chunk_size=args.chunk,
                  backend="torch").train()
    hf = hf_mixer(args.d_model, args.d_state, args.headdim, 2, args.chunk).train()
    hf.load_state_dict(ours.state_dict())
    x = torch.randn(args.batch, args.seq_len, args.d_model, requires_grad=True)
    diff = (ours(x) - hf(x)).abs().max().item()
    layers = {"ours (dnahnet.nn.Mamba2, torch)": ours, "transformers Mamba2Mixer (torch)": hf}
    times: dict[str, list[float]] = {name: [] for name in layers}
    for _ in range(args.warmup):
        for layer in layers.values():
            timed_pass(layer, x)
    for _ in range(args.repeats):
        for name, layer in layers.items():
            times[name].append(timed_pass(layer, x))
    medians = {name: statistics.median(t) for name, t in times.items()}
    hf_ms = medians["transformers Mamba2Mixer (torch)"]
    print(f"B={args.batch} L={args.seq_len} d_model={args.d_model} d_state={args.d_state} headdim={args.headdim} "
          f"chunk={args.chunk}, forward + backward, median of {args.repeats}; outputs agree to {diff:.1e}")
    rows = []
    for name, median in medians.items():
        rows.append({"layer": name, "batch": args.batch, "seq_len": args.seq_len, "d_model": args.d_model,
                     "ms": 1e3 * median, "speedup_vs_hf": hf_ms / median, "max_abs_diff": diff})
        print(f"  {name:<36} {1e3 * median:8.1f} ms   {hf_ms / median:5.2f}x the HF layer's speed")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(args.out), buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
