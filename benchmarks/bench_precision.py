"""fp32 vs bf16 autocast training steps on CPU, measured side by side (interleaved) in one process.

    python benchmarks/bench_precision.py --models transformer:small dnahnet:mini --seq-len 512 --batch 8

Prints tokens/s per (model, precision) and the bf16/fp32 ratio; writes CSV (--out).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from dnahnet.registry import build_model


def step_time(model, ids, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["transformer:small", "dnahnet:mini", "stripedhyena:small"])
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default="bench-precision.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import pandas as pd

    rows = []
    for spec in args.models:
        family, preset = spec.split(":")
        model = build_model(family, preset).train()
        ids = torch.randint(0, 4, (args.batch, args.seq_len + 1))
        step_time(model, ids, False), step_time(model, ids, True)  # warm-up both paths
        times = {False: [], True: []}
        for _ in range(args.rounds):  # interleaved so that machine noise hits both alike
            for bf16 in (False, True):
                times[bf16].append(step_time(model, ids, bf16))
        med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
        tokens = args.batch * args.seq_len
        rows.append({"model": spec, "params": model.param_counts().total, "fp32_tok_s": tokens / med[False],
                     "bf16_tok_s": tokens / med[True], "bf16_speedup": med[False] / med[True]})
    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    df.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
