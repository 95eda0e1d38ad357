"""The inference benchmark: its quick mode writes CSV and figure with real numbers; its timing protocol
(warm-ups at the timed shape, medians, decoding warm-up) is checked on a recording model."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.helpers.benchmarks import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


class Recording(torch.nn.Module):
    """Records every forward's input shape and every decoding step."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(8))
        self.calls, self.steps, self.caches = [], 0, []

    def forward(self, ids):
        self.calls.append(tuple(ids.shape))
        return type("Out", (), {"logits": self.w.expand(*ids.shape, 8)})()

    def init_cache(self, batch, max_seqlen):
        self.caches.append(max_seqlen)
        return {}

    def prefill(self, ids, cache):
        self.calls.append(tuple(ids.shape))
        return self.w.expand(ids.shape[0], 8)

    def step(self, tok, cache):
        self.steps += 1
        return self.w.expand(tok.shape[0], 8)


def test_prefill_warms_up_at_the_timed_shape_and_reports_the_real_peak():
    bench = load_benchmark("bench_inference")
    model = Recording()
    res = bench.time_prefill(model, 700, "cpu", torch.float32, reps=3, warmup=2)
    assert model.calls == [(1, 700)] * 5  # 2 warm-ups + 3 timed passes, all of the timed shape
    # the real peak: at least what the process holds (interpreter + torch), never "growth" (0 when warm)
    current_mb = bench._rss_mb()[0]
    assert res["peak_mem_mb"] >= 0.5 * current_mb > 10
    assert math.isclose(res["latency_s"] * res["nt_per_s"], 700)


def test_decoding_is_warmed_up_and_repeated():
    bench = load_benchmark("bench_inference")
    model = Recording()
    speed = bench.time_decode(model, prompt_len=10, new_tokens=5, device="cpu", dtype=torch.float32, reps=3,
                              warmup_tokens=4)
    assert model.steps == 3 * (4 + 5) and model.caches == [10 + 4 + 5 + 1] * 3 and speed > 0


def test_all_benchmarks_use_the_same_matched_models():
    """bench_inference, bench_models and gpu_check describe the same ~3.2M models (benchmarks/matched.py)."""
    matched = load_benchmark("matched").MATCHED
    inference = load_benchmark("bench_inference").DEFAULT_MODELS
    assert sorted(inference) == sorted(f"{f}:{p}" for f, (p, ov) in matched.items())
    assert load_benchmark("bench_models").MODELS == matched
    assert load_benchmark("gpu_check").FAMILIES == matched
    import dnahnet

    for family, (preset, overrides) in matched.items():
        params = dnahnet.build_model(family, preset, **overrides).param_counts().total
        assert 3.0e6 <= params <= 3.5e6, (family, params)


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
    assert (df.warmup >= 1).all() and (df.reps >= 2).all()
    # Peak memory is the real peak: the process holds at least the weights (the old "growth after a
    # warm-up" read 0 MB for StripedHyena 2 here).
    assert (df.peak_mem_mb >= df.weights_mb).all() and (df.peak_mem_mb > 0).all()
    assert (df.activation_mb >= 0).all()
    assert ((df.latency_s * df.nt_per_s - df.seq_len).abs() < 1e-6 * df.seq_len).all()
    # Ratios to Transformer++ at the same length, recomputed from the throughputs.
    tf = df[df.family == "transformer"].set_index("seq_len").nt_per_s
    for r in df[df.family != "transformer"].itertuples():
        assert r.prefill_speedup_vs_transformer == pytest.approx(r.nt_per_s / tf[r.seq_len], rel=1e-9)
    assert (tmp_path / "inference.png").stat().st_size > 0
