"""Weight initialisation shared by the families (GPT-2 / H-Net style; docs/FIDELITY.md, the "Init" rows)."""

from __future__ import annotations

import math

from torch import nn

# Linear layers whose output is added to the residual stream (Mamba-2's out_proj comes from a module
# that mirrors mamba_ssm and carries no flag of ours).
RESIDUAL_OUT_NAMES = ("out_proj", "fc2")


def init_weights(module: nn.Module, n_residuals: int, std: float = 0.02, embedding_std: float = 0.02) -> None:
    """Linear weights N(0, std); residual output projections N(0, std / sqrt(n_residuals));
    embeddings N(0, embedding_std); biases zero.

    Modules flagged `_no_reinit` (dnaHNet's router and residual projection) keep their own init, and
    so do modules with parameters that own their init (Mamba-2's conv, dt_bias, A_log, D).
    """
    for name, sub in module.named_modules():
        if getattr(sub, "_no_reinit", False) or any(
            getattr(p, "_no_reinit", False) for p in sub.parameters(recurse=False)
        ):
            continue
        if isinstance(sub, nn.Linear):
            is_out = getattr(sub, "_is_residual_out", False) or name.endswith(RESIDUAL_OUT_NAMES)
            scale = 1.0 / math.sqrt(n_residuals) if is_out else 1.0
            nn.init.normal_(sub.weight, mean=0.0, std=std * scale)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Embedding):
            nn.init.normal_(sub.weight, mean=0.0, std=embedding_std)
