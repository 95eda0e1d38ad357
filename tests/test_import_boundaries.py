"""Import boundaries (CONTRIBUTING.md), read from the source with `ast`: every `import` statement, at module
top level and inside functions.

- the core (`dnahnet/`) imports neither its consumers `sweeps` nor `analysis`;
- model code (`dnahnet/model.py`, `dnahnet/nn/`, `baselines/`) imports no Lightning;
- `analysis/` imports no torch at module top level, and importing its modules loads no torch;
- the optional CUDA packages (mamba_ssm, causal_conv1d, flash_attn) are imported only in `dnahnet/kernels.py`;
- the imports among `dnahnet` modules form no cycle.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("dnahnet", "baselines", "sweeps", "analysis", "benchmarks")
CUDA_PACKAGES = ("mamba_ssm", "causal_conv1d", "flash_attn")


@dataclass(frozen=True)
class Import:
    module: str  # the imported module, absolute ("dnahnet.checkpoint", "torch.nn")
    names: tuple[str, ...]  # for `from X import a, b`: ("a", "b"); () for `import X`
    line: int
    top_level: bool  # a statement of the module body (not inside a function, class body or block)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(node) for node in tree.body}
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(alias.name, (), node.lineno, id(node) in top) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..nn import y
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            out.append(Import(base, tuple(a.name for a in node.names), node.lineno, id(node) in top))
    return out


def sources(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (REPO / d).rglob("*.py") if "__pycache__" not in p.parts)


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(paths: list[Path], packages: tuple[str, ...], top_level_only: bool = False) -> list[str]:
    return [f"{p.relative_to(REPO)}:{i.line} imports {i.module}" for p in paths for i in imports_of(p)
            if any(is_under(i.module, pkg) for pkg in packages) and (i.top_level or not top_level_only)]


def test_the_parser_sees_local_and_relative_imports(tmp_path, monkeypatch):
    """The checks below would pass vacuously if the parser missed function-local or relative imports."""
    pkg = tmp_path / "dnahnet" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("import os\nfrom . import sibling\ndef f():\n    from sweeps import plan\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = {(i.module, i.names, i.top_level) for i in imports_of(pkg / "m.py")}
    assert found == {("os", (), True), ("dnahnet.sub", ("sibling",), True), ("sweeps", ("plan",), False)}
    assert violations([pkg / "m.py"], ("sweeps",)) == ["dnahnet/sub/m.py:4 imports sweeps"]


def test_the_core_does_not_import_its_consumers():
    assert violations(sources("dnahnet"), ("sweeps", "analysis")) == []


def test_model_code_does_not_import_lightning():
    paths = [REPO / "dnahnet" / "model.py", *sources("dnahnet/nn", "baselines")]
    assert violations(paths, ("lightning", "pytorch_lightning")) == []


def test_analysis_does_not_import_torch_at_top_level():
    assert violations(sources("analysis"), ("torch",), top_level_only=True) == []


def heavy_modules_after(code: str) -> list[str]:
    """Which of torch and Lightning a fresh interpreter has loaded after running `code` (which must succeed)."""
    code += "\nimport sys\nprint(','.join(m for m in ('torch', 'lightning') if m in sys.modules))\n"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().split(",") if m]


def test_importing_the_analysis_loads_no_torch():
    """`python -m analysis` (figures from the committed logs) runs without torch: importing every analysis
    module, as it does, leaves torch unloaded (what dnahnet it needs, e.g. the Markov floor's data, it imports
    inside the function that needs it)."""
    code = ("import importlib, pkgutil, analysis\n"
            "for m in pkgutil.iter_modules(analysis.__path__):\n"
            "    importlib.import_module('analysis.' + m.name)\n"
            "import analysis.__main__\n")
    assert heavy_modules_after(code) == []


def test_a_runs_configuration_loads_no_torch():
    """A run's configuration modules (`dnahnet.run_config`: overrides, RunConfig, the identity rule;
    TrainConfig, DataConfig) import neither torch nor Lightning, and neither do parsing overrides into the
    training and data configs. (A family's model config lives in the family's module, beside its model:
    resolving or comparing a whole run imports that module, and torch with it.)"""
    code = ("from dnahnet.run_config import RunConfig, config_differences, identity_of, parse_overrides\n"
            "from dnahnet.train_config import TrainConfig\n"
            "from dnahnet.data import DataConfig, data_key\n"
            "from dnahnet import typed_config as cfglib\n"
            "ov = parse_overrides(['train.lr=0.2', 'data.seq_len=64'])\n"
            "assert cfglib.replace(TrainConfig(), **ov.train).lr == 0.2\n"
            "assert cfglib.replace(DataConfig(), **ov.data).seq_len == 64\n")
    assert heavy_modules_after(code) == []


def test_cuda_packages_are_imported_only_by_the_kernels_module():
    paths = [p for p in sources(*SOURCE_DIRS) if p != REPO / "dnahnet" / "kernels.py"]
    assert violations(paths, CUDA_PACKAGES) == []
    assert violations([REPO / "dnahnet" / "kernels.py"], CUDA_PACKAGES)  # where they are imported


def dnahnet_import_graph() -> dict[str, set[str]]:
    """module -> the dnahnet modules it imports (top level or inside functions). `from pkg import name` is an
    edge to pkg.name when that is a module, else to pkg; a module's own parent packages are not edges
    (importing a submodule imports them first, whatever it says)."""
    modules = {module_name(p): p for p in sources("dnahnet")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for i in imports_of(path):
            targets = [f"{i.module}.{n}" if f"{i.module}.{n}" in modules else i.module for n in i.names] or [i.module]
            edges |= {t for t in targets if t in modules and t != name and not name.startswith(t + ".")}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dnahnet_modules_import_each_other_without_cycles():
    graph = dnahnet_import_graph()
    assert "dnahnet.checkpoint" in graph["dnahnet.export"]  # the graph is read (an edge that exists)
    assert find_cycle(graph) is None
