"""GPU checks in one script: the CUDA paths against the CPU reference, and bf16 training throughput.

    python benchmarks/gpu_check.py --out gpu-out             # ~minutes on one GPU
    python benchmarks/gpu_check.py --out gpu-out --quick     # shorter training benchmark
    python benchmarks/gpu_check.py --out smoke --cpu-smoke   # no GPU: the same rows at tiny sizes, GPU-only ones skipped

Runs from a clone without installation (it puts the repository root on the import path).

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
   (OUT/gpu_train.csv), with MFU against the device's peak bf16 FLOP/s.
3. More rows of OUT/gpu_check.csv: decoding under bf16 autocast per family; the fused kernels under bf16
   autocast, forward and input gradients (when they import); peak memory of one training step of each
   family's ~100M preset at the micro-batch the planner picks (sweeps/memory.py); the Lightning path, a
   short real `python -m dnahnet.train` per family with a resume from its middle checkpoint, and the first
   family with ddp and fsdp2 on every GPU present. OUT/profile_dnahnet_step.txt: a torch.profiler table of
   one dnaHNet step.
Prints the tables; exits 1 when any row fails (training rows included), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a clone, not installed: the script's folder alone is on the path
    sys.path.insert(1, str(REPO))

import torch  # noqa: E402
from matched import MATCHED  # noqa: E402  (benchmarks/matched.py: the script's own folder is first on the path)

from dnahnet.nn.attention import Attention  # noqa: E402
from dnahnet.registry import build_model  # noqa: E402

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


def _skip(results: list, check: str, why: str) -> None:
    results.append({"check": check, "max_abs_err": math.nan, "tol": math.nan, "ok": True, "detail": f"skipped: {why}"})


def _guard(results: list, check: str, fn) -> None:
    """Run one group of rows; an exception is a failed row (the script goes on and exits 1)."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - reported as a failed row
        results.append({"check": check, "max_abs_err": math.nan, "tol": math.nan, "ok": False,
                        "detail": f"{type(exc).__name__}: {exc}"})
        traceback.print_exc()


def check_autocast_decoding(results: list, device: str, length: int = 96, families=tuple(CHECK_FAMILIES)) -> None:
    """Each family (tiny): step decoding under bf16 autocast equals the forward under autocast (bf16
    tolerance); the caches are made under autocast, as `generate` makes them."""
    for family in families:
        torch.manual_seed(0)
        model = build_model(family, "tiny").to(device).eval()
        ids = torch.randint(0, 4, (2, length), device=device)
        with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            full = model(ids).logits.float()
            cache = model.init_cache(2, length)
            steps = torch.stack([model.step(ids[:, t], cache) for t in range(length)], 1).float()
        _row(results, f"{family} tiny: {device} bf16-autocast decoding vs forward, {length} positions",
             (steps - full).abs().max().item(), 0.15, "bf16: tolerance 0.15 on logits")


def check_bf16_kernels(results: list) -> None:
    """The fused kernels under bf16 autocast, forward and input gradients, against the PyTorch path."""
    from dnahnet import kernels
    from dnahnet.nn.mamba2 import Mamba2

    layers = {}
    if not kernels.missing_packages("mamba2"):
        layers["mamba2"] = lambda backend: Mamba2(256, d_state=64, headdim=64, chunk_size=256, backend=backend)
    if not kernels.missing_packages("attention"):
        layers["attention"] = lambda backend: Attention(256, 4, window=1023, backend=backend)
    if not layers:
        _skip(results, "bf16 kernels", f"no kernel package imports ({kernels.describe()})")
    for name, build in layers.items():
        torch.manual_seed(0)
        ref, fused = build("torch").cuda(), build("kernel").cuda()
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(2, 4096, 256, device="cuda")
        outs = []
        for layer in (ref, fused):
            xi = x.clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                y = layer(xi)
            y.float().square().mean().backward()
            outs.append((y.float(), xi.grad))
        scale = outs[0][0].abs().max().item() or 1.0
        _row(results, f"{name} kernel bf16 forward vs torch path", (outs[0][0] - outs[1][0]).abs().max().item(),
             0.05 * scale)
        gscale = outs[0][1].abs().max().item() or 1.0
        _row(results, f"{name} kernel bf16 input gradient vs torch path",
             (outs[0][1] - outs[1][1]).abs().max().item(), 0.05 * gscale)


