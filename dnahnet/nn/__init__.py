"""Shared layers: norms, MLP, rotary, attention, Mamba-2, residual blocks."""

from dnahnet.nn.attention import Attention, AttentionCache
from dnahnet.nn.block import Block, BlockSpec, BlockStack, make_block
from dnahnet.nn.lm import LanguageModel, LMOutput, ParamCounts
from dnahnet.nn.mlp import SwiGLU
from dnahnet.nn.norm import RMSNorm
from dnahnet.nn.rotary import RotaryEmbedding

__all__ = [
    "Attention", "AttentionCache", "Block", "BlockSpec", "BlockStack", "LanguageModel", "LMOutput",
    "Mamba2", "ParamCounts", "RMSNorm", "RMSNormGated", "RotaryEmbedding", "SwiGLU", "make_block",
]


def __getattr__(name):  # Mamba-2 is imported lazily: it is the heaviest module of the package
    if name in ("Mamba2", "RMSNormGated"):
        from dnahnet.nn import mamba2

        return getattr(mamba2, name)
    raise AttributeError(name)
