"""gpu_check: its correctness checks run the paths they claim (sliding-window attention past the window,
a wrapping KV cache), here on CPU at small sizes; on a GPU the whole script runs (marked gpu)."""


import pandas as pd
import pytest
from test_bench_inference import load_benchmark  # a sibling: pytest puts this folder on the import path


def test_default_lengths_reach_past_dnahnet_sliding_window():
    """At the script's defaults, dnaHNet's windowed attention (first inner stage, ~L / N_1 positions at the
    target ratio) sees more than 2 x (window + 1) positions, so the blocked sliding-window path runs, and
    decoding takes more than window + 1 steps there, so the rolling cache wraps."""
    import dnahnet

    gpu_check = load_benchmark("gpu_check")
    cfg = dnahnet.get_config("dnahnet", gpu_check.CHECK_FAMILIES["dnahnet"][0])
    window, ratio = max(cfg.window), cfg.ratios[0]
    assert gpu_check.CHECK_LEN / ratio > 2 * (window + 1)
    assert gpu_check.DECODE_LEN / ratio > window + 1


def test_correctness_checks_on_cpu_exercise_the_windowed_paths():
    gpu_check = load_benchmark("gpu_check")
    results = []
    families = {"dnahnet": ("tiny", {"window": (15, 15)}), "transformer": ("tiny", {})}
    gpu_check.check_correctness(results, device="cpu", check_len=256, decode_len=160, families=families,
                                mixer_window=31)
    table = pd.DataFrame(results)
    assert table["ok"].all(), table.to_string()
    details = " ".join(table.detail)
    assert "blocked path ran" in details and "cache wrapped" in details
    assert any("mamba2 torch" in c for c in table.check) and any("attention window 31" in c for c in table.check)
    # A too-short check is reported as failed, not passed quietly.
    short = []
    gpu_check.check_family(short, "dnahnet", "tiny", {"window": (15, 15)}, "cpu", 30, 15)  # <= 2 x 16, < 16
    assert not any(r["ok"] for r in short)


@pytest.mark.gpu
def test_gpu_check_script(tmp_path):
    gpu_check = load_benchmark("gpu_check")
    assert gpu_check.main(["--out", str(tmp_path), "--quick"]) == 0
    checks = pd.read_csv(tmp_path / "gpu_check.csv")
    assert checks["ok"].all() and len(checks) >= 8
    assert (pd.read_csv(tmp_path / "gpu_train.csv")["finite"]).all()
