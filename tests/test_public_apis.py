"""The package uses Lightning's and Optuna's public interfaces only: no import of an underscore-private
module or name of theirs, and no private attribute read off their objects (trainers, loops, loggers,
samplers, studies, trials, ...). Scanned from the source with `ast`; a negative control shows the scan
catches each kind of access."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dnahnet", "baselines", "sweeps", "analysis")
LIBRARIES = ("lightning", "pytorch_lightning", "lightning_fabric", "optuna", "optuna_integration")
# Roots whose private names are not Lightning's or Optuna's (torch's own, e.g. `torch._dynamo`, are a
# different question).
OTHER_ROOTS = ("torch", "np", "numpy", "os", "sys", "pd", "scipy", "math", "threading", "logging")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _chain(node: ast.AST) -> list[str]:
    """a.b(...).c -> ["a", "b", "c"]; getattr(a, "b") reads as a.b."""
    chain = []
    while True:
        if isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Call) and _is_getattr(node):
            chain.append(node.args[1].value)
            node = node.args[0]
        elif isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Subscript):
            node = node.value
        elif isinstance(node, ast.Name):
            chain.append(node.id)
            return chain[::-1]
        else:
            return chain[::-1]


def _is_getattr(node: ast.Call) -> bool:
    return (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str))


def defined_names(trees: list[ast.AST]) -> set[str]:
    """Every name our own code defines: functions, classes, variables, attributes it assigns, arguments."""
    names = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Call) and _is_getattr(node) and node.func.id == "setattr":
                names.add(node.args[1].value)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return names


def private_uses(tree: ast.AST, ours: set[str], filename: str = "<src>") -> list[str]:
    """Imports of the libraries' private modules or names, and private attributes read (directly or by
    getattr) that our own code never defines, i.e. someone else's."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = getattr(node, "module", None) or ""
            for alias in node.names:
                full = f"{module}.{alias.name}" if module else alias.name
                if full.split(".")[0] in LIBRARIES and any(_private(part) for part in full.split(".")):
                    found.append(f"{filename}:{node.lineno}: import of {full}")
        attr = node.attr if isinstance(node, ast.Attribute) else (
            node.args[1].value if isinstance(node, ast.Call) and _is_getattr(node) else None)
        if attr is None or not _private(attr) or attr in ours:
            continue
        chain = _chain(node.value if isinstance(node, ast.Attribute) else node.args[0])
        if chain and chain[0] in OTHER_ROOTS:
            continue
        found.append(f"{filename}:{node.lineno}: {'.'.join(chain)}.{attr}")
    return found


def _scan(source: str, ours: set[str] = frozenset()) -> list[str]:
    tree = ast.parse(source)
    return private_uses(tree, set(ours) | defined_names([tree]))


@pytest.mark.parametrize("snippet", [
    "from lightning.pytorch.loggers.csv_logs import _ExperimentWriter",
    "import lightning.pytorch.trainer.connectors._x",
    "def f(trainer):\n    return trainer.fit_loop._data_fetcher",
    "import optuna\ns = optuna.samplers.TPESampler()\nrng = s._rng",
    "def f(sampler):\n    sampler._rng.seed(0)",
    "def f(trainer):\n    return getattr(getattr(trainer, 'fit_loop', None), '_data_fetcher', None)",
    "class S(TPESampler):\n    def f(self):\n        return [getattr(o, '_rng', None) for o in (self,)]",
    "def f(self):\n    return getattr(self.trainer, '_accelerator_connector')",
    "import lightning as L\nx = L.Trainer()._logger_connector",
])
def test_the_scan_catches_private_access(snippet):
    assert _scan(snippet)


@pytest.mark.parametrize("snippet", [
    "from lightning.pytorch.callbacks import Callback",
    "class A:\n    def __init__(self):\n        self._cache = {}\n\n    def f(self):\n        return self._cache",
    "def f(self):\n    return torch._dynamo",
    "def f(trainer):\n    return trainer.global_step, trainer.__class__",
])
def test_the_scan_passes_public_access(snippet):
    assert not _scan(snippet)


def test_package_uses_no_private_lightning_or_optuna_names():
    paths = [p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))]
    trees = {p: ast.parse(p.read_text(), str(p)) for p in paths}
    ours = defined_names(list(trees.values()))
    found = [hit for p, tree in trees.items() for hit in private_uses(tree, ours, str(p.relative_to(REPO)))]
    assert not found, "private attributes of other libraries (Lightning, Optuna, ...):\n" + "\n".join(found)
