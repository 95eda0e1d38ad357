"""Rotary position embeddings on the first `rotary_dim` channels of each head (non-interleaved)."""

from __future__ import annotations

import torch
from torch import nn


class RotaryEmbedding(nn.Module):
    """Rotates pairs (i, i + rotary_dim/2) of the first rotary_dim channels by position * inv_freq_i.

    H-Net rotates half the head dim, Transformer++ all of it; the remaining channels pass through.
    """

    def __init__(self, rotary_dim: int, base: float = 10000.0):
        super().__init__()
        if rotary_dim % 2:
            raise ValueError(f"rotary_dim must be even, got {rotary_dim}")
        self.rotary_dim = rotary_dim
        inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.float64) / rotary_dim))
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """x: (B, H, L, dh); positions: (L,) or (B, L) integer positions."""
        if self.rotary_dim == 0:
            return x
        angles = positions.to(torch.float32)[..., None] * self.inv_freq  # (..., L, r/2)
        if angles.dim() == 3:  # per-sequence positions (B, L, r/2) -> broadcast over heads
            angles = angles[:, None]
        cos, sin = angles.cos(), angles.sin()
        r = self.rotary_dim
        x_rot, x_pass = x[..., :r].float(), x[..., r:]
        x1, x2 = x_rot[..., : r // 2], x_rot[..., r // 2 :]
        rotated = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)
        return torch.cat([rotated, x_pass], dim=-1)
