"""SwiGLU feed-forward block (DESIGN.md section 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def round_up(value: float, multiple: int) -> int:
    """Smallest multiple of `multiple` that is >= value."""
    return int(-(-int(round(value)) // multiple) * multiple)


class SwiGLU(nn.Module):
    """fc1: d -> 2 d_int, silu(a) * b, fc2: d_int -> d; no biases."""

    def __init__(self, d_model: int, d_intermediate: int, device=None, dtype=None):
        super().__init__()
        self.d_intermediate = d_intermediate
        self.fc1 = nn.Linear(d_model, 2 * d_intermediate, bias=False, device=device, dtype=dtype)
        self.fc2 = nn.Linear(d_intermediate, d_model, bias=False, device=device, dtype=dtype)
        self.fc2._is_residual_out = True  # scaled down at init (see dnahnet.nn.init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # 2 x (..., d_int)
        return self.fc2(F.silu(gate) * value)
