"""CPU training speed of the isoFLOP ladder's models: eager fp32 vs `torch.compile` vs bf16 autocast,
side by side in one process, per family.

    python benchmarks/bench_train_speed.py --out bench_train_speed.csv [--ladder cpu] [--threads 1]

For each family the model is the middle size of the `cpu` ladder at its middle budget (the recipe the
committed sweeps trained), at the ladder's context and batch (16 x 512). One timed step is what a sweep
step does: forward, cross-entropy (+ dnaHNet's ratio loss), backward, AdamW. Each mode gets --warmup
untimed steps (compilation happens there), then the median of --steps timed ones; tokens/s = batch x L /
median. Modes run interleaved in rounds (eager, compile, bf16, eager, ...) so that a busy machine slows
them alike; ratios to eager are what to read. A mode that fails (e.g. compilation of dnaHNet's
data-dependent chunking) prints its error instead of a number. Prints a table, writes CSV atomically.

How to use the cores: with --processes P (default 2), two more rows per family compare one run using P
threads (`eager xP threads`) with P single-threaded runs side by side (`eager xP procs`, what
`sweeps/isoflop.py --jobs P` does; tokens/s summed over the processes, all timed at once). Their
`x eager` is relative to one single-threaded eager run.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from dnahnet.fileio import atomic_write_text
from dnahnet.registry import build_model
from sweeps import ladders as ladlib

MODES = ("eager", "compile", "bf16")
FAMILIES = ("transformer", "stripedhyena", "dnahnet")


def ladder_model(family: str, ladder: ladlib.Ladder):
    """The middle size of the ladder's middle budget for this family, and its (batch, seq_len)."""
    rule = ladlib.get_rule(family)
    budgets = ladder.budgets_for(family)
    budget = budgets[len(budgets) // 2]
    sizes = ladlib.ladder_sizes(family, rule.default_variant, budget, ladder)
    size = sizes[len(sizes) // 2]
    torch.manual_seed(0)
    model = build_model(family, rule.preset, rule.default_variant, **size.overrides)
    return model, size, ladder.min_batch_windows, ladder.seq_len


class Trainer:
    """One training step of a model in one mode."""

    def __init__(self, model: torch.nn.Module, mode: str):
        self.model, self.mode = model, mode
        self.forward = torch.compile(model.forward) if mode == "compile" else model
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(self, ids: torch.Tensor) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if self.mode == "bf16" else nullcontext()
        with autocast:
            out = self.forward(ids[:, :-1])
            loss = F.cross_entropy(out.logits.float().flatten(0, 1), ids[:, 1:].flatten())
            if out.aux_loss is not None:
                loss = loss + out.aux_loss
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def bench_family(family: str, ladder: ladlib.Ladder, warmup: int, steps: int) -> list[dict]:
    base, size, batch, seq_len = ladder_model(family, ladder)
    ids = torch.randint(0, 4, (batch, seq_len + 1), generator=torch.Generator().manual_seed(1))
    trainers, errors, times = {}, {}, {m: [] for m in MODES}
    for mode in MODES:
        model = build_model(family, ladlib.get_rule(family).preset, ladlib.get_rule(family).default_variant,
                            **size.overrides)
        model.load_state_dict(base.state_dict())
        try:
            trainers[mode] = Trainer(model, mode)
            for _ in range(warmup):
                trainers[mode].step(ids)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            errors[mode] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:80] if str(exc).strip() else ''}"
            trainers.pop(mode, None)
    for _ in range(steps):  # interleaved rounds
        for mode, trainer in trainers.items():
            t0 = time.perf_counter()
            trainer.step(ids)
            times[mode].append(time.perf_counter() - t0)
    rows = []
    eager = statistics.median(times["eager"]) if times["eager"] else float("nan")
    for mode in MODES:
        median = statistics.median(times[mode]) if times[mode] else float("nan")
        rows.append({
            "family": family, "size": size.name, "params": size.stats.params, "batch": batch, "seq_len": seq_len,
            "mode": mode, "ms_per_step": 1e3 * median, "tokens_per_s": batch * seq_len / median,
            "gflops_per_s": size.stats.flops_per_token * batch * seq_len / median / 1e9,
            "vs_eager": eager / median, "error": errors.get(mode, ""),
        })
    return rows


