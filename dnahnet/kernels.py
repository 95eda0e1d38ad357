"""The one module that imports the optional CUDA packages (mamba_ssm, causal_conv1d, flash_attn).

Every layer has a pure-PyTorch path that is the reference in tests; the fused kernels are optional
extras used only when their package imports *and* the tensors live on a CUDA device. Layers pick
their path with :func:`resolve_backend`:

- ``"torch"``  : always the pure-PyTorch path;
- ``"kernel"`` : the fused kernels, or a clear ``RuntimeError`` saying what is missing;
- ``"auto"``   : the kernels when usable, else the PyTorch path, and the fallback is logged once per
  consumer (``what``) so it is never silent and never spams.

Nothing else in the package may import these packages: grep for them and you land here.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "kernel"]
BACKENDS: tuple[str, ...] = ("auto", "torch", "kernel")

# ----------------------------------------------------------------------------------------------
# Optional imports. Broad `except Exception`: a CUDA extension built against another torch or
# driver fails with OSError/RuntimeError/undefined-symbol errors, not only ImportError, and a
# broken optional package must degrade to the PyTorch path rather than break `import dnahnet`.
# ----------------------------------------------------------------------------------------------
IMPORT_ERRORS: dict[str, str] = {}  # package -> why it did not import

try:
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except Exception as err:  # noqa: BLE001 - see above
    mamba_chunk_scan_combined = None
    selective_state_update = None
    IMPORT_ERRORS["mamba_ssm"] = f"{type(err).__name__}: {err}"

try:
    from causal_conv1d import causal_conv1d_fn, causal_conv1d_update
except Exception as err:  # noqa: BLE001
    causal_conv1d_fn = None
    causal_conv1d_update = None
    IMPORT_ERRORS["causal_conv1d"] = f"{type(err).__name__}: {err}"

try:
    from flash_attn import flash_attn_func, flash_attn_with_kvcache
except Exception as err:  # noqa: BLE001
    flash_attn_func = None
    flash_attn_with_kvcache = None
    IMPORT_ERRORS["flash_attn"] = f"{type(err).__name__}: {err}"

# package -> importable. A dict (not three constants) so tests can monkeypatch availability.
AVAILABLE: dict[str, bool] = {
    "mamba_ssm": mamba_chunk_scan_combined is not None,
    "causal_conv1d": causal_conv1d_fn is not None,
    "flash_attn": flash_attn_func is not None,
}
HAS_MAMBA_SSM: bool = AVAILABLE["mamba_ssm"]
HAS_CAUSAL_CONV1D: bool = AVAILABLE["causal_conv1d"]
HAS_FLASH_ATTN: bool = AVAILABLE["flash_attn"]

# consumer -> packages its kernel path needs. Mamba-2's SSD scan and state update ("mamba2") need only
# mamba_ssm; its causal conv ("mamba2_conv") is a separate choice, so the SSD kernel (most of the time)
# runs even where causal_conv1d is not installed. Attention uses flash_attn.
REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "mamba2": ("mamba_ssm",),
    "mamba2_conv": ("causal_conv1d",),
    "attention": ("flash_attn",),
}

# consumer -> the input dtypes its kernels accept (absent: any). flash-attn takes fp16/bf16 only: a
# float32 input (fp32 training, the evals' default precision, CPU-vs-GPU correctness checks) must take
# the PyTorch path (SDPA) rather than raise inside the kernel.
KERNEL_DTYPES: dict[str, tuple[torch.dtype, ...]] = {
    "attention": (torch.float16, torch.bfloat16),
}

PIP_NAMES = {"mamba_ssm": "mamba-ssm", "causal_conv1d": "causal-conv1d", "flash_attn": "flash-attn"}

_fallback_logged: set[str] = set()


def reset_fallback_log() -> None:
    """Forget which fallbacks were logged (tests use this to observe the log-once behaviour)."""
    _fallback_logged.clear()


def missing_packages(what: str, requires: tuple[str, ...] | None = None) -> list[str]:
    """The packages that `what`'s kernel path needs and that did not import."""
    needed = _requirements(what, requires)
    return [pkg for pkg in needed if not AVAILABLE.get(pkg, False)]


