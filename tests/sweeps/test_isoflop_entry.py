"""The sweep command runs both ways, `python -m sweeps.isoflop` and `python sweeps/isoflop.py`; run as a script,
it imports the checkout it lives in (not sweeps/'s modules as top-level ones, nor another installed copy)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], cwd: Path, pythonpath: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**env, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)


def test_module_and_script_forms_plan_the_same_sweep(tmp_path):
    data = markov_corpus(tmp_path / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    common = ["--model", "transformer", "--budgets", "4e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
              "--data-dir", str(data), "--dry-run", "--set", "data.n_val_windows=4"]
    module = _run(["-m", "sweeps.isoflop", *common, "--out", str(tmp_path / "m")], REPO, str(REPO))
    script = _run([str(REPO / "sweeps" / "isoflop.py"), *common, "--out", str(tmp_path / "s")], REPO, str(REPO))
    assert module.returncode == 0, module.stderr
    assert script.returncode == 0, script.stderr
    assert (tmp_path / "m" / "plan.csv").read_text() == (tmp_path / "s" / "plan.csv").read_text()
    assert _run(["-m", "sweeps.isoflop", "--help"], REPO, str(REPO)).stdout.startswith("usage:")


def test_the_script_imports_its_own_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    for package in ("dnahnet", "sweeps", "baselines"):
        shutil.copytree(REPO / package, checkout / package, ignore=shutil.ignore_patterns("__pycache__"))
    with open(checkout / "sweeps" / "__init__.py", "a") as fh:
        fh.write('\nprint("imported from the copied checkout")\n')
    for script in ("isoflop.py", "tune.py"):
        done = _run([str(checkout / "sweeps" / script), "--help"], tmp_path, None)  # from elsewhere, no PYTHONPATH
        assert done.returncode == 0, done.stderr
        assert "imported from the copied checkout" in done.stdout, script