def _write_corpus(root: Path, genomes: int = 4, length: int = 60_000) -> Path:
    """Synthetic first-order Markov genomes (no network on a bare machine): one FASTA per genome."""
    gen = torch.Generator().manual_seed(0)
    root.mkdir(parents=True, exist_ok=True)
    for g in range(genomes):
        keep = torch.rand(length, generator=gen) < 0.7
        rand = torch.randint(0, 4, (length,), generator=gen)
        x = rand.clone()
        for t in range(1, length):  # the successor nucleotide with probability 0.7
            if keep[t]:
                x[t] = (x[t - 1] + 1) % 4
        seq = "".join("ACGT"[i] for i in x.tolist())
        (root / f"genome{g}.fasta").write_text(f">G{g} synthetic\n" + "\n".join(seq[i:i + 80] for i in
                                                                                range(0, length, 80)) + "\n")
    return root


def _train(out: Path, family: str, data: Path, strategy: str, devices: int, accelerator: str, steps: int,
           seq_len: int, timeout: float, extra=()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "dnahnet.train", "--model", family, "--preset", "tiny", "--out", str(out),
           "--data-dir", str(data), "--no-progress", f"data.store_dir={data.parent / 'store'}",
           f"data.seq_len={seq_len}", "data.batch_size=2", "data.n_val_windows=4", f"train.max_steps={steps}",
           f"train.ckpt_every={max(1, steps // 2)}", f"train.accelerator={accelerator}", f"train.devices={devices}",
           f"train.strategy={strategy}", "train.log_every=2", *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def check_lightning(results: list, out: Path, device: str, steps: int, seq_len: int, timeout: float,
                    families=tuple(CHECK_FAMILIES), strategies=("ddp", "fsdp2")) -> None:
    """A short real `python -m dnahnet.train` per family, then a resume from its middle checkpoint (the last
    checkpoint and result removed: the rerun must resume and finish); dnaHNet also with ddp and fsdp2 on
    the devices present (all GPUs; one process on CPU)."""
    import json

    data = _write_corpus(out / "corpus" / "data")
    accelerator = "gpu" if device.startswith("cuda") else "cpu"
    devices = max(1, torch.cuda.device_count()) if accelerator == "gpu" else 1
    (out / "train").mkdir(parents=True, exist_ok=True)
    jobs = [(f, "auto", 1) for f in families] + [(families[0], strategy, devices) for strategy in strategies]
    for family, strategy, n in jobs:
        run = out / "train" / f"{family}-{strategy}"
        name = f"{family} tiny: dnahnet.train {strategy} x{n} ({accelerator})"
        start = time.perf_counter()
        proc = _train(run, family, data, strategy, n, accelerator, steps, seq_len, timeout,
                      ("train.activation_checkpointing=true",) if strategy == "auto" else ())
        (out / "train" / f"{family}-{strategy}.log").write_text(proc.stdout + proc.stderr)
        ok = proc.returncode == 0 and (run / "result.json").is_file()
        detail = f"{time.perf_counter() - start:.0f} s" if ok else f"exit {proc.returncode}: {proc.stderr[-300:]}"
        if ok and strategy == "auto":  # resume from the middle checkpoint
            (run / "result.json").unlink()
            for ckpt in (run / "checkpoints").glob("*.ckpt"):
                if ckpt.name == "last.ckpt" or ckpt.name == f"step={steps}.ckpt":
                    ckpt.unlink()
            proc = _train(run, family, data, strategy, n, accelerator, steps, seq_len, timeout,
                          ("train.activation_checkpointing=true",))
            resumed = "resuming" in proc.stderr
            ok = proc.returncode == 0 and resumed and (run / "result.json").is_file()
            detail += "; resumed" if ok else f"; resume failed (exit {proc.returncode}, resumed={resumed})"
        if ok:
            result = json.loads((run / "result.json").read_text())
            ok = math.isfinite(result["val_loss"]) and result["steps"] == steps
            detail += f"; val_loss {result['val_loss']:.4f}"
        results.append({"check": name, "max_abs_err": math.nan, "tol": math.nan, "ok": ok, "detail": detail})


def profile_dnahnet_step(out: Path, device: str, seq_len: int) -> str:
    """One torch.profiler table of a dnaHNet training step (forward + backward) at `seq_len`."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = build_model("dnahnet", "tiny").to(device).train()
    ids = torch.randint(0, 4, (2, seq_len + 1), device=device)
    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])

    def step():
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=cuda):
            o = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(o.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        (loss + o.aux_loss).backward()

    step()  # warm-up
    with profile(activities=activities) as prof:
        step()
    table = prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=25)
    (out / "profile_dnahnet_step.txt").write_text(table)
    return table


def mfu_column(rows: list) -> None:
    """MFU = tokens/s x the model's training FLOPs per token / the device's peak bf16 FLOP/s (Lightning's
    table of known GPUs; NaN when the device is not in it)."""
    from lightning.fabric.utilities.throughput import get_available_flops

    peak = get_available_flops(torch.device("cuda"), torch.bfloat16)
    for row in rows:
        if "tokens_per_s" in row:
            preset, over = FAMILIES[row["family"]]
            fpt = build_model(row["family"], preset, **over).flops_per_token(row["seq_len"]).training
            row["mfu"] = row["tokens_per_s"] * fpt / peak if peak else math.nan


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu-out")
    p.add_argument("--seq-len", type=int, default=8192, help="training benchmark context")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--check-len", type=int, default=CHECK_LEN, help="correctness checks' sequence length")
    p.add_argument("--decode-len", type=int, default=DECODE_LEN, help="positions decoded step by step per family")
    p.add_argument("--quick", action="store_true", help="training benchmark at 2048 x 2, 3 steps")
    p.add_argument("--cpu-smoke", action="store_true",
                   help="no GPU: every row at tiny sizes on the CPU; GPU-only rows are reported as skipped")
    p.add_argument("--only", default="correctness,decoding,kernels,lightning,memory,profile,train",
                   help="comma-separated row groups to run")
    p.add_argument("--step-timeout", type=float, default=240, help="seconds per dnahnet.train subprocess")
    p.add_argument("--families", default=",".join(CHECK_FAMILIES),
                   help="families of the per-family rows (decoding, memory, Lightning runs); the first of them "
                        "also runs with ddp and fsdp2")
    p.add_argument("--strategies", default="ddp,fsdp2", help="parallel strategies of the Lightning rows")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    families = [f for f in args.families.split(",") if f]
    unknown = sorted(set(families) - set(CHECK_FAMILIES))
    if unknown or not families:
        print(f"error: --families {args.families!r}: choose among {', '.join(CHECK_FAMILIES)}", file=sys.stderr)
        return 2
    cuda = torch.cuda.is_available() and not args.cpu_smoke
    if not cuda and not args.cpu_smoke:
        print("error: gpu_check needs a CUDA device (or --cpu-smoke)", file=sys.stderr)
        return 2
    device = "cuda" if cuda else "cpu"
    if args.quick:
        args.seq_len, args.batch, args.steps = 2048, 2, 3
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 comparisons against the CPU
    torch.backends.cudnn.allow_tf32 = False
    print(torch.__version__, torch.cuda.get_device_name(0) if cuda else "cpu (smoke mode)", flush=True)
    from dnahnet import kernels

    print("kernels:", kernels.describe(), flush=True)
    import pandas as pd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: list = []
    smoke = {"families": {"dnahnet": ("tiny", {"window": (15, 15)}), "transformer": ("tiny", {})},
             "check_len": 256, "decode_len": 160, "mixer_window": 31} if not cuda else {}
    if "correctness" in only:
        if cuda:
            check_correctness(results, "cuda", args.check_len, args.decode_len)
        else:  # the same code paths on the CPU against itself: it runs, it is not a GPU check
            check_correctness(results, "cpu", smoke["check_len"], smoke["decode_len"], smoke["families"],
                              smoke["mixer_window"])
    if "decoding" in only:
        _guard(results, "autocast decoding", lambda: check_autocast_decoding(results, device, families=families))
    if "kernels" in only:
        if cuda:
            _guard(results, "bf16 kernels", lambda: check_bf16_kernels(results))
        else:
            _skip(results, "bf16 kernels forward/backward", "no CUDA")
    if "memory" in only:
        if cuda:
            _guard(results, "paper presets memory", lambda: results.extend(paper_memory_rows(out, families)))
        else:
            _skip(results, "paper presets peak memory", "no CUDA")
    if "profile" in only:
        _guard(results, "profiler", lambda: print(profile_dnahnet_step(out, device, 2048 if cuda else 128)))
    if "lightning" in only:
        _guard(results, "lightning", lambda: check_lightning(results, out, device, steps=6 if cuda else 4,
                                                             seq_len=512 if cuda else 32, timeout=args.step_timeout,
                                                             families=families,
                                                             strategies=[x for x in args.strategies.split(",") if x]))
    checks = pd.DataFrame(results)
    checks.to_csv(out / "gpu_check.csv", index=False)
    print(checks.to_string(index=False), flush=True)
    train_ok = True
    if "train" in only and cuda:
        rows: list = []
        bench_training(rows, args.seq_len, args.batch, args.steps)
        _guard(results, "mfu", lambda: mfu_column(rows))
        train = pd.DataFrame(rows)
        train.to_csv(out / "gpu_train.csv", index=False)
        print(train.to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
        train_ok = "error" not in train or train["error"].isna().all()
        train_ok = train_ok and bool(train.get("finite", pd.Series([False])).fillna(False).all())
    elif "train" in only:
        print("training benchmark: skipped (no CUDA)")
    print(f"wrote {out / 'gpu_check.csv'}" + (" and gpu_train.csv" if cuda and "train" in only else ""))
    failed = [r["check"] for r in results if not r["ok"]]
    if failed or not train_ok:
        print("FAILED: " + "; ".join(failed + ([] if train_ok else ["training benchmark"])), file=sys.stderr)
        return 1
    return 0


PAPER_PRESETS = {"dnahnet": "base", "transformer": "medium", "stripedhyena": "100m"}  # ~85-200M parameters


def paper_memory_rows(out: Path, families=tuple(CHECK_FAMILIES)) -> list:
    """Peak memory of one bf16 training step (forward + backward) of each family's paper preset at the
    micro-batch the sweep planner picks for this device's memory (sweeps/memory.py), with activation
    checkpointing when the planner asks for it."""
    from dnahnet.nn.block import set_activation_checkpointing
    from dnahnet.registry import get_config
    from sweeps.memory import plan_micro_batch

    total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
    rows = []
    for family in families:
        preset = PAPER_PRESETS[family]
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cfg = get_config(family, preset)
        model = build_model(family, preset).cuda().train()
        seq_len = 8192
        plan = plan_micro_batch(family, cfg, model.param_counts().total, seq_len, per_device_batch=64,
                                memory_gb=total_gb * 0.9)
        set_activation_checkpointing(model, plan.checkpointing)
        ids = torch.randint(0, 4, (plan.micro_batch, seq_len + 1), device="cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16):
            o = model(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(o.logits.float().flatten(0, 1), ids[:, 1:].flatten())
        loss.backward()
        peak = torch.cuda.max_memory_allocated() / 2**30
        rows.append({"check": f"{family} {preset}: peak memory at micro-batch {plan.micro_batch} x {seq_len}"
                              f"{' (checkpointed)' if plan.checkpointing else ''}",
                     "max_abs_err": peak, "tol": total_gb, "ok": peak <= total_gb,
                     "detail": f"peak {peak:.1f} GiB, planned {plan.estimate_gb:.1f} GiB of {total_gb:.0f} GiB"})
        del model, o, loss
    return rows


if __name__ == "__main__":
    sys.exit(main())
