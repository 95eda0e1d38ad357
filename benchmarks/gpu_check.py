"""GPU checks in one script: the CUDA paths against the CPU reference, and bf16 training throughput.

    python benchmarks/gpu_check.py --out gpu-out             # ~minutes on one GPU
    python benchmarks/gpu_check.py --out gpu-out --quick     # shorter training benchmark

1. Correctness (OUT/gpu_check.csv, one row per check: check, max_abs_err, tol, ok, detail):
   - each family (tiny preset): the same weights on CUDA (float32) and on CPU give the same logits on
     `--check-len` nucleotides (default 8192: dnaHNet's windowed attention, window 1023 in its outer
     stages, sees ~1/3 of them after the first chunker: more than 2 x (window + 1), so the blocked
     sliding-window path runs -- the row's detail says how many positions windowed attention saw);
   - each family: step-by-step decoding on CUDA equals the CUDA forward over `--decode-len` positions
     (default 4096: past the window, so the rolling KV cache wraps);
   - the mixers: Mamba-2 (pure-PyTorch path, and the mamba_ssm kernels when importable) and sliding-window
     attention, CUDA vs CPU, outputs and input gradients, at --check-len.
2. bf16 autocast training steps (forward + backward + AdamW) at --seq-len: tokens/s, peak memory and
   whether the loss stays finite, per family at the matched ~3.2M sizes of benchmarks/matched.py
   (OUT/gpu_train.csv).
Prints both tables; exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from pathlib import Path

import torch
from matched import MATCHED  # benchmarks/matched.py: a script's own folder is first on the import path

from dnahnet.nn.attention import Attention
from dnahnet.registry import build_model

FAMILIES = MATCHED  # the training benchmark's models
CHECK_FAMILIES = {family: ("tiny", {}) for family in MATCHED}  # the correctness checks' models
TOL = 1e-3  # max |difference| of float32 logits / outputs (TF32 off)
CHECK_LEN = 8192  # correctness checks' length: dnaHNet's windowed attention sees ~L/3 > 2 x (1023 + 1)
DECODE_LEN = 4096  # positions decoded step by step: ~L/3 > 1023 + 1 steps of its windowed attention


def windowed_attention(model: torch.nn.Module) -> list[Attention]:
    return [m for m in model.modules() if isinstance(m, Attention) and m.window is not None]


class _WindowProbe:
    """Counts, per windowed attention module, the longest input of a forward and the number of steps."""

    def __init__(self, model: torch.nn.Module):
        self.modules = windowed_attention(model)
        self.longest = 0
        self.counts = [0] * len(self.modules)  # decoding steps per module
        self._hooks = [m.register_forward_pre_hook(self._pre) for m in self.modules]
        for i, m in enumerate(self.modules):
            m.step = self._counting(m.step, i)

    @property
    def steps(self) -> int:
        """Most decoding steps any one windowed attention module took."""
        return max(self.counts, default=0)

    def reset_steps(self) -> None:
        self.counts = [0] * len(self.modules)

    def _pre(self, module, args):
        self.longest = max(self.longest, int(args[0].shape[1]))

    def _counting(self, step, index: int):
        def wrapped(*a, **k):
            self.counts[index] += 1
            return step(*a, **k)

        return wrapped

    def window(self) -> int | None:
        return max((m.window for m in self.modules), default=None)

    def close(self):
        for h in self._hooks:
            h.remove()
        for m in self.modules:
            del m.step


def _row(results: list, check: str, err: float, tol: float, detail: str = "", ok: bool = True):
    results.append({"check": check, "max_abs_err": err, "tol": tol, "ok": bool(ok and err <= tol), "detail": detail})


def check_family(results: list, family: str, preset: str, overrides: dict, device: str, check_len: int,
                 decode_len: int) -> None:
    """CUDA (device) vs CPU logits at check_len; step decoding vs the forward over decode_len positions
    (at most 512 for a model without windowed attention: nothing wraps there)."""
    torch.manual_seed(0)
    model = build_model(family, preset, **overrides).eval()
    if not windowed_attention(model):
        decode_len = min(decode_len, 512)
    ids = torch.randint(0, 4, (1, check_len), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(ids).logits
        dev_model = model.to(device)
        probe = _WindowProbe(dev_model)
        out = dev_model(ids.to(device)).logits.cpu()
        seen = probe.longest
        window = probe.window()
        detail = "no windowed attention" if window is None else (
            f"windowed attention (window {window}) saw up to {seen} positions; blocked path "
            f"{'ran' if seen > 2 * (window + 1) else 'did NOT run'}")
        _row(results, f"{family} {preset}: {device} fp32 vs cpu logits, L={check_len}", (out - ref).abs().max().item(),
             TOL, detail, ok=window is None or seen > 2 * (window + 1))

        probe.reset_steps()
        cache = dev_model.init_cache(1, decode_len)
        steps = torch.stack([dev_model.step(ids[:, t].to(device), cache) for t in range(decode_len)], 1).cpu()
        full = dev_model(ids[:, :decode_len].to(device)).logits.cpu()
        detail = "no windowed attention" if window is None else (
            f"windowed attention took {probe.steps} steps (window {window}): cache "
            f"{'wrapped' if probe.steps > window + 1 else 'did NOT wrap'}")
        _row(results, f"{family} {preset}: {device} step decoding vs forward, {decode_len} positions",
             (steps - full).abs().max().item(), TOL, detail,
             ok=window is None or probe.steps > window + 1)
        probe.close()


def check_mixers(results: list, device: str, check_len: int, window: int = 1023, d_model: int = 128) -> None:
    """Mamba-2 and sliding-window attention: device vs CPU outputs and input gradients."""
    from dnahnet import kernels
    from dnahnet.nn.mamba2 import Mamba2

    def mamba(backend):
        return lambda: Mamba2(d_model, d_state=64, headdim=32, chunk_size=256, backend=backend)

    def attention():
        return Attention(d_model, max(1, d_model // 64), window=window)

    builders = {"mamba2 torch": (mamba("torch"), mamba("torch")),  # name -> (CPU reference, device layer)
                f"attention window {window}": (attention, attention)}
    if device.startswith("cuda") and not kernels.missing_packages("mamba2"):
        builders["mamba2 kernel"] = (mamba("torch"), mamba("kernel"))
    for name, (build_ref, build) in builders.items():
        torch.manual_seed(0)
        cpu_layer = build_ref()
        x = torch.randn(1, check_len, d_model, generator=torch.Generator().manual_seed(2))
        xc = x.clone().requires_grad_(True)
        yc = cpu_layer(xc)
        yc.square().mean().backward()
        dev_layer = build().to(device)
        dev_layer.load_state_dict(cpu_layer.state_dict())
        xd = x.to(device).requires_grad_(True)
        yd = dev_layer(xd)
        yd.square().mean().backward()
        scale = yc.abs().max().item() or 1.0
        _row(results, f"{name}: {device} vs cpu output, L={check_len}", (yd.detach().cpu() - yc.detach()).abs().max().item(),
             TOL * max(1.0, scale), "mamba_ssm kernels vs the pure-PyTorch reference" if "kernel" in name else "")
        gscale = xc.grad.abs().max().item() or 1.0
        _row(results, f"{name}: {device} vs cpu input gradient", (xd.grad.cpu() - xc.grad).abs().max().item(),
             TOL * max(1.0, gscale) * (20 if "kernel" in name else 1))


def check_correctness(results: list, device: str = "cuda", check_len: int = CHECK_LEN, decode_len: int = DECODE_LEN,
                      families: dict | None = None, mixer_window: int = 1023) -> None:
    for family, (preset, overrides) in (families or CHECK_FAMILIES).items():
        try:
            check_family(results, family, preset, overrides, device, check_len, decode_len)
        except Exception as exc:  # report it as a failed check and go on with the other families
            results.append({"check": f"{family} {preset}: correctness", "max_abs_err": math.nan, "tol": TOL,
                            "ok": False, "detail": f"{type(exc).__name__}: {exc}"})
            traceback.print_exc()
    try:
        check_mixers(results, device, check_len, mixer_window)
    except Exception as exc:
        results.append({"check": "mixers", "max_abs_err": math.nan, "tol": TOL, "ok": False,
                        "detail": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()


def bench_training(rows: list, seq_len: int, batch: int, steps: int, warmup: int = 2):
    for family, (preset, over) in FAMILIES.items():
        try:
            torch.manual_seed(0)
            model = build_model(family, preset, **over).cuda().train()
            opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
            ids = torch.randint(0, 4, (batch, seq_len + 1), device="cuda")
            torch.cuda.reset_peak_memory_stats()
            losses = []
            for i in range(steps + warmup):
                if i == warmup:
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
                "batch": batch, "warmup_steps": warmup, "timed_steps": steps,
                "tokens_per_s": steps * batch * seq_len / elapsed,
                "peak_mem_GiB": torch.cuda.max_memory_allocated() / 2**30,
                "loss_first": losses[0], "loss_last": losses[-1], "finite": all(math.isfinite(v) for v in losses),
            })
            del model, opt
            torch.cuda.empty_cache()
        except Exception as exc:
            rows.append({"family": family, "error": f"{type(exc).__name__}: {exc}"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu-out")
    p.add_argument("--seq-len", type=int, default=8192, help="training benchmark context")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--check-len", type=int, default=CHECK_LEN, help="correctness checks' sequence length")
    p.add_argument("--decode-len", type=int, default=DECODE_LEN, help="positions decoded step by step per family")
    p.add_argument("--quick", action="store_true", help="training benchmark at 2048 x 2, 3 steps")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: gpu_check needs a CUDA device", file=sys.stderr)
        return 2
    if args.quick:
        args.seq_len, args.batch, args.steps = 2048, 2, 3
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 comparisons against the CPU
    torch.backends.cudnn.allow_tf32 = False
    print(torch.__version__, torch.cuda.get_device_name(0), flush=True)
    from dnahnet import kernels

    print("kernels:", kernels.describe(), flush=True)
    import pandas as pd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list = []
    check_correctness(results, "cuda", args.check_len, args.decode_len)
    checks = pd.DataFrame(results)
    checks.to_csv(out / "gpu_check.csv", index=False)
    print(checks.to_string(index=False), flush=True)
    rows: list = []
    bench_training(rows, args.seq_len, args.batch, args.steps)
    train = pd.DataFrame(rows)
    train.to_csv(out / "gpu_train.csv", index=False)
    print(train.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    print(f"wrote {out / 'gpu_check.csv'} and {out / 'gpu_train.csv'}")
    return 0 if bool(checks["ok"].all()) else 1


if __name__ == "__main__":
    sys.exit(main())
