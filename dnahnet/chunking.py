"""Dynamic chunking (H-Net, Hwang, Wang, Gu 2025; docs/FIDELITY.md, the dnaHNet rows "Router" to "Ratio loss"):
router, chunk, dechunk (EMA smoothing + upsampling), confidence straight-through estimator and ratio loss.

Shapes: B sequences of L positions at width D; a chunked sequence has M <= L rows (the largest number
of boundaries in the batch), rows past a sequence's own count are padding, flagged by a validity mask.
Padding always sits at the end of a sequence, and every layer is causal, so it never reaches a real
position: no layer needs the mask except the router (padding is never a boundary) and the losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dnahnet.nn.ssd import ssd_chunked

P_MIN, P_MAX = 1e-4, 1.0 - 1e-4  # EMA coefficients are clamped so that dt = -log(1 - P) stays finite


# ---------------------------------------------------------------------------------------- router
@dataclass
class RouterOutput:
    prob: Tensor  # (B, L) float32 boundary probability p_t; p_0 = 1
    boundary: Tensor  # (B, L) bool b_t = 1[p_t >= 1/2] (never on padding)


@dataclass
class RouterCache:
    """Decoding state; batch dimension first (rows can be kept or restored with torch.where)."""

    last_key: Tensor  # (B, D) W_k h of the previous position (the cached "last hidden state", projected)
    seqlen: Tensor  # (B,) long: positions seen so far (0 -> the next position is a forced boundary)


class Router(nn.Module):
    """p_t = (1 - cos(W_q h_t, W_k h_{t-1})) / 2, p_0 = 1, b_t = 1[p_t >= 1/2].

    W_q and W_k are square, bias-free, identity-initialised and flagged `_no_reinit` so that
    `dnahnet.nn.init.init_weights` leaves them alone: at init p_t measures how much adjacent encoder
    states differ. The cosine is computed in float32.

    `fixed_period` is a hook for tests and benchmarks: when set to N, b_t = 1[t mod N = 0] (a known
    ratio), while p is still computed (and still carries gradients).
    """

    def __init__(self, d_model: int, device=None, dtype=None):
        super().__init__()
        self.d_model = d_model
        self.q_proj = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)
        self.k_proj = nn.Linear(d_model, d_model, bias=False, device=device, dtype=dtype)
        with torch.no_grad():
            for lin in (self.q_proj, self.k_proj):
                lin.weight.copy_(torch.eye(d_model))
                lin._no_reinit = True
                lin.weight._no_reinit = True
        self._no_reinit = True
        self.fixed_period: int | None = None

    def _decide(self, prob: Tensor, positions: Tensor) -> Tensor:
        if self.fixed_period is None:
            return prob >= 0.5
        return (positions % self.fixed_period) == 0

    def forward(self, h: Tensor, mask: Tensor | None = None) -> RouterOutput:
        """h: (B, L, D); mask: (B, L) bool real positions (None = all)."""
        B, L, _ = h.shape
        q = self.q_proj(h[:, 1:])  # (B, L-1, D): position t
        k = self.k_proj(h[:, :-1])  # (B, L-1, D): position t-1
        cos = (F.normalize(q.float(), dim=-1) * F.normalize(k.float(), dim=-1)).sum(-1)  # (B, L-1)
        prob = ((1.0 - cos) / 2.0).clamp(0.0, 1.0)
        prob = F.pad(prob, (1, 0), value=1.0)  # (B, L): the first position is always a boundary
        boundary = self._decide(prob, torch.arange(L, device=h.device).expand(B, L))
        if mask is not None:
            boundary = boundary & mask
        return RouterOutput(prob=prob, boundary=boundary)

    def allocate_cache(self, batch_size: int, device=None, dtype=None) -> RouterCache:
        w = self.k_proj.weight
        return RouterCache(
            last_key=torch.zeros(batch_size, self.d_model, device=device or w.device, dtype=dtype or w.dtype),
            seqlen=torch.zeros(batch_size, dtype=torch.long, device=device or w.device),
        )

    def step(self, h: Tensor, cache: RouterCache) -> RouterOutput:
        """h: (B, D) -> prob, boundary (B,); the cache moves one position on."""
        q = self.q_proj(h)  # (B, D)
        cos = (F.normalize(q.float(), dim=-1) * F.normalize(cache.last_key.float(), dim=-1)).sum(-1)  # (B,)
        prob = ((1.0 - cos) / 2.0).clamp(0.0, 1.0)
        prob = torch.where(cache.seqlen == 0, torch.ones_like(prob), prob)
        boundary = self._decide(prob, cache.seqlen)
        cache.last_key.copy_(self.k_proj(h).to(cache.last_key.dtype))
        cache.seqlen += 1
        return RouterOutput(prob=prob, boundary=boundary)


# ---------------------------------------------------------------------------------------- chunk
@dataclass
class Chunks:
    x: Tensor  # (B, M, D) the boundary rows, in order, then padding
    mask: Tensor  # (B, M) bool: real chunk (False on padding)
    index: Tensor  # (B, M) long: position of each chunk in the un-chunked sequence
    counts: Tensor  # (B,) number of chunks per sequence


CHUNK_MULTIPLE = 32  # M is rounded up to a multiple of this (at most L): ~1% padding at paper sizes (M ~ 1-3k)


def chunk(h: Tensor, boundary: Tensor, multiple: int | None = None) -> Chunks:
    """Keep the rows with b_t = 1 (no pooling), batched: a stable sort puts each sequence's boundary
    rows first (in order), then the first M rows are gathered, M = max_b #boundaries rounded up to a
    multiple of `multiple` (at most L). The rounding keeps the inner stages' shapes from changing every step
    (torch.compile would recompile for each new M); the extra rows are padding (mask False), which no
    real position sees: the inner stages are causal and the padding comes after every real chunk."""
    B, L, D = h.shape
    counts = boundary.sum(dim=1)  # (B,)
    M = int(counts.max()) if B else 0
    multiple = CHUNK_MULTIPLE if multiple is None else multiple
    if multiple > 1 and M:
        M = min(L, -(-M // multiple) * multiple)
    positions = torch.arange(L, device=h.device)
    key = positions + (~boundary).long() * L  # boundaries keep their position, the rest go behind
    index = torch.argsort(key, dim=1)[:, :M]  # (B, M)
    x = torch.gather(h, 1, index[..., None].expand(B, M, D))  # (B, M, D)
    mask = positions[:M][None, :] < counts[:, None]  # (B, M)
    return Chunks(x=x, mask=mask, index=index, counts=counts)


# ---------------------------------------------------------------------------------------- dechunk
def ema_scan(z: Tensor, p: Tensor, chunk_size: int = 64, initial: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """zbar_j = P_j z_j + (1 - P_j) zbar_{j-1}, zbar_{-1} = initial (zeros), as a chunked parallel scan.

    It is the SSD recurrence with one head of width D and a scalar state: A = -1, dt = -log(1 - P),
    B = P, C = 1, x = z / dt (h_j = exp(-dt_j) h_{j-1} + dt_j B_j x_j = (1 - P_j) h_{j-1} + P_j z_j).
    `dnahnet.nn.ssd.ssd_chunked` computes it in float32 (float64 for float64 inputs), O(M * chunk)
    work per channel. P is clamped to [1e-4, 1 - 1e-4].

    Args:
        z: (B, M, D); p: (B, M) EMA coefficients; initial: (B, D) or None.
    Returns:
        zbar (B, M, D) and its last row (B, D), both in the compute dtype (float32 or float64).
    """
    cdt = torch.float64 if torch.float64 in (z.dtype, p.dtype) else torch.float32
    P = p.to(cdt).clamp(P_MIN, P_MAX)  # (B, M)
    dt = -torch.log1p(-P)  # (B, M) > 0
    x = (z.to(cdt) / dt[..., None])[:, :, None, :]  # (B, M, 1, D)
    A = -torch.ones(1, device=z.device, dtype=cdt)
    Bm = P[:, :, None, None]  # (B, M, 1, 1)
    C = torch.ones_like(Bm)
    init = None if initial is None else initial.to(cdt)[:, None, :, None]  # (B, 1, D, 1)
    out = ssd_chunked(x, dt[..., None], A, Bm, C, chunk_size=chunk_size, initial_state=init)
    return out.y[:, :, 0, :], out.final_state[:, 0, :, 0]  # (B, M, D), (B, D)


def ema_step(z: Tensor, p: Tensor, last: Tensor) -> Tensor:
    """One EMA step: P z + (1 - P) last, with P clamped like `ema_scan`. z, last: (B, D); p: (B,)."""
    P = p.to(last.dtype).clamp(P_MIN, P_MAX)[:, None]
    return P * z.to(last.dtype) + (1.0 - P) * last


@dataclass
class DechunkCache:
    last: Tensor  # (B, D) float32: the EMA value of the most recent chunk


class DeChunk(nn.Module):
    """Smoothing (EMA over chunks) then upsampling: position t takes the value of its most recent chunk,
    index cumsum(b)_t - 1. A module (without parameters) so that FLOP counters can attribute its work."""

    def __init__(self, d_model: int, chunk_size: int = 64):
        super().__init__()
        self.d_model, self.chunk_size = d_model, chunk_size

    def forward(self, z: Tensor, prob: Tensor, boundary: Tensor, chunks: Chunks) -> Tensor:
        """z: (B, M, D) inner output per chunk; prob, boundary: (B, L) of the outer sequence.
        Returns (B, L, D) in float32 (float64 for float64 inputs)."""
        P = torch.gather(prob, 1, chunks.index)  # (B, M): probability of each chunk's boundary
        zbar, _ = ema_scan(z, P, self.chunk_size)  # (B, M, D)
        idx = (boundary.long().cumsum(dim=1) - 1).clamp(min=0)  # (B, L); position 0 is a boundary
        return torch.gather(zbar, 1, idx[..., None].expand(-1, -1, zbar.shape[-1]))  # (B, L, D)

    def allocate_cache(self, batch_size: int, device=None) -> DechunkCache:
        return DechunkCache(last=torch.zeros(batch_size, self.d_model, device=device, dtype=torch.float32))

    def step(self, z: Tensor, prob: Tensor, boundary: Tensor, cache: DechunkCache) -> Tensor:
        """z: (B, D) inner output (ignored where b = 0); prob, boundary: (B,) -> (B, D) float32."""
        new = ema_step(z, prob, cache.last)
        out = torch.where(boundary[:, None], new, cache.last)
        cache.last.copy_(out)
        return out


# ---------------------------------------------------------------------------------------- STE, loss
def confidence(prob: Tensor, boundary: Tensor) -> Tensor:
    """c_t = p_t where b_t = 1, else 1 - p_t."""
    return torch.where(boundary, prob, 1.0 - prob)


def ste(c: Tensor) -> Tensor:
    """Straight-through: forward value exactly 1, gradient that of c (= c + stopgrad(1 - c))."""
    return torch.ones_like(c) + (c - c.detach())


@dataclass
class RatioLoss:
    loss: Tensor  # scalar L_ratio (differentiable through G)
    selection_rate: Tensor  # F: fraction of real positions with b = 1 (no gradient)
    boundary_prob: Tensor  # G: mean p over real positions


def ratio_loss(prob: Tensor, boundary: Tensor, target_ratio: float, mask: Tensor | None = None) -> RatioLoss:
    """L_ratio = N / (N - 1) * ((N - 1) F G + (1 - F)(1 - G)); minimum 1 at F = G = 1/N.

    F and G are means over the real positions of the whole batch (padding excluded)."""
    N = float(target_ratio)
    if N <= 1.0:
        raise ValueError(f"target compression ratio must be > 1, got {target_ratio}")
    p = prob.float()
    if mask is None:
        F_ = boundary.float().mean()
        G = p.mean()
    else:
        m = mask.float()
        n = m.sum().clamp(min=1.0)
        F_ = (boundary.float() * m).sum() / n
        G = (p * m).sum() / n
    loss = N / (N - 1.0) * ((N - 1.0) * F_ * G + (1.0 - F_) * (1.0 - G))
    return RatioLoss(loss=loss, selection_rate=F_.detach(), boundary_prob=G)
