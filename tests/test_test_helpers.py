"""The test modules share helpers through tests/helpers only: none edits sys.path, none imports another test
module (which pytest would then import twice, under two names) (issue 23, item 6)."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def offences(path: Path) -> list[tuple[int, str]]:
    """(line, what) of every sys.path edit and every import of a test module, conftest or tests.X outside
    tests.helpers in `path`, in line order. Strings are not code: a script written out by a test may do
    as it likes."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in ("insert", "append") and ast.unparse(node.value) == "sys.path":
            out.append((node.lineno, f"sys.path.{node.attr}"))
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
        for name in names:
            parts = name.split(".")
            if (parts[0] == "tests" and parts[:2] != ["tests", "helpers"]) or parts[-1].startswith("test_") \
                    or parts[0] == "conftest":
                out.append((node.lineno, f"import {name}"))
    return sorted(out)


def test_helpers_come_from_tests_helpers_only():
    found = [f"{p.relative_to(TESTS.parent)}:{line}: {what}" for p in sorted(TESTS.rglob("*.py"))
             if "__pycache__" not in p.parts for line, what in offences(p)]
    assert not found, "import shared helpers from tests.helpers:\n" + "\n".join(found)


def test_the_scan_finds_path_edits_and_test_module_imports(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("import sys\nsys.path.insert(0, 'x')\nfrom test_other import f\nimport tests.sweeps.test_y\n"
                   "from tests.helpers.synthetic_corpus import markov_corpus\ncode = 'sys.path.append(1)'\n")
    assert offences(bad) == [(2, "sys.path.insert"), (3, "import test_other"), (4, "import tests.sweeps.test_y")]


def test_tests_using_the_reference_demo_are_slow():
    """The fast suite (`-m "not slow"`, `make test-fast`) leaves out every test that replays the reference demo."""
    import subprocess
    import sys

    files = ["tests/test_reference_sweeps.py", "tests/test_demo.py"]
    fast = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "not slow", *files],
                          cwd=TESTS.parent, capture_output=True, text=True).stdout
    every = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", *files],
                           cwd=TESTS.parent, capture_output=True, text=True).stdout
    assert "test_figures_regenerate_from_the_logs_alone" in every and "test_reference_step_regenerates" in every
    assert "test_figures_regenerate_from_the_logs_alone" not in fast and "test_reference_step_regenerates" not in fast
    assert "test_committed_logs_are_complete" in fast  # the cheap checks of the committed logs stay fast
