"""benchmarks/profile_sweep_run.py: the parts of a run are read off the profile by file and function."""

from __future__ import annotations

import cProfile
import importlib.util
import io
import pstats
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "profile_sweep_run.py"


def _load():
    spec = importlib.util.spec_from_file_location("profile_sweep_run", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _inner():
    time.sleep(0.05)


def _outer():
    _inner()
    time.sleep(0.05)


def test_cumulative_time_is_the_outermost_call_of_the_named_function():
    bench = _load()
    profiler = cProfile.Profile()
    profiler.enable()
    _outer()
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    here = "tests/benchmarks/test_profile_sweep_run.py"
    outer, inner = bench.cumulative(stats, here, "_outer"), bench.cumulative(stats, here, "_inner")
    assert 0.09 < outer < 1.0 and 0.04 < inner < outer
    assert bench.cumulative(stats, "no/such/file.py", "_outer") == 0.0
