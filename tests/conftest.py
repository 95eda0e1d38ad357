"""Shared test setup: small thread counts (CI has 2 cores), GPU marker handling, the reference analysis."""

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny test models: threading overhead dominates on 2 shared cores


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module, whatever an earlier test left set. Tiny matmuls: a second thread
    only adds synchronisation, which on a loaded machine costs up to ~100x (measured: 36 decoding steps
    of tiny3 take 27 s with 2 threads, 0.4 s with 1)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class ReferenceDemo:
    logs: Path  # a copy of analysis/reference/cpu: nothing but the committed logs in reach
    out: Path  # the demo's --out; out / "reference" holds figures/, summary.md, fits.json
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def reference_demo(tmp_path_factory) -> ReferenceDemo:
    """`python -m dnahnet.demo --no-live` on a copy of the committed CPU sweep logs, run once for the
    session: its reference step is `make figures`' analysis command (`python -m analysis --results
    */results.csv --quiet`), the minute-long part of both the demo's and the reference sweeps' tests."""
    repo = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("reference")
    shutil.copytree(repo / "analysis" / "reference" / "cpu", work / "logs")
    proc = subprocess.run([sys.executable, "-m", "dnahnet.demo", "--no-progress", "--no-live", "--reference",
                           str(work / "logs"), "--out", str(work / "demo")], cwd=work, capture_output=True, text=True)
    return ReferenceDemo(logs=work / "logs", out=work / "demo", proc=proc)


def pytest_collection_modifyitems(config, items):
    # The reference demo replays the whole analysis of the committed sweeps (minutes under load): every test
    # that uses it, directly or through another fixture, is slow (`make test-fast` leaves it out).
    for item in items:
        if "reference_demo" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
