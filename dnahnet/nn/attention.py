"""Causal multi-head attention with partial rotary embeddings, optional sliding window and a KV cache.

One block serves Transformer++ (rotary on the full head dim, global) and dnaHNet (rotary on half the
head dim; sliding window of 1023 past positions in outer stages). The full-sequence path uses torch's
`scaled_dot_product_attention` (which dispatches to FlashAttention kernels on GPU), or flash-attn's
own kernel when it is installed and the tensors are on CUDA (see dnahnet.kernels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dnahnet.nn.rotary import RotaryEmbedding


@dataclass
class AttentionCache:
    """KV cache; rolling (a ring buffer of window + 1 slots) when a sliding window is set.

    Every field has the batch dimension first so that callers can keep or restore rows with
    `torch.where` (dnaHNet's inner stages step only the sequences that hit a boundary).
    """

    k: torch.Tensor  # (B, H, S, dh) keys, rotary already applied, slot = position % S
    v: torch.Tensor  # (B, H, S, dh)
    seqlen: torch.Tensor  # (B,) number of positions already processed per sequence


def sliding_window_mask(seq_len: int, window: int | None, device) -> torch.Tensor | None:
    """Boolean (L, L) mask, True where query i may attend key j: j <= i and i - j <= window."""
    if window is None or window + 1 >= seq_len:
        return None
    i = torch.arange(seq_len, device=device)[:, None]
    j = torch.arange(seq_len, device=device)[None, :]
    return (j <= i) & (i - j <= window)


class Attention(nn.Module):
    """Causal multi-head self-attention; no biases unless `out_bias` (Evo 2's output projection has one).

    Args:
        d_model: model width.
        n_heads: number of heads; head_dim = d_model / n_heads.
        rotary_dim: channels per head that get rotary embeddings (None = the whole head).
        window: past positions visible besides the current one (None = global; H-Net uses 1023).
        rotary_base: rotary frequency base.
        backend: "auto" | "torch" | "kernel" (flash-attn); see dnahnet.kernels.
        out_bias: give out_proj a bias (Evo 2 / StripedHyena 2: `mha_out_proj_bias: True`); QKV never has one.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        rotary_dim: int | None = None,
        window: int | None = None,
        rotary_base: float = 10000.0,
        backend: str = "auto",
        out_bias: bool = False,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        self.head_dim = d_model // n_heads
        self.rotary_dim = self.head_dim if rotary_dim is None else rotary_dim
        if not 0 <= self.rotary_dim <= self.head_dim:
            raise ValueError(f"rotary_dim={rotary_dim} must lie in [0, head_dim={self.head_dim}]")
        if window is not None and window < 0:
            raise ValueError(f"window must be >= 0 or None, got {window}")
        self.window = window
        self.backend = backend
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=False, device=device, dtype=dtype)
        self.out_proj = nn.Linear(d_model, d_model, bias=out_bias, device=device, dtype=dtype)
        self.out_proj._is_residual_out = True
        self.rotary = RotaryEmbedding(self.rotary_dim, base=rotary_base)

    # ------------------------------------------------------------------ full sequence
    def _qkv(self, x: torch.Tensor, positions: torch.Tensor):
        B, L, _ = x.shape
        qkv = self.Wqkv(x).view(B, L, 3, self.n_heads, self.head_dim)  # (B, L, 3, H, dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, dh)
        return self.rotary(q, positions), self.rotary(k, positions), v

    def forward(self, x: torch.Tensor, cache: AttentionCache | None = None) -> torch.Tensor:
        B, L, D = x.shape
        positions = torch.arange(L, device=x.device)
        q, k, v = self._qkv(x, positions)  # (B, H, L, dh)
        y = self._attend(q, k, v)  # (B, H, L, dh)
        if cache is not None:
            self._fill_cache(cache, k, v)
        return self.out_proj(y.transpose(1, 2).reshape(B, L, D))

    def _attend(self, q, k, v) -> torch.Tensor:
        from dnahnet import kernels

        if kernels.resolve_backend(self.backend, q.device, what="attention", dtype=q.dtype) == "kernel":
            # flash-attn takes (B, L, H, dh) and a (left, right) window; -1 means unbounded.
            window = (-1, -1) if self.window is None else (self.window, 0)
            y = kernels.flash_attn_func(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True, window_size=window
            )
            return y.transpose(1, 2)
        L = q.shape[2]
        if self.window is None or self.window + 1 >= L:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if L <= 2 * (self.window + 1):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(L, self.window, q.device))
        return self._local_attention(q, k, v)

    def _local_attention(self, q, k, v) -> torch.Tensor:
        """Sliding-window attention in query blocks of window + 1 positions: each block attends to
        itself and the block before it, so time and memory grow as L x window, not L x L (a dense
        masked SDPA would materialise L x L scores per head)."""
        L, block = q.shape[2], self.window + 1
        pos = torch.arange(2 * block, device=q.device)
        out = []
        for start in range(0, L, block):
            stop, lo = min(start + block, L), max(0, start - block)
            qi = pos[start - lo : stop - lo, None]  # query positions relative to lo
            kj = pos[None, : stop - lo]  # key positions relative to lo
            mask = (kj <= qi) & (qi - kj <= self.window)  # (Bq, Bk)
            out.append(F.scaled_dot_product_attention(
                q[:, :, start:stop], k[:, :, lo:stop], v[:, :, lo:stop], attn_mask=mask
            ))  # (B, H, Bq, dh)
        return torch.cat(out, dim=2)

    # ------------------------------------------------------------------ decoding
    def allocate_cache(self, batch_size: int, max_seqlen: int, device=None, dtype=None) -> AttentionCache:
        slots = max_seqlen if self.window is None else min(max_seqlen, self.window + 1)
        device = device or self.Wqkv.weight.device
        if dtype is None:
            # Under autocast the keys and values come out of Wqkv in the autocast dtype: a cache in that
            # dtype is read by every step as it is, where an fp32 cache would be cast (copied) whole per step.
            device_type = torch.device(device).type
            autocast = torch.is_autocast_enabled(device_type)
            dtype = torch.get_autocast_dtype(device_type) if autocast else self.Wqkv.weight.dtype
        shape = (batch_size, self.n_heads, slots, self.head_dim)
        return AttentionCache(
            k=torch.zeros(shape, device=device, dtype=dtype),
            v=torch.zeros(shape, device=device, dtype=dtype),
            seqlen=torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    def _fill_cache(self, cache: AttentionCache, k: torch.Tensor, v: torch.Tensor) -> None:
        """Prefill from an empty cache: store the keys/values of the last `slots` positions."""
        if int(cache.seqlen.max()) != 0:
            raise ValueError("prefill expects a fresh cache (seqlen 0)")
        L, slots = k.shape[2], cache.k.shape[2]
        if self.window is None and L > slots:
            raise ValueError(f"prompt of {L} positions exceeds the cache's max_seqlen={slots}")
        keep = torch.arange(max(0, L - slots), L, device=k.device)
        cache.k[:, :, keep % slots] = k[:, :, keep].to(cache.k.dtype)
        cache.v[:, :, keep % slots] = v[:, :, keep].to(cache.v.dtype)
        cache.seqlen.fill_(L)

    def step(self, x: torch.Tensor, cache: AttentionCache) -> torch.Tensor:
        """x: (B, D) at position cache.seqlen (per sequence) -> (B, D)."""
        B, D = x.shape
        slots = cache.k.shape[2]
        pos = cache.seqlen  # (B,)
        if self.window is None and int(pos.max()) >= slots:
            raise ValueError(f"KV cache full: max_seqlen={slots} positions")
        q, k, v = self._qkv(x[:, None, :], pos[:, None])  # (B, H, 1, dh)
        slot = (pos % slots)[:, None, None, None].expand(B, self.n_heads, 1, self.head_dim)
        cache.k.scatter_(2, slot, k.to(cache.k.dtype))
        cache.v.scatter_(2, slot, v.to(cache.v.dtype))
        valid = torch.arange(slots, device=x.device)[None, :] <= pos[:, None]  # (B, S) slots in use
        # The one query moves to the cache's dtype, never the (B, H, S, dh) cache to the query's; autocast is
        # off here so that it does not cast the cache either (a cache made under autocast is in its dtype).
        with torch.autocast(x.device.type, enabled=False):
            y = F.scaled_dot_product_attention(
                q.to(cache.k.dtype), cache.k, cache.v, attn_mask=valid[:, None, None, :]
            ).to(q.dtype)  # (B, H, 1, dh)
        cache.seqlen += 1
        return self.out_proj(y.reshape(B, D))