def resolve_backend(
    requested: str,
    device: torch.device | str | None,
    what: str = "mamba2",
    requires: tuple[str, ...] | None = None,
    dtype: torch.dtype | None = None,
) -> Literal["torch", "kernel"]:
    """Decide which path `what` runs on for tensors on `device`.

    Args:
        requested: "auto", "torch" or "kernel".
        device: the device of the tensors the layer is about to process (None means CPU).
        what: the consumer, a key of REQUIREMENTS ("mamba2", "attention"), also the log-once key.
        requires: packages needed, overriding REQUIREMENTS[what] (for consumers defined elsewhere).
        dtype: the dtype of the tensors the kernel would get; a dtype outside KERNEL_DTYPES[what] takes
            the PyTorch path under "auto" (quietly: it is a property of the call, not of the install).

    Returns:
        "kernel" or "torch".

    Raises:
        ValueError: unknown `requested`, or unknown `what` without `requires`.
        RuntimeError: "kernel" was requested but a package is missing or the device is not CUDA.
    """
    if requested not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {requested!r} (for {what})")
    if requested == "torch":
        return "torch"
    device = torch.device("cpu") if device is None else torch.device(device)
    missing = missing_packages(what, requires)
    on_cuda = _is_cuda(device)
    allowed = KERNEL_DTYPES.get(what)
    bad_dtype = dtype is not None and allowed is not None and dtype not in allowed
    if not missing and on_cuda and not bad_dtype:
        return "kernel"
    if not missing and on_cuda and bad_dtype:
        if requested == "kernel":
            names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
            raise RuntimeError(f"backend='kernel' requested for {what}, but its kernels take {names} and the "
                               f"tensors are {str(dtype).removeprefix('torch.')}. Use backend='auto' (the "
                               "PyTorch path for other dtypes) or bf16 autocast.")
        return "torch"
    reason = _reason(what, missing, device)
    if requested == "kernel":
        raise RuntimeError(f"backend='kernel' requested for {what}, but {reason}. "
                           f"Use backend='auto' to fall back to the pure-PyTorch path.")
    if what not in _fallback_logged:
        _fallback_logged.add(what)
        # On CPU the PyTorch path is the only one there is: say so quietly. On CUDA a missing
        # package costs real speed: warn.
        level = logging.WARNING if on_cuda else logging.INFO
        log.log(level, "%s: using the pure-PyTorch path because %s", what, reason)
    return "torch"


def _is_cuda(device: torch.device) -> bool:
    """Whether tensors on `device` can go to the CUDA kernels (a function so that CPU tests can pretend)."""
    return device.type == "cuda"


def _requirements(what: str, requires: tuple[str, ...] | None) -> tuple[str, ...]:
    if requires is not None:
        return tuple(requires)
    if what not in REQUIREMENTS:
        raise ValueError(f"unknown kernel consumer {what!r}; known: {sorted(REQUIREMENTS)} "
                         f"(or pass requires=(...))")
    return REQUIREMENTS[what]


def _reason(what: str, missing: list[str], device: torch.device) -> str:
    parts = []
    if missing:
        details = "; ".join(f"{pkg} ({IMPORT_ERRORS.get(pkg, 'not importable')})" for pkg in missing)
        pips = " ".join(PIP_NAMES.get(pkg, pkg) for pkg in missing)
        parts.append(f"these packages did not import: {details} [pip install {pips}]")
    if device.type != "cuda":
        parts.append(f"the kernels need CUDA tensors and the tensors are on {device}")
    return " and ".join(parts)


def describe() -> dict[str, Any]:
    """Availability summary, for logs and run metadata."""
    return {pkg: (True if ok else IMPORT_ERRORS.get(pkg, False)) for pkg, ok in AVAILABLE.items()}
