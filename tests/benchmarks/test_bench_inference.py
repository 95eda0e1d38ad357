"""The inference benchmark runs in quick mode and writes its CSV and figure."""

import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def test_quick_inference_benchmark_writes_csv(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_inference.py"), "--quick", "--threads", "1",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    df = pd.read_csv(tmp_path / "inference.csv")
    assert set(df.family) == {"transformer", "dnahnet", "stripedhyena"}
    assert (df.nt_per_s > 0).all() and (df.decode_nt_per_s > 0).all()
    tf = df[df.family == "transformer"]
    assert (tf.prefill_speedup_vs_transformer == 1.0).all()
    assert (tmp_path / "inference.png").stat().st_size > 0
