"""`make demo` (python -m dnahnet.demo): the reference scaling laws from the committed logs, the live
sweep, the headline; any failing step exits non-zero with one error line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "analysis" / "reference" / "cpu"


def demo(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnahnet.demo", "--no-progress", *args], cwd=cwd,
                          capture_output=True, text=True)


def test_reference_step_regenerates_the_figures_and_prints_the_headline(reference_demo):
    proc = reference_demo.proc
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = reference_demo.out / "reference" / "figures"
    assert (figures / "frontier.png").is_file() and list(figures.glob("isoflop_*.png"))
    for family in ("transformer", "stripedhyena", "dnahnet"):
        assert f"  {family}" in proc.stdout  # a line per family: its exponents, or why it has none
    assert "N_opt ~ C^" in proc.stdout and "budgets bracketed" in proc.stdout
    assert "needs" in proc.stdout and "the compute of" in proc.stdout  # a compute multiplier


def test_a_failing_analysis_makes_the_demo_fail(tmp_path):
    broken = tmp_path / "reference"
    shutil.copytree(REFERENCE, broken)
    (broken / "transformer" / "results.csv").write_text("family,budget\ntransformer,abc\n")
    proc = demo("--no-live", "--out", str(tmp_path / "demo"), "--reference", str(broken), cwd=tmp_path)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    # the analysis names the bad file, then the demo names the step that failed; no traceback
    assert "transformer/results.csv: missing column" in errors[0] and "reference analysis failed" in errors[-1]
    assert len(errors) == 2 and "Traceback" not in proc.stderr


def test_missing_reference_logs_are_an_error(tmp_path):
    proc = demo("--no-live", "--out", str(tmp_path / "demo"), "--reference", str(tmp_path / "nothing"), cwd=tmp_path)
    assert proc.returncode != 0 and "no committed sweep logs" in proc.stderr
    assert "Traceback" not in proc.stderr
