"""dnahnet.kernels: backend resolution, clear errors, log-once fallback, single import site."""

import logging
import re
from pathlib import Path

import pytest
import torch

from dnahnet import kernels

PACKAGE_ROOT = Path(kernels.__file__).resolve().parent


@pytest.fixture(autouse=True)
def fresh_log():
    kernels.reset_fallback_log()
    yield
    kernels.reset_fallback_log()


def set_available(monkeypatch, **flags):
    for pkg, ok in flags.items():
        monkeypatch.setitem(kernels.AVAILABLE, pkg, ok)


def test_flags_agree_with_imports():
    assert kernels.HAS_MAMBA_SSM == (kernels.mamba_chunk_scan_combined is not None)
    assert kernels.HAS_CAUSAL_CONV1D == (kernels.causal_conv1d_fn is not None)
    assert kernels.HAS_FLASH_ATTN == (kernels.flash_attn_func is not None)
    for pkg, ok in kernels.AVAILABLE.items():
        assert ok != (pkg in kernels.IMPORT_ERRORS)  # every missing package says why
        assert kernels.describe()[pkg] == (True if ok else kernels.IMPORT_ERRORS[pkg])


def test_torch_is_always_torch(monkeypatch):
    set_available(monkeypatch, mamba_ssm=True, causal_conv1d=True)
    assert kernels.resolve_backend("torch", "cuda", "mamba2") == "torch"
    assert kernels.resolve_backend("torch", None, "mamba2") == "torch"


def test_kernel_missing_package_is_a_clear_error(monkeypatch):
    set_available(monkeypatch, mamba_ssm=False, causal_conv1d=True)
    with pytest.raises(RuntimeError, match=r"backend='kernel'.*mamba2.*mamba_ssm.*pip install mamba-ssm"):
        kernels.resolve_backend("kernel", "cuda", "mamba2")


def test_kernel_on_cpu_is_a_clear_error(monkeypatch):
    set_available(monkeypatch, flash_attn=True)
    with pytest.raises(RuntimeError, match="need CUDA tensors.*cpu"):
        kernels.resolve_backend("kernel", torch.device("cpu"), "attention")


def test_kernel_and_auto_pick_kernels_when_usable(monkeypatch, caplog):
    set_available(monkeypatch, mamba_ssm=True, causal_conv1d=True)
    with caplog.at_level(logging.DEBUG, logger="dnahnet.kernels"):
        assert kernels.resolve_backend("kernel", "cuda", "mamba2") == "kernel"
        assert kernels.resolve_backend("auto", torch.device("cuda", 0), "mamba2") == "kernel"
    assert not caplog.records  # no fallback, nothing logged


def test_auto_falls_back_and_logs_once_per_consumer(monkeypatch, caplog):
    set_available(monkeypatch, mamba_ssm=False, causal_conv1d=False, flash_attn=False)
    with caplog.at_level(logging.INFO, logger="dnahnet.kernels"):
        for _ in range(3):
            assert kernels.resolve_backend("auto", "cpu", "mamba2") == "torch"
        assert kernels.resolve_backend("auto", "cuda", "attention") == "torch"
        assert kernels.resolve_backend("auto", "cuda", "attention") == "torch"
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "dnahnet.kernels"]
    assert len(msgs) == 2
    assert msgs[0][0] == logging.INFO and msgs[0][1].startswith("mamba2:") and "mamba_ssm" in msgs[0][1]
    # on CUDA a missing package costs speed: a warning
    assert msgs[1][0] == logging.WARNING and msgs[1][1].startswith("attention:") and "flash_attn" in msgs[1][1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend must be one of"):
        kernels.resolve_backend("triton", "cpu", "mamba2")
    with pytest.raises(ValueError, match="unknown kernel consumer 'hyena'"):
        kernels.resolve_backend("auto", "cpu", "hyena")
    # a consumer defined elsewhere names its own requirements
    assert kernels.resolve_backend("auto", "cpu", "hyena", requires=("flash_attn",)) == "torch"


def test_only_kernels_module_imports_optional_packages():
    pattern = re.compile(r"^\s*(from|import)\s+(mamba_ssm|causal_conv1d|flash_attn)\b", re.M)
    offenders = [str(p.relative_to(PACKAGE_ROOT)) for p in PACKAGE_ROOT.rglob("*.py")
                 if p.name != "kernels.py" or p.parent != PACKAGE_ROOT
                 if pattern.search(p.read_text())]
    assert offenders == []
    assert pattern.search((PACKAGE_ROOT / "kernels.py").read_text())  # the check can see an import
