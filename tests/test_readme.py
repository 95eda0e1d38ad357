"""The README's install instructions: the GPU example installs a CUDA build of torch, not the CPU default."""

import re
import shutil
import subprocess
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
