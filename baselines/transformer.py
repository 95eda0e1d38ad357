"""Transformer++ (LLaMA-style): pre-norm RMSNorm, rotary on the full head dim, SwiGLU, no biases,
untied embeddings, causal attention through the shared attention block (LLaMA-style;
docs/FIDELITY.md, "Transformer++")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dnahnet import flops
from dnahnet import typed_config as cfglib
from dnahnet.family import Recipe, SizeRule, aspect_depth, fixed_depth, plain_shape, width_grid
from dnahnet.nn import BlockSpec, BlockStack, LanguageModel, LMOutput
from dnahnet.nn.init import init_weights
from dnahnet.nn.mlp import round_up
from dnahnet.registry import register_family
from dnahnet.tokenizer import VOCAB_SIZE


@dataclass
class TransformerConfig:
    d_model: int = 64  # residual width
    n_layers: int = 2  # attention + SwiGLU blocks
    n_heads: int = 4  # attention heads (head_dim = d_model / n_heads)
    d_intermediate: int = 0  # SwiGLU hidden width; 0 = 8/3 d rounded up to `mlp_multiple`
    mlp_multiple: int = 128  # rounding of the automatic d_intermediate (smaller at tiny sizes)
    vocab_size: int = VOCAB_SIZE  # nucleotide vocabulary incl. special tokens
    rotary_base: float = 10000.0  # rotary frequency base
    attn_backend: str = field(default="auto", metadata=cfglib.NEUTRAL)  # "auto" | "torch" | "kernel" (flash-attn)
    init_std: float = 0.02  # std of linear weights (output projections scaled by 1/sqrt(2 n_layers))

    @property
    def d_ff(self) -> int:
        return self.d_intermediate or round_up(8 * self.d_model / 3, self.mlp_multiple)


class TransformerLM(LanguageModel):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        spec = BlockSpec(
            d_model=config.d_model, d_intermediate=config.d_ff, n_heads=config.n_heads,
            rotary_base=config.rotary_base, attn_backend=config.attn_backend,
        )
        self.embedding = nn.Embedding(config.vocab_size, config.d_model)
        self.backbone = BlockStack.from_letters("T" * config.n_layers, spec, final_norm=True)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        init_weights(self, n_residuals=2 * config.n_layers, std=config.init_std, embedding_std=config.init_std)

    def forward(self, input_ids: torch.Tensor) -> LMOutput:
        h = self.backbone(self.embedding(input_ids))  # (B, L, D)
        return LMOutput(logits=self.lm_head(h))  # (B, L, V)

    def flops_per_token(self, seq_len: int) -> flops.FlopsPerToken:
        c = self.config
        per_layer = flops.attention_flops(c.d_model, c.n_heads, c.d_model // c.n_heads, seq_len) + flops.swiglu_flops(
            c.d_model, c.d_ff
        )
        return flops.FlopsPerToken.from_forward(c.n_layers * per_layer + flops.lm_head_flops(c.d_model, c.vocab_size))

    def init_cache(self, batch_size: int, max_seqlen: int):
        p = self.lm_head.weight
        return self.backbone.allocate_cache(batch_size, max_seqlen, device=p.device, dtype=p.dtype)

    def prefill(self, input_ids: torch.Tensor, cache) -> torch.Tensor:
        h = self.backbone(self.embedding(input_ids), cache=cache)  # (B, P, D), fills the KV caches
        return self.lm_head(h[:, -1])  # (B, V)

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:
        h = self.backbone.step(self.embedding(tokens), cache)  # (B, D)
        return self.lm_head(h)  # (B, V)


def _preset(d_model: int, n_layers: int, n_heads: int, mlp_multiple: int = 128):
    return lambda: TransformerConfig(d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_multiple=mlp_multiple)


# Sizes: `tiny` trains on a CPU in seconds; the rest follow the usual width/depth ladder up to the
# paper's ~1B scale. Non-embedding parameters ~ 12.3 d^2 n_layers (attention 4 d^2 + SwiGLU ~8.2 d^2).
PRESETS = {
    "tiny": _preset(64, 2, 4, mlp_multiple=16),
    "small": _preset(256, 4, 4, mlp_multiple=64),  # ~3M
    "base": _preset(512, 8, 8),  # ~26M
    "medium": _preset(768, 12, 12),  # ~87M
    "large": _preset(1024, 24, 16),  # ~310M
    "xl": _preset(1536, 24, 16),  # ~700M
    "xxl": _preset(2048, 24, 16),  # ~1.2B
}

# How the sweeps' ladders grow it (sweeps/ladders.py). cpu: Transformer++'s optimum lies at or below width 8
# at 1e12-2e12 FLOPs (the sweeps of 2026-12-07: d8 best by 0.007-0.014 nats), so its grid starts at width 4
# in steps of 4, with one attention head at every width (one shape at every rung, as StripedHyena 2's fixed
# filter groups: at d8 and 1e12, two heads of 4 lost 0.011 nats to one head of 8); 4 layers, SwiGLU rounded
# to 8.
SIZE_RULE = SizeRule(
    shape_fn=plain_shape, min_depth=2,
    recipes={"cpu": Recipe(widths=width_grid(4, 256, 4), head_dim=None, heads=1, mlp_multiple=8, depth=fixed_depth(4)),
             "paper": Recipe(widths=width_grid(256, 4096, 64), head_dim=64, mlp_multiple=128,
                             depth=aspect_depth(64, 2))},
    center_tokens_per_param=350.0,  # as StripedHyena 2 (no published DNA Transformer optimum)
    note="cpu: 4 layers, one attention head (widths from 4); paper: depth = width/64 (>= 2), head dim 64; SwiGLU 8/3 d",
)

register_family("transformer", TransformerConfig, TransformerLM, PRESETS, size_rule=SIZE_RULE)
