"""benchmarks/gpu_first_run.sh in its CPU smoke mode: every step runs, the output folder holds each step's
log, the check tables and the summary, and the script exits 0 (GPU-only rows reported as skipped)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_first_run_script_smoke(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "OUT": str(tmp_path / "out")}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_first_run.sh"), "--smoke"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=540)
    out = tmp_path / "out"
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    for name in ("env.txt", "checks.log", "lightning.log", "train.log", "summary.txt", "checks/gpu_check.csv",
                 "lightning/gpu_check.csv", "checks/profile_dnahnet_step.txt"):
        assert (out / name).is_file(), name
    summary = (out / "summary.txt").read_text()
    assert "all steps and rows passed" in summary and "skipped: bf16 kernels" in summary
    assert "lightning ok" in summary
    lightning = (out / "lightning" / "gpu_check.csv").read_text()
    assert "resumed" in lightning and "fsdp2" in lightning


def test_first_run_script_needs_an_output_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_first_run.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and proc.stderr.startswith("error: give the output folder")
