"""Analytic FLOP accounting, per layer (Chinchilla, Hoffmann et al. 2022, and H-Net appendix B style; every
family's counts and choices: docs/FIDELITY.md, the "FLOPs" rows).

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
    """Forward FLOPs per token of one Mamba-2 mixer (e = expand, n = d_state, ng = ngroups, w = d_conv).

    in_proj 2 d (2 e d + 2 ng n + heads), conv 2 (e d + 2 ng n) w, SSD 6 e d n, gating 5 e d,
    out_proj 2 e d d.

    Convention for the SSD: it counts the **recurrence's** work, 6 e d n per token (decay, input outer
    product and readout of the (headdim x n) state per head), whatever the algorithm, so a model's budget
    does not depend on the chunk size or on which kernel runs; `chunk_size` is accepted and ignored.
    The chunked algorithm that trains the models (`dnahnet.nn.ssd.ssd_chunked`) does other work, all of
    it matmuls (`ssd_chunked_flops`, exactly what `FlopCounterMode` counts): chunk states and off-diagonal
    readout 4 e d n, plus the intra-chunk quadratic form 2 Q (e d + ng n) and the inter-chunk state
    passing 2 (c+1)^2 e d n / L (Q = chunk size, c = chunks), per token. That intra-chunk term is work
    this count leaves out: with d 256, n 128, Q 256 it is 2 x 256 x (512 + 128) = 328k FLOPs per token
    per layer, a quarter of this function's 1.32M. The elementwise parts (the 2 e d n of the
    recurrence that are not matmuls, the 5 e d gating) are invisible to `FlopCounterMode`. So on the
    chunked path FlopCounterMode counts exactly `mamba2_chunked_flops`, which differs from this function
    by ssd_chunked_flops - 6 e d n - 5 e d (tested in tests/test_flops.py).
    """
    d_inner = expand * d_model
    nheads = d_inner // headdim
    in_proj = 2 * d_model * (2 * d_inner + 2 * ngroups * d_state + nheads)
    conv = 2 * (d_inner + 2 * ngroups * d_state) * d_conv
    ssd = 6 * d_inner * d_state
    gating = 5 * d_inner
    out = 2 * d_inner * d_model
    return float(in_proj + conv + ssd + gating + out)


def ssd_chunked_flops(d_ssm: int, d_state: int, ngroups: int, chunk_size: int, seq_len: int) -> float:
    """Matmul FLOPs per (real) token of `dnahnet.nn.ssd.ssd_chunked` on one sequence of `seq_len`
    (forward): what `FlopCounterMode` counts for it. Q = min(chunk_size, L) and c = ceil(L / Q) chunks;
    the last chunk is padded to Q, so the per-chunk terms count L' = c Q positions:

    - intra-chunk C B^T: 2 Q ng n per padded position; applied to dt x: 2 Q d_ssm;
    - each chunk's final state (B^T x) and the off-diagonal readout (C h): 2 d_ssm n each;
    - state passing between chunks, a (c+1) x (c+1) segment-sum matrix per head: 2 (c+1)^2 d_ssm n
      per sequence.
    """
    q = min(chunk_size, seq_len)
    c = -(-seq_len // q)
    padded = c * q
    per_padded = 2 * q * ngroups * d_state + 2 * q * d_ssm + 4 * d_ssm * d_state
    return float((per_padded * padded + 2 * (c + 1) ** 2 * d_ssm * d_state) / seq_len)


def mamba2_chunked_flops(
    d_model: int,
    seq_len: int,
    d_state: int = 128,
    expand: int = 2,
    headdim: int = 64,
    ngroups: int = 1,
    d_conv: int = 4,
    chunk_size: int = 256,
) -> float:
    """Forward FLOPs per token of one Mamba-2 mixer on the chunked path as `FlopCounterMode` counts them
    (matmuls and the convolution only): `mamba2_flops` with its SSD and gating terms replaced by
    `ssd_chunked_flops`. For checks and benchmarks; budgets use `mamba2_flops`."""
    d_inner = expand * d_model
    recurrence_terms = 6 * d_inner * d_state + 5 * d_inner
    base = mamba2_flops(d_model, d_state, expand, headdim, ngroups, d_conv) - recurrence_terms
    return float(base + ssd_chunked_flops(d_inner, d_state, ngroups, chunk_size, seq_len))


def lm_head_flops(d_model: int, vocab_size: int) -> float:
    return float(2 * d_model * vocab_size)


def fft_conv_flops(channels: int, seq_len: int) -> float:
    """FFT long convolution per token: ~10 log2(2L) per channel (docs/FIDELITY.md, StripedHyena 2 "FLOPs")."""
    return float(10 * math.log2(2 * seq_len) * channels)
