"""Where a whole sweep run spends its time: one run of a ladder, trained by the sweep command under cProfile.

    python benchmarks/profile_sweep_run.py --model dnahnet --budget 2.5e11 --size d24x4 --out prof.csv

Trains RUN (the ladder's run of that budget and size, `sweeps/isoflop.py --only RUN` in this process, into a
temporary sweep directory) and prints how its wall time splits: training steps (forward, loss, backward,
AdamW), per-step metric logging, the final validation (of which dnaHNet's hierarchy-usage ablations),
checkpoints, the export, data setup and imports. A run that is much slower than its steps shows it here.
Prints a table, writes CSV atomically. cProfile adds overhead to every Python call, so read the shares, not
the absolute seconds.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import io
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# (label, function whose cumulative time is the part; matched on "file:line(name)" suffixes of pstats keys)
PARTS = (
    ("training steps (optimizer step incl. forward/backward)", "torch/optim/optimizer.py", "wrapper"),
    ("  of which metric logging (LightningModule.log)", "lightning/pytorch/core/module.py", "log"),
    ("final validation (evaluation loop)", "lightning/pytorch/loops/evaluation_loop.py", "run"),
    ("  of which hierarchy-usage ablations", "dnahnet/hierarchy_usage.py", "ablated_nll_sums"),
    ("checkpoint saves", "lightning/pytorch/trainer/trainer.py", "save_checkpoint"),
    ("export of the final weights", "dnahnet/export.py", "export"),
    ("data setup (token store)", "dnahnet/data/module.py", "_open_store"),
)


def cumulative(stats: pstats.Stats, path_suffix: str, name: str) -> float:
    """The largest cumulative time of a function matched by file suffix and name (the outermost call)."""
    best = 0.0
    for (file, _, func), (_, _, _, cum, _) in stats.stats.items():
        if func == name and file.replace("\\", "/").endswith(path_suffix):
            best = max(best, cum)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dnahnet")
    p.add_argument("--ladder", default="cpu")
    p.add_argument("--budget", default="2.5e11")
    p.add_argument("--size", default="d24x4", help="the ladder size, e.g. d24x4")
    p.add_argument("--out", default=None, help="CSV path")
    args = p.parse_args(argv)

    from dnahnet.fileio import atomic_write_text
    from sweeps import isoflop
    from sweeps.ladders import get_rule
    from sweeps.plan import make_run_id

    run_id = make_run_id(args.model, get_rule(args.model).default_variant, float(args.budget), args.size)
    with tempfile.TemporaryDirectory() as tmp:
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        rc = isoflop.main(["--model", args.model, "--budgets", args.budget, "--rules", args.ladder, "--only", run_id,
                           "--out", str(Path(tmp) / "sweep"), "--threads", "1", "--no-progress"])
        profiler.disable()
        wall = time.perf_counter() - start
    if rc != 0:
        print(f"error: the run {run_id} failed (exit {rc})", file=sys.stderr)
        return 2
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = [("whole command", wall)] + [(label, cumulative(stats, f, n)) for label, f, n in PARTS]
    print(f"\n{run_id}: where the wall time goes (cProfile)\n")
    print(f"{'part':58s} {'seconds':>8s} {'share':>6s}")
    for label, seconds in rows:
        print(f"{label:58s} {seconds:8.1f} {100 * seconds / wall:5.1f}%")
    if args.out:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["run_id", "part", "seconds", "share"])
        writer.writerows([run_id, label, f"{s:.3f}", f"{s / wall:.4f}"] for label, s in rows)
        atomic_write_text(Path(args.out), buf.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
