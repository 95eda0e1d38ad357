"""gpu_check: its correctness checks run the paths they claim (sliding-window attention past the window,
a wrapping KV cache), here on CPU at small sizes; on a GPU the whole script runs (marked gpu)."""


import pandas as pd
import pytest

from tests.helpers.benchmarks import load_benchmark


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


def test_help_runs_from_a_clone_without_the_package_installed(tmp_path):
    """Issue 26, crash 2: `python benchmarks/gpu_check.py --help` from a clone's root. The interpreter runs
    without site processing (-S: no .pth files, so no editable install of dnahnet) and isolated (-I: no
    PYTHONPATH, no cwd on the path); torch and the other dependencies come from site-packages added as a
    plain directory. The test first proves dnahnet does not import there, then runs the script as Python
    would (its own folder first on sys.path)."""
    import shutil
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    clone = tmp_path / "clone"
    for name in ("dnahnet", "baselines", "benchmarks"):
        shutil.copytree(repo / name, clone / name, ignore=shutil.ignore_patterns("__pycache__"))
    site = sysconfig.get_paths()["purelib"]
    code = (
        "import sys, runpy, importlib.util\n"
        f"sys.path.append({site!r})\n"
        "assert importlib.util.find_spec('dnahnet') is None, 'dnahnet importable: the test proves nothing'\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "sys.argv = ['benchmarks/gpu_check.py', '--help']\n"
        "runpy.run_path('benchmarks/gpu_check.py', run_name='__main__')\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=clone, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--cpu-smoke" in proc.stdout and "GPU checks in one script" in proc.stdout


def test_exit_code_is_nonzero_when_any_row_fails(tmp_path, monkeypatch):
    """A failing correctness row and a failing training run (here, dnahnet.train exiting 1) each make the
    script exit 1; the table still records every row."""
    import subprocess

    gpu_check = load_benchmark("gpu_check")
    out = tmp_path / "out"
    monkeypatch.setattr(gpu_check, "check_autocast_decoding",
                        lambda results, *a, **k: gpu_check._row(results, "forced failure", 1.0, 0.1))
    assert gpu_check.main(["--cpu-smoke", "--only", "decoding", "--out", str(out)]) == 1
    assert not pd.read_csv(out / "gpu_check.csv")["ok"].any()
    monkeypatch.setattr(gpu_check, "_write_corpus", lambda root: root)
    monkeypatch.setattr(gpu_check, "_train", lambda *a, **k: subprocess.CompletedProcess([], 1, "", "boom"))
    assert gpu_check.main(["--cpu-smoke", "--only", "lightning", "--families", "transformer",
                           "--out", str(out)]) == 1
    table = pd.read_csv(out / "gpu_check.csv")
    assert len(table) == 3 and not table["ok"].any() and "boom" in " ".join(table.detail)
    assert gpu_check.main(["--cpu-smoke", "--families", "nope", "--out", str(out)]) == 2
