"""GPU checks in one script: the CUDA paths against the CPU reference, and bf16 training throughput.

    python benchmarks/gpu_check.py --out gpu-out

1. Correctness: for each family (and the Mamba-2 / attention mixers) the same weights on CUDA (float32)
   and on CPU give the same logits; step decoding on CUDA equals the CUDA forward.
2. bf16 autocast training steps (forward + backward + AdamW) at context 8192: tokens/s and peak memory
   per family at ~matched parameter counts, and whether the loss stays finite.
Writes gpu_check.csv / gpu_check.json and prints tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from dnahnet.registry import build_model  # noqa: E402

FAMILIES = {
    "transformer": ("small", {}),
    "dnahnet": ("mini", {}),
    "stripedhyena": ("small", {}),
}


def check_correctness(results: list):
    torch.manual_seed(0)
    for family in FAMILIES:
        try:
            model = build_model(family, "tiny").eval()
            ids = torch.randint(0, 4, (2, 300))
            with torch.no_grad():
                ref = model(ids).logits
                gpu_model = model.to("cuda")
                out = gpu_model(ids.cuda()).logits.cpu()
                cache = gpu_model.init_cache(2, 64)
                steps = torch.stack([gpu_model.step(ids[:, t].cuda(), cache) for t in range(64)], 1).cpu()
                full64 = gpu_model(ids[:, :64].cuda()).logits.cpu()
            err = (out - ref).abs().max().item()
            step_err = (steps - full64).abs().max().item()
            results.append({"check": f"{family} tiny: cuda fp32 vs cpu logits", "max_abs_err": err, "ok": err < 1e-3})
            results.append({"check": f"{family} tiny: cuda step vs cuda forward", "max_abs_err": step_err,
                            "ok": step_err < 1e-3})
        except Exception as exc:  # report and go on: one failing family must not hide the others
            results.append({"check": f"{family}: correctness", "ok": False, "error": f"{type(exc).__name__}: {exc}"})


def bench_training(rows: list, seq_len: int, batch: int, steps: int):
    for family, (preset, over) in FAMILIES.items():
        try:
            torch.manual_seed(0)
            model = build_model(family, preset, **over).cuda().train()
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
            ids = torch.randint(0, 4, (batch, seq_len + 1), device="cuda")
            torch.cuda.reset_peak_memory_stats()
            losses = []
            for i in range(steps + 2):
                if i == 2:
                    torch.cuda.synchronize()
                    start = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = model(ids[:, :-1])
                    loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
                    if out.aux_loss is not None:
                        loss = loss + out.aux_loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            rows.append({
                "family": family, "preset": preset, "params_M": model.param_counts().total / 1e6, "seq_len": seq_len,
                "batch": batch, "tokens_per_s": steps * batch * seq_len / elapsed,
                "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2**30,
                "loss_first": losses[0], "loss_last": losses[-1], "finite": all(map(lambda v: v == v, losses)),
            })
            del model, opt
            torch.cuda.empty_cache()
        except Exception as exc:
            rows.append({"family": family, "error": f"{type(exc).__name__}: {exc}"})


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="gpu-out")
    p.add_argument("--seq-len", type=int, default=8192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args()
    assert torch.cuda.is_available(), "needs CUDA"
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    from dnahnet import kernels

    print("kernels:", kernels.describe(), flush=True)
    results, rows = [], []
    check_correctness(results)
    for r in results:
        print(r, flush=True)
    bench_training(rows, args.seq_len, args.batch, args.steps)
    import pandas as pd

    df = pd.DataFrame(rows)
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "gpu_train.csv", index=False)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
