"""`train.compile`: the model's forward through `torch.compile`, with a logged fallback to eager.

The compiled function is held apart from the module tree, so parameters, state-dict keys and
checkpoints are the same with and without it. Compilation happens at the first call (TorchDynamo traces
lazily); when it fails there (a family with data-dependent shapes, e.g. dnaHNet's chunking, or a
machine without a C++ compiler for Inductor), the run logs the reason once and continues in eager mode:
the result is the same model, only slower.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class MaybeCompiled:
    """Calls `torch.compile(model.forward)` when `enabled`, else (or after it failed once) the model."""

    def __init__(self, model: torch.nn.Module, enabled: bool, name: str = "model"):
        self.model, self.name = model, name
        self.compiled = torch.compile(model.forward) if enabled else None
        self.fell_back: str | None = None  # why compilation was abandoned, if it was

    def __call__(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eagerly
                self.compiled = None
                self.fell_back = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
                log.warning("torch.compile of %s failed, training eagerly instead (%s)", self.name, self.fell_back)
        return self.model(*args, **kwargs)
