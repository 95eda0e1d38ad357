"""Analytic FLOP accounting (DESIGN.md section 5).

Conventions, the same for every family:
- a multiply-add is 2 FLOPs; training = 3 x forward (backward = 2 x forward);
- token embeddings are a lookup (0 FLOPs); the LM head counts 2 d V;
- attention scores and values count the **full** context of each query (Chinchilla's convention, and
  what `FlopCounterMode` counts for `scaled_dot_product_attention` under the MATH backend): L keys for
  global attention, min(L, window + 1) for a sliding window. Causality is not halved;
- softmax counts 3 FLOPs per score; norms, activations and residual adds are not counted (they are
  O(d) per token and invisible to `FlopCounterMode`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FlopsPerToken:
    """FLOPs per token at a given context length."""

    forward: float  # one forward pass
    training: float  # forward + backward (3 x forward)

    @classmethod
    def from_forward(cls, forward: float) -> FlopsPerToken:
        return cls(forward=float(forward), training=3.0 * float(forward))

    def __add__(self, other: FlopsPerToken) -> FlopsPerToken:
        return FlopsPerToken(self.forward + other.forward, self.training + other.training)

    def scale(self, factor: float) -> FlopsPerToken:
        return FlopsPerToken(self.forward * factor, self.training * factor)


def attention_flops(d_model: int, n_heads: int, head_dim: int, seq_len: int, window: int | None = None) -> float:
    """Forward FLOPs per token of one attention mixer (QKV, scores, softmax, values, output)."""
    inner = n_heads * head_dim
    context = seq_len if window is None else min(seq_len, window + 1)
    qkv = 6 * d_model * inner
    scores = 2 * context * inner
    softmax = 3 * n_heads * context
    values = 2 * context * inner
    out = 2 * inner * d_model
    return float(qkv + scores + softmax + values + out)


def swiglu_flops(d_model: int, d_intermediate: int) -> float:
    """fc1 (d -> 2 d_int) + fc2 (d_int -> d)."""
    return float(6 * d_model * d_intermediate)


def mamba2_flops(
    d_model: int,
    d_state: int = 128,
    expand: int = 2,
    headdim: int = 64,
    ngroups: int = 1,
    d_conv: int = 4,
    chunk_size: int | None = None,
) -> float:
    """Forward FLOPs per token of one Mamba-2 mixer.

    in_proj 2 d (2 e d + 2 ng n + heads), conv 2 (e d + 2 ng n) w, SSD ~6 e d n (state update and
    readout, the recurrence's cost), gating ~5 e d, out_proj 2 e d d. `chunk_size` is accepted for
    symmetry with the chunked algorithm, whose intra-chunk quadratic term is an implementation detail
    not counted here (the kernel and the recurrence do the same useful work).
    """
    d_inner = expand * d_model
    nheads = d_inner // headdim
    in_proj = 2 * d_model * (2 * d_inner + 2 * ngroups * d_state + nheads)
    conv = 2 * (d_inner + 2 * ngroups * d_state) * d_conv
    ssd = 6 * d_inner * d_state
    gating = 5 * d_inner
    out = 2 * d_inner * d_model
    return float(in_proj + conv + ssd + gating + out)


def lm_head_flops(d_model: int, vocab_size: int) -> float:
    return float(2 * d_model * vocab_size)


def fft_conv_flops(channels: int, seq_len: int) -> float:
    """FFT long convolution per token (DESIGN.md: ~10 log2(2L) per channel)."""
    return float(10 * math.log2(2 * seq_len) * channels)
