"""The demo (`make demo`), the one demo command: the reference scaling laws from the committed CPU sweep
logs, a live `cpu-smoke` sweep of each family, the headline numbers. See `sweeps/demo.py`, which this runs.

    python -m dnahnet.demo --out demo [--families dnahnet transformer stripedhyena] [--no-live]

The demo drives the sweeps and the analysis, which build on `dnahnet`: the core library does not import
them, so this entry point runs `python -m sweeps.demo` in a child process (this checkout's, first on its
PYTHONPATH) and exits with its code.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    path = [str(REPO_ROOT)] if (REPO_ROOT / "sweeps" / "demo.py").is_file() else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep)}
    try:
        return subprocess.run([sys.executable, "-m", "sweeps.demo", *args], env=env).returncode
    except KeyboardInterrupt:  # the child got the Ctrl-C too and says where it stopped
        return 130


if __name__ == "__main__":
    sys.exit(main())
