"""StripedHyena 2 (Evo 2's architecture), reimplemented from scratch (DESIGN.md section 4).

Each layer is a pre-norm residual block, RMSNorm -> mixer -> residual, RMSNorm -> SwiGLU -> residual
(the shared `dnahnet.nn.Block`). Mixers follow a repeating pattern of letters:

    S  Hyena-SE (short explicit filter, 7 taps)
    M  Hyena-MR (medium regularised explicit filter, 128 taps, fixed decay)
    L  Hyena-LI (long implicit modal filter, FFT convolution)
    A  multi-head attention (the shared `dnahnet.nn.Attention`, rotary on the full head dim)

Evo 2's period-7 stripe "SMLASML" puts attention at layers 3, 10, 17, ... A final RMSNorm, untied
embedding and LM head (as Transformer++). The Hyena operator and its filters live in baselines/hyena.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from baselines.hyena import HyenaOperator, HyenaSpec, hyena_flops
from dnahnet import flops as F
from dnahnet.nn import Attention, Block, BlockStack, LanguageModel, LMOutput
from dnahnet.nn.init import init_weights
from dnahnet.nn.mlp import round_up
from dnahnet.registry import register_family
from dnahnet.tokenizer import VOCAB_SIZE

MIXER_LETTERS = {"S": "SE", "M": "MR", "L": "LI", "A": "attention"}


@dataclass
class StripedHyenaConfig:
    d_model: int = 64  # residual width d
    n_layers: int = 7  # blocks (mixer + SwiGLU each)
    n_heads: int = 4  # attention heads in the "A" layers (head_dim = d_model / n_heads)
    d_intermediate: int = 0  # SwiGLU hidden width; 0 = 8/3 d rounded up to `mlp_multiple`
    mlp_multiple: int = 128  # rounding of the automatic d_intermediate (smaller at tiny sizes)
    pattern: str = "SMLASML"  # mixer letters repeated over the layers: S=SE, M=MR, L=LI, A=attention
    filter_group_size: int = 16  # channels sharing one SE / MR filter (one filter per group)
    featurizer_length: int = 3  # taps of the causal depthwise featurizer conv over the 3d channels
    se_length: int = 7  # Hyena-SE filter taps
    mr_length: int = 128  # Hyena-MR filter taps
    mr_decay_min: float = 0.01  # smallest MR decay rate r_g (rates log-spaced over the groups)
    mr_decay_max: float = 100.0  # largest MR decay rate r_g
    l_train: int = 128  # L_train in the MR decay exp(-r_g t/(L_train-1)); Savanna spans the 128 taps
    li_order: int = 16  # modal states per channel in Hyena-LI
    li_p_init: float = -1.0  # LI poles lambda = -exp(p) exp(gamma): initial p
    li_gamma_min: float = 0.01  # exp(gamma) ~ U[li_gamma_min, li_gamma_max] at init
    li_gamma_max: float = 0.1  # (decay time constants of ~27 to ~270 positions with p = -1)
    fft_min_length: int = 128  # explicit filters this long or longer run by FFT (MR), shorter by conv1d (SE)
    vocab_size: int = VOCAB_SIZE  # nucleotide vocabulary incl. special tokens
    rotary_base: float = 10000.0  # rotary frequency base of the attention layers
    attn_backend: str = "auto"  # "auto" | "torch" | "kernel" (flash-attn)
    init_std: float = 0.02  # std of linear weights (output projections scaled by 1/sqrt(2 n_layers))
    hyena_in_std: float = 0.0  # std of Hyena in_proj; 0 = sqrt(2/(5 d)) ("small init", Savanna's default)

    def __post_init__(self):
        if not self.pattern or set(self.pattern) - set(MIXER_LETTERS):
            raise ValueError(
                f"StripedHyenaConfig.pattern={self.pattern!r}: use letters from {''.join(MIXER_LETTERS)}"
            )
        if self.n_layers < 1:
            raise ValueError(f"StripedHyenaConfig.n_layers must be >= 1, got {self.n_layers}")
        if self.d_model % self.filter_group_size:
            raise ValueError(
                f"StripedHyenaConfig.filter_group_size={self.filter_group_size} must divide d_model={self.d_model}"
            )
        if "A" in self.layer_letters and self.d_model % self.n_heads:
            raise ValueError(f"StripedHyenaConfig.n_heads={self.n_heads} must divide d_model={self.d_model}")
        if self.l_train < 2:
            raise ValueError(f"StripedHyenaConfig.l_train must be >= 2, got {self.l_train}")

    @property
    def d_ff(self) -> int:
        return self.d_intermediate or round_up(8 * self.d_model / 3, self.mlp_multiple)

    @property
    def layer_letters(self) -> str:
        """One mixer letter per layer: the pattern repeated and cut to n_layers."""
        return (self.pattern * -(-self.n_layers // len(self.pattern)))[: self.n_layers]

    @property
    def hyena_spec(self) -> HyenaSpec:
        return HyenaSpec(
            featurizer_length=self.featurizer_length, group_size=self.filter_group_size,
            se_length=self.se_length, mr_length=self.mr_length,
            mr_decay_range=(self.mr_decay_min, self.mr_decay_max), l_train=self.l_train,
            li_order=self.li_order, li_p_init=self.li_p_init,
            li_gamma_range=(self.li_gamma_min, self.li_gamma_max), fft_min_length=self.fft_min_length,
        )


class StripedHyenaLM(LanguageModel):
    def __init__(self, config: StripedHyenaConfig):
        super().__init__()
        self.config = config
        c = config
        blocks = []
        for letter in c.layer_letters:
            if letter == "A":
                mixer = Attention(c.d_model, c.n_heads, rotary_base=c.rotary_base, backend=c.attn_backend)
            else:
                mixer = HyenaOperator(c.d_model, MIXER_LETTERS[letter], c.hyena_spec)
            blocks.append(Block(mixer, c.d_model, c.d_ff))
        self.embedding = nn.Embedding(c.vocab_size, c.d_model)
        self.backbone = BlockStack(blocks, c.d_model, final_norm=True)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        init_weights(self, n_residuals=2 * c.n_layers, std=c.init_std, embedding_std=c.init_std)
        # q * k * v is cubic in the projection: at std 0.02 its output would start ~1e-3 of its input.
        in_std = c.hyena_in_std or math.sqrt(2 / (5 * c.d_model))
        for mixer in self.hyena_operators():
            nn.init.normal_(mixer.in_proj.weight, mean=0.0, std=in_std)

    def hyena_operators(self) -> list[HyenaOperator]:
        return [b.mixer for b in self.backbone.blocks if isinstance(b.mixer, HyenaOperator)]

    def forward(self, input_ids: torch.Tensor) -> LMOutput:
        h = self.backbone(self.embedding(input_ids))  # (B, L, D)
        return LMOutput(logits=self.lm_head(h))  # (B, L, V)

    # ------------------------------------------------------------------ FLOPs
    def flops_breakdown(self, seq_len: int) -> dict[str, float]:
        """Forward FLOPs per token by part, summed over layers.

        Keys: Hyena parts (see baselines.hyena.hyena_flops: hyena_proj, featurizer, se_conv, mr_fft or
        mr_conv, li_fft), "attention" (dnahnet.flops.attention_flops, full L as Chinchilla) of which
        "attention_softmax" (3 h L) is the part FlopCounterMode does not see, "mlp", "lm_head".
        `attention_softmax` is informational: it is already inside `attention`.
        """
        c = self.config
        parts: dict[str, float] = {}

        def add(key: str, value: float) -> None:
            parts[key] = parts.get(key, 0.0) + value

        for letter in c.layer_letters:
            if letter == "A":
                add("attention", F.attention_flops(c.d_model, c.n_heads, c.d_model // c.n_heads, seq_len))
                add("attention_softmax", float(3 * c.n_heads * seq_len))
            else:
                for key, value in hyena_flops(c.d_model, MIXER_LETTERS[letter], seq_len, c.hyena_spec).items():
                    add(key, value)
            add("mlp", F.swiglu_flops(c.d_model, c.d_ff))
        add("lm_head", F.lm_head_flops(c.d_model, c.vocab_size))
        return parts

    def flops_per_token(self, seq_len: int) -> F.FlopsPerToken:
        parts = self.flops_breakdown(seq_len)
        total = sum(v for k, v in parts.items() if k != "attention_softmax")
        return F.FlopsPerToken.from_forward(total)

    # ------------------------------------------------------------------ decoding
    def init_cache(self, batch_size: int, max_seqlen: int) -> list:
        p = self.lm_head.weight
        return self.backbone.allocate_cache(batch_size, max_seqlen, device=p.device, dtype=p.dtype)

    def prefill(self, input_ids: torch.Tensor, cache: list) -> torch.Tensor:
        """The prompt (B, P) in one parallel pass (FFT convolutions, the LI state in closed form) into a
        fresh cache; the logits (B, V) after its last position."""
        h = self.backbone(self.embedding(input_ids), cache=cache)  # (B, P, D)
        return self.lm_head(h[:, -1])  # (B, V)

    def step(self, tokens: torch.Tensor, cache: list) -> torch.Tensor:
        h = self.backbone.step(self.embedding(tokens), cache)  # (B, D)
        return self.lm_head(h)  # (B, V)


def _preset(d_model: int, n_layers: int, n_heads: int, mlp_multiple: int = 128, **extra):
    return lambda: StripedHyenaConfig(
        d_model=d_model, n_layers=n_layers, n_heads=n_heads, mlp_multiple=mlp_multiple, **extra
    )


# `tiny` trains on a CPU in seconds (one full period of the stripe); `small` matches Transformer++
# `small` (~3M) for benchmarks; the rest are paper-like sizes. Non-embedding parameters ~12.3 d^2 per
# layer, Hyena and attention layers alike (in 3 d^2 + out d^2 vs QKV 3 d^2 + out d^2, plus SwiGLU).
# `1b` follows Evo 2 1B's shape (d 1920, 25 layers, 15 heads of 128, SwiGLU 5120).
PRESETS = {
    "tiny": _preset(64, 7, 4, mlp_multiple=16),  # 0.36M
    "small": _preset(256, 4, 4, mlp_multiple=64),  # 3.2M
    "7m": _preset(256, 9, 4, mlp_multiple=64),  # 7.3M
    "40m": _preset(512, 12, 8),  # 38.7M
    "100m": _preset(768, 14, 12),  # 99.4M
    "1b": _preset(1920, 25, 15),  # 1.11B
}

register_family("stripedhyena", StripedHyenaConfig, StripedHyenaLM, PRESETS)
