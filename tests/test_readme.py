"""The README: the GPU example installs a CUDA build of torch, not the CPU default; every bash block runs, in
order, on a fresh copy of the repository."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def gpu_commands() -> list[str]:
    return [line for line in (ROOT / "README.md").read_text().splitlines()
            if line.startswith("make ") and "TORCH_SPEC=" in line]


def test_gpu_install_names_a_cuda_build_and_its_index():
    cpu_default = re.search(r"^TORCH_SPEC \?= (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    commands = gpu_commands()
    assert commands, "the README shows no GPU install command"
    for cmd in commands:
        spec = re.search(r"TORCH_SPEC=(\S+)", cmd).group(1).strip("'\"")
        assert spec != cpu_default, f"the GPU example installs the CPU default: {cmd}"
        cuda = re.fullmatch(r"torch==[\d.]+\+(cu\d+)", spec)
        assert cuda, f"not a CUDA build of torch: {spec}"
        index = re.search(r"PIP_EXTRA_INDEX_URL=(\S+)", cmd)
        assert index and index.group(1).rstrip("/").endswith("/whl/" + cuda.group(1)), cmd


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_hands_the_cuda_spec_to_pip(tmp_path):
    (cmd,) = gpu_commands()[:1]
    settings = [a for a in cmd.split()[2:] if "=" in a]
    dry = subprocess.run(["make", "-n", "-B", f"VENV={tmp_path / 'venv'}", *settings, "install"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    spec = re.search(r"TORCH_SPEC=(\S+)", cmd).group(1)
    assert f'pip install -q "{spec}"' in dry.stdout


# ------------------------------------------------------------------------------ every block, in order
# Commands of the README's bash blocks that this test does not run, each with why (a new command is run
# unless listed here: a README edit cannot silently drop out of the test).
NOT_RUN = {
    r"^make (demo|test)$": "installs a virtual environment and runs the demo or the whole suite (tests/test_demo.py"
                           " runs the demo's steps)",
    r"^rm -rf \.venv$": "the GPU install: removes the environment",
    r"^make test TORCH_SPEC=": "the GPU install (a CUDA build of torch; see the two tests above)",
    r"^\.venv/bin/python -c .*cuda": "the GPU install's check",
    r"^pip install ": "installs packages (the tracking extra is installed with the test environment)",
    r"sweeps/tune\.py ": "an Optuna study of 20 trials (tests/sweeps/test_tune.py runs small studies)",
    r"--ladder cpu --overrides": "the reference ladder: hours on a CPU",
    r"--launcher slurm": "needs a SLURM cluster",
    r"^D=\.\./shared/data$": "the evaluations' real data (tests/evals run the evaluations on small data)",
    r"^python -m dnahnet\.evals\.": "the evaluations need the shared corpus's annotations and assays",
}
# Shrinks the README documents: `train.max_steps=` overrides, `--threads 1` on a busy CPU.
SHRINK = {"train.max_steps=600": "train.max_steps=20", "train.max_steps=100": "train.max_steps=20"}


def readme_commands() -> list[str]:
    """The commands of the README's bash blocks, in order, continuation lines joined, comments dropped."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for cmd in re.sub(r"\\\n\s*", "", block).splitlines():
            cmd = re.sub(r"\s+#.*$", "", cmd).strip()
            if cmd and not cmd.startswith("#"):
                commands.append(cmd)
    return commands


def fresh_copy(tmp: Path) -> Path:
    """The repository's tracked files (as they are on disk) in tmp/repo, and a small corpus where the
    README's default data lives (../shared/data/genomes, next to the repository)."""
    from tests.helpers.synthetic_corpus import markov_corpus

    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    repo = tmp / "repo"
    for name in filter(None, files.stdout.split("\0")):
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    markov_corpus(tmp / "shared" / "data" / "genomes", 4, 200_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    return repo


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DNAHNET_README_TEST") != "1",
                    reason="runs every README command in order (two cpu-smoke sweeps, the trainings, an export): "
                           "tens of minutes on 2 cores, beyond the suite's budget; `make test-readme` runs it")
def test_every_readme_block_runs_in_order_on_a_fresh_copy(tmp_path):
    """Each command of the README, in order, in a fresh copy of the repository with its default data next
    to it: exit 0, no traceback, no `error:` line, no runpy warning. Only the commands listed in NOT_RUN are
    left out, and the only changes are the README's own shrinks (SHRINK)."""
    for name in ("tensorboard", "mlflow", "wandb"):  # the README's train.loggers=csv,tensorboard,mlflow,wandb
        pytest.importorskip(name, reason='the tracking extra: pip install -e ".[tracking]"')
    commands = readme_commands()
    skipped = {c for c in commands if any(re.search(p, c) for p in NOT_RUN)}
    assert {p for p in NOT_RUN if not any(re.search(p, c) for c in commands)} == set(), "a NOT_RUN entry is stale"
    repo = fresh_copy(tmp_path)
    py_bin = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_", "DNAHNET_"))}
    env.update(PYTHONPATH=str(repo), PATH=py_bin + os.pathsep + env.get("PATH", ""), OMP_NUM_THREADS="1",
               DNAHNET_CACHE=str(tmp_path / "cache"), WANDB_MODE="offline", WANDB_DIR=str(tmp_path / "wandb"),
               WANDB_CONFIG_DIR=str(tmp_path / "wandb"), WANDB_CACHE_DIR=str(tmp_path / "wandb"))
    ran = []
    for cmd in commands:
        if cmd in skipped:
            continue
        for old, new in SHRINK.items():
            cmd = cmd.replace(old, new)
        cmd = cmd.replace("--out /tmp/store", f"--out {tmp_path / 'store'}")  # not a shared /tmp path
        proc = subprocess.run(["bash", "-c", f"python() {{ {py_bin}/python \"$@\"; }}; {cmd}"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=1800)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, (cmd, out[-3000:])
        assert "Traceback" not in out and "RuntimeWarning" not in out, (cmd, out[-3000:])
        assert not [line for line in out.splitlines() if line.startswith("error:")], (cmd, out[-3000:])
        ran.append(cmd)
    assert len(ran) >= 12, ran
    # What the blocks promise to leave behind.
    assert (repo / "runs" / "analysis" / "summary.md").is_file()
    assert (repo / "runs" / "sweep-dn" / "mlflow.db").is_file()
    assert (repo / "exported" / "hnet-tiny" / "model.safetensors").is_file()
    assert (repo / "runs" / "plan-tf" / "plan.csv").is_file() and (repo / "runs" / "sweep-tf" / "results.csv").is_file()
