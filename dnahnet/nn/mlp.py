"""Gated feed-forward block: SwiGLU by default (as H-Net; docs/FIDELITY.md, "MLP"), other gate activations on
request."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def round_up(value: float, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= value."""
    return int(-(-int(round(value)) // multiple) * multiple)


# Gate activations. "gelu" is the exact (erf) GELU, as Savanna's ParallelGLU calls F.gelu
# (Zymrael/savanna savanna/model/activations.py, bias_gelu_fusion off); "identity" is the bilinear GLU
# that Evo 2 uses in every layer but the first (see baselines/striped_hyena.py).
def identity(x: torch.Tensor) -> torch.Tensor:
    return x


GATE_ACTIVATIONS = {"silu": F.silu, "gelu": F.gelu, "identity": identity}


class SwiGLU(nn.Module):
    """fc1: d -> 2 d_int, act(a) * b, fc2: d_int -> d; no biases. act = silu (SwiGLU) unless asked otherwise."""

    def __init__(self, d_model: int, d_intermediate: int, activation: str = "silu", device=None, dtype=None):
        super().__init__()
        if activation not in GATE_ACTIVATIONS:
            raise ValueError(f"unknown MLP activation {activation!r}; expected one of {sorted(GATE_ACTIVATIONS)}")
        self.d_intermediate = d_intermediate
        self.activation = activation
        self.act = GATE_ACTIVATIONS[activation]
        self.fc1 = nn.Linear(d_model, 2 * d_intermediate, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(d_intermediate, d_model, bias=False, device=device, dtype=dtype)
        self.fc2._is_residual_out = True  # scaled down at init (see dnahnet.nn.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # 2 x (..., d_int)
        return self.fc2(self.act(gate) * value)

    def extra_repr(self) -> str:
        return f"activation={self.activation}"
