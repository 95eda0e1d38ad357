"""The benchmark scripts (benchmarks/*.py, not a package) loaded as modules (test helper)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, module_name: str):
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str):
    """benchmarks/NAME.py as a module. Run as a script, it finds its sibling `matched` because Python puts
    the script's folder first on the import path; loaded from here, that sibling is registered first."""
    if "matched" not in sys.modules:
        sys.modules["matched"] = _load(ROOT / "benchmarks" / "matched.py", "matched")
    return _load(ROOT / "benchmarks" / f"{name}.py", f"_bench_{name}")
