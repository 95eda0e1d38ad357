"""Docstrings and comments cite what a reader of the repository can open: a paper (and its section or
table), or a file of the repository (docs/FIDELITY.md, README.md). Never the design notes kept outside the
repository (in ../shared/), which a reader of a clone does not have (issue 23, item 5)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("dnahnet", "baselines", "sweeps", "analysis", "benchmarks", "tests")
NAME = "DESIGN" + ".md"  # spelled in two parts so that this file does not cite it

# Files allowed to cite the notes while they are being fixed (none now); an entry whose file no longer cites
# them fails the test, so the list only shrinks.
PENDING: set[str] = set()


def citing_files() -> set[str]:
    return {str(p.relative_to(REPO)) for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))
            if "__pycache__" not in p.parts and NAME in p.read_text(encoding="utf-8")}


def test_no_source_cites_the_design_notes_outside_the_repository():
    citing = citing_files()
    assert citing - PENDING == set(), f"cite the paper or a file of the repository instead of {NAME}"
    assert PENDING - citing == set(), "no longer cites the notes: remove it from PENDING"
