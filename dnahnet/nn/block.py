"""Residual blocks "mixer + optional MLP" and stacks of them, built from layout letters.

Layout letters (the H-Net convention, Hwang, Wang, Gu 2025; `dnahnet/layout.py` reads the layout strings):
    m  Mamba-2 without MLP        M  Mamba-2 + SwiGLU MLP
    t  attention without MLP      T  attention + SwiGLU MLP
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.utils.checkpoint
from torch import nn

from dnahnet.nn.attention import Attention
from dnahnet.nn.mlp import SwiGLU
from dnahnet.nn.norm import RMSNorm

LAYOUT_LETTERS = "mMtT"


@dataclass
class BlockSpec:
    """Everything needed to build the blocks of one stage (or of a plain model)."""

    d_model: int  # residual width
    d_intermediate: int = 0  # SwiGLU hidden width for upper-case letters (0 = no MLP anywhere)
    n_heads: int = 4  # attention heads
    rotary_dim: int | None = None  # rotary channels per head (None = whole head)
    window: int | None = None  # sliding window for attention (None = global)
    rotary_base: float = 10000.0  # rotary frequency base
    attn_backend: str = "auto"  # "auto" | "torch" | "kernel" (flash-attn)
    mamba: dict = field(default_factory=dict)  # extra Mamba2 kwargs (d_state, headdim, expand, ...)


class Block(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)), then x + mlp(norm(x)) when an MLP is present.

    `norm_eps` and `mlp_activation` default to what Transformer++ and dnaHNet use (RMSNorm eps 1e-5,
    SwiGLU); StripedHyena 2 passes Evo 2's (eps 1e-6, GELU / identity gates).
    """

    def __init__(
        self, mixer: nn.Module, d_model: int, d_intermediate: int = 0, norm_eps: float = 1e-5,
        mlp_activation: str = "silu",
    ):
        super().__init__()
        self.norm1 = RMSNorm(d_model, eps=norm_eps)
        self.mixer = mixer
        self.norm2 = RMSNorm(d_model, eps=norm_eps) if d_intermediate > 0 else None
        self.mlp = SwiGLU(d_model, d_intermediate, activation=mlp_activation) if d_intermediate > 0 else None
        # Activation checkpointing (`set_activation_checkpointing`): in training, keep only the block's input
        # and recompute the rest in backward. Non-reentrant: works with FSDP2, torch.compile and inputs
        # that do not require grad; the recomputation is the same computation, so gradients are identical.
        self.checkpointing = False

    def forward(self, x: torch.Tensor, cache=None) -> torch.Tensor:
        if self.checkpointing and cache is None and self.training and torch.is_grad_enabled():
            return torch.utils.checkpoint.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x, cache)

    def _forward(self, x: torch.Tensor, cache=None) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x), cache=cache)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x

    def allocate_cache(self, batch_size: int, max_seqlen: int, device=None, dtype=None):
        return self.mixer.allocate_cache(batch_size, max_seqlen, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, cache) -> torch.Tensor:
        x = x + self.mixer.step(self.norm1(x), cache)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


def set_activation_checkpointing(model: nn.Module, enabled: bool = True) -> int:
    """Turn activation checkpointing on (or off) in every Block of `model`; returns how many blocks."""
    blocks = [m for m in model.modules() if isinstance(m, Block)]
    for block in blocks:
        block.checkpointing = enabled
    return len(blocks)


def make_block(letter: str, spec: BlockSpec, layer_idx: int | None = None) -> Block:
    """Build one block from a layout letter."""
    if letter not in LAYOUT_LETTERS:
        raise ValueError(f"unknown layout letter {letter!r}; expected one of {LAYOUT_LETTERS!r}")
    d_int = spec.d_intermediate if letter.isupper() else 0
    if letter.lower() == "m":
        from dnahnet.nn.mamba2 import Mamba2

        mixer = Mamba2(spec.d_model, layer_idx=layer_idx, **spec.mamba)
    else:
        mixer = Attention(
            spec.d_model, spec.n_heads, rotary_dim=spec.rotary_dim, window=spec.window,
            rotary_base=spec.rotary_base, backend=spec.attn_backend,
        )
    return Block(mixer, spec.d_model, d_int)


class BlockStack(nn.Module):
    """A sequence of blocks with an optional final RMSNorm; caches are a list, one per block."""

    def __init__(self, blocks: list[Block], d_model: int, final_norm: bool = True, norm_eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.norm_f = RMSNorm(d_model, eps=norm_eps) if final_norm else None

    @classmethod
    def from_letters(cls, letters: str, spec: BlockSpec, final_norm: bool = True) -> BlockStack:
        return cls([make_block(c, spec, i) for i, c in enumerate(letters)], spec.d_model, final_norm)

    def forward(self, x: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            x = block(x, cache=None if cache is None else cache[i])
        return self.norm_f(x) if self.norm_f is not None else x

    def allocate_cache(self, batch_size: int, max_seqlen: int, device=None, dtype=None) -> list:
        return [b.allocate_cache(batch_size, max_seqlen, device=device, dtype=dtype) for b in self.blocks]

    def step(self, x: torch.Tensor, cache: list) -> torch.Tensor:
        for block, block_cache in zip(self.blocks, cache, strict=True):
            x = block.step(x, block_cache)
        return self.norm_f(x) if self.norm_f is not None else x