def eager_step_times(family: str, ladder: ladlib.Ladder, warmup: int, steps: int) -> list[float]:
    """Seconds per eager training step of the family's benchmark model (this process's threads)."""
    model, _, batch, seq_len = ladder_model(family, ladder)
    ids = torch.randint(0, 4, (batch, seq_len + 1), generator=torch.Generator().manual_seed(1))
    trainer = Trainer(model, "eager")
    for _ in range(warmup):
        trainer.step(ids)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        trainer.step(ids)
        times.append(time.perf_counter() - t0)
    return times


def bench_cores(family: str, ladder: ladlib.Ladder, warmup: int, steps: int, processes: int,
                eager_row: dict) -> list[dict]:
    """One run on `processes` threads vs `processes` single-threaded runs at once (summed tokens/s)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(processes)
    try:
        threaded = statistics.median(eager_step_times(family, ladder, warmup, steps))
    finally:
        torch.set_num_threads(saved)
    cmd = [sys.executable, __file__, "--worker", family, "--ladder", ladder.name, "--warmup", str(warmup),
           "--steps", str(steps), "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env) for _ in range(processes)]
    medians = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"benchmark worker for {family} exited with code {proc.returncode}")
        medians.append(statistics.median(json.loads(out.strip().splitlines()[-1])))
    tokens = eager_row["batch"] * eager_row["seq_len"]
    rows = []
    for mode, tokens_per_s in ((f"eager x{processes} threads", tokens / threaded),
                               (f"eager x{processes} procs", sum(tokens / m for m in medians))):
        rows.append({**eager_row, "mode": mode, "ms_per_step": 1e3 * tokens / tokens_per_s,
                     "tokens_per_s": tokens_per_s,
                     "gflops_per_s": eager_row["gflops_per_s"] * tokens_per_s / eager_row["tokens_per_s"],
                     "vs_eager": tokens_per_s / eager_row["tokens_per_s"], "error": ""})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_train_speed.csv", help="CSV output path")
    p.add_argument("--ladder", default="cpu", help="ladder whose models and batch are timed")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode (compilation happens here)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--processes", type=int, default=2,
                   help="compare P threads in one run with P single-threaded runs at once (1: skip)")
    p.add_argument("--worker", choices=FAMILIES, help=argparse.SUPPRESS)  # internal: one timed eager run
    args = p.parse_args(argv)
    if min(args.warmup, args.steps, args.threads, args.processes) < 1:
        print("error: --warmup, --steps, --threads and --processes must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    ladder = ladlib.get_ladder(args.ladder)
    if args.worker:
        print(json.dumps(eager_step_times(args.worker, ladder, args.warmup, args.steps)))
        return 0
    rows = []
    for family in args.families:
        family_rows = bench_family(family, ladder, args.warmup, args.steps)
        rows += family_rows
        if args.processes > 1 and not family_rows[0]["error"]:
            rows += bench_cores(family, ladder, args.warmup, args.steps, args.processes, family_rows[0])
    head = f"{'family':<13} {'size':<7} {'params':>8} {'mode':<16} {'ms/step':>8} {'tokens/s':>9} {'GFLOP/s':>8} {'x eager':>8}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        if r["error"]:
            print(f"{r['family']:<13} {r['size']:<7} {r['params']:>8,} {r['mode']:<16} failed: {r['error']}")
        else:
            print(f"{r['family']:<13} {r['size']:<7} {r['params']:>8,} {r['mode']:<16} {r['ms_per_step']:>8.0f} "
                  f"{r['tokens_per_s']:>9,.0f} {r['gflops_per_s']:>8.1f} {r['vs_eager']:>8.2f}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(args.out), buf.getvalue())
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
