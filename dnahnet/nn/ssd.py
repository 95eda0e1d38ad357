"""State-space duality (SSD): the Mamba-2 scan, as pure functions.

Per head h (scalar decay A_h < 0), position t, state h_t of shape (P, N):

    h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T        x_t: (P,), B_t, C_t: (N,), dt_t > 0
    y_t = h_t C_t + D x_t

Heads are split into `ngroups` groups that share B and C: head i reads group i // (H / G), the
`mamba_ssm` convention (its reference repeats B as "b l g n -> b l (g h) n").

- :func:`ssd_chunked` is the training/prefill form (Dao & Gu 2024, "ssd_minimal"): split the
  sequence into chunks of Q positions; inside a chunk the output is a masked quadratic form (an
  attention-like (Q, Q) matrix per head), across chunks only the (P, N) states are passed on,
  through a segment-sum of the per-chunk decays. Memory is O(L * Q) per head, i.e. linear in L.
- :func:`ssd_naive` is the sequential recurrence, one position at a time: slow, obviously right,
  the reference in tests.

Both take an optional initial state and return the final state, so a long sequence can be processed
in pieces (prefill, then decoding steps) with the same result as in one go. All arithmetic runs in
float32 (float64 if any input is float64) with autocast disabled: the exponentiated cumulative decays
lose too much precision in bf16.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class SSDOutput:
    y: Tensor            # (B, L, H, P), in x's dtype
    final_state: Tensor  # (B, H, P, N), in the compute dtype (float32 or float64)


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    chunk_size: int = 256,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> SSDOutput:
    """Chunked SSD scan.

    Args:
        x: (B, L, H, P) inputs.
        dt: (B, L, H) step sizes, already positive (softplus and clamping done by the caller).
        A: (H,) decay rates (negative).
        B, C: (B, L, G, N) input and output projections, G divides H.
        chunk_size: Q. Sequences shorter than Q use one chunk of length L; other lengths are padded
            at the end with dt = 0 positions, which leave the state untouched (decay exp(0) = 1,
            input 0), so padding changes neither y nor the final state.
        D: (H,) or (H, P) skip connection, or None.
        initial_state: (B, H, P, N) state before position 0, or None (zeros).
    """
    b, seqlen, h, p, g, n = _check(x, dt, A, B, C, D, initial_state)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    out_dtype, cdt = x.dtype, _compute_dtype(x, dt, A, B, C, initial_state)
    if seqlen == 0:  # nothing to scan: the state passes through unchanged
        state = x.new_zeros(b, h, p, n, dtype=cdt) if initial_state is None else initial_state.to(cdt)
        return SSDOutput(y=x.new_zeros(b, 0, h, p), final_state=state)
    with _no_autocast(x.device):
        x, dt, A, B, C = (t.to(cdt) for t in (x, dt, A, B, C))
        q = min(chunk_size, seqlen)
        pad = (-seqlen) % q
        if pad:
            x_p = F.pad(x, (0, 0, 0, 0, 0, pad))        # (B, L', H, P)
            dt = F.pad(dt, (0, 0, 0, pad))              # (B, L', H), dt = 0 on padding
            B = F.pad(B, (0, 0, 0, 0, 0, pad))          # (B, L', G, N)
            C = F.pad(C, (0, 0, 0, 0, 0, pad))
        else:
            x_p = x
        c, hg = (seqlen + pad) // q, h // g

        xdt = (x_p * dt.unsqueeze(-1)).view(b, c, q, g, hg, p)   # (B, c, Q, G, H/G, P)
        Bc = B.view(b, c, q, g, n)                               # (B, c, Q, G, N)
        Cc = C.view(b, c, q, g, n)                               # (B, c, Q, G, N)
        dtA = (dt * A).view(b, c, q, h).transpose(2, 3)          # (B, c, H, Q)
        a_cum = dtA.cumsum(-1)                                   # (B, c, H, Q)

        # 1. Intra-chunk (diagonal blocks): y_l = sum_{s<=l} (C_l . B_s) exp(sum_{s<k<=l} dtA_k) dt_s x_s
        # segsum's float64 differences, not differences of the float32 a_cum: a_cum can reach -1e3
        # inside a chunk (large dt, e.g. the dechunking EMA), where float32 loses ~1e-5 of the decay.
        if torch.is_grad_enabled() or c <= INFERENCE_CHUNK_GROUP:
            y = _intra_chunk(dtA, Cc, Bc, xdt, g)                        # (B, c, Q, G, H/G, P)
        else:
            # Inference on long inputs: the (Q x Q) blocks of every chunk at once dominate peak
            # memory, so compute them a group of chunks at a time (same arithmetic, bounded memory).
            y = torch.cat([
                _intra_chunk(dtA[:, i:i + INFERENCE_CHUNK_GROUP], Cc[:, i:i + INFERENCE_CHUNK_GROUP],
                             Bc[:, i:i + INFERENCE_CHUNK_GROUP], xdt[:, i:i + INFERENCE_CHUNK_GROUP], g)
                for i in range(0, c, INFERENCE_CHUNK_GROUP)
            ], dim=1)

        # 2. Each chunk's own contribution to the state at its end.
        # exp(sum_{k>s} dtA_k) as an exclusive reverse cumsum (a_cum[-1] - a_cum[s] would cancel).
        to_end = F.pad(dtA[..., 1:].flip(-1).cumsum(-1).flip(-1), (0, 1))   # (B, c, H, Q)
        decay_to_end = torch.exp(to_end)                                  # (B, c, H, Q)
        xw = xdt * decay_to_end.transpose(2, 3).reshape(b, c, q, g, hg, 1)
        states = torch.einsum("bcsgn,bcsghp->bcghpn", Bc, xw).reshape(b, c, h, p, n)  # (B, c, H, P, N)

        # 3. Inter-chunk state passing: state entering chunk z = sum_{k<=z} (decay k->z) states_k,
        # with the initial state as chunk "-1"; a segment-sum over chunk totals gives the decays
        # (the stable masked-cumsum form: totals over many chunks can be large).
        if initial_state is None:
            init = states.new_zeros(b, 1, h, p, n)
        else:
            init = initial_state.to(cdt).unsqueeze(1)                     # (B, 1, H, P, N)
        states = torch.cat([init, states], dim=1)                         # (B, c+1, H, P, N)
        chunk_decay = F.pad(a_cum[..., -1], (0, 0, 1, 0)).transpose(1, 2)  # (B, H, c+1)
        decay_chunks = torch.exp(segsum(chunk_decay))                     # (B, H, c+1, c+1)
        passed = torch.einsum("bhzk,bkhpn->bzhpn", decay_chunks, states)  # (B, c+1, H, P, N)
        entering, final_state = passed[:, :-1], passed[:, -1]             # (B, c, H, P, N), (B, H, P, N)

        # 4. Off-diagonal blocks: the state entering the chunk, decayed to position l, read by C_l.
        y_off = torch.einsum("bclgn,bcghpn->bclghp", Cc, entering.view(b, c, g, hg, p, n))
        decay_from_start = torch.exp(a_cum).transpose(2, 3).reshape(b, c, q, g, hg, 1)
        y = (y + y_off * decay_from_start).reshape(b, c * q, h, p)[:, :seqlen]  # (B, L, H, P)
        if D is not None:
            y = y + x * _d_view(D, cdt)
    return SSDOutput(y=y.to(out_dtype), final_state=final_state)


# Chunks whose intra-chunk blocks are materialised together when no gradient is needed.
INFERENCE_CHUNK_GROUP = 16


def _intra_chunk(dtA: Tensor, Cc: Tensor, Bc: Tensor, xdt: Tensor, g: int) -> Tensor:
    """Diagonal blocks: y_l = sum_{s<=l} (C_l . B_s) exp(sum_{s<k<=l} dtA_k) dt_s x_s, per chunk.

    dtA (B, c, H, Q); Cc, Bc (B, c, Q, G, N); xdt (B, c, Q, G, H/G, P) -> (B, c, Q, G, H/G, P).
    """
    b, c, h, q = dtA.shape
    decay = torch.exp(segsum(dtA)).view(b, c, g, h // g, q, q)            # (B, c, G, H/G, Ql, Qs)
    cb = torch.einsum("bclgn,bcsgn->bcgls", Cc, Bc)                       # (B, c, G, Ql, Qs)
    if torch.is_grad_enabled():  # exp and the product keep their operands for backward
        weights = cb.unsqueeze(3) * decay
    else:  # inference: one (B, c, H, Q, Q) block fewer at the peak
        weights = decay.mul_(cb.unsqueeze(3))
    return torch.einsum("bcghls,bcsghp->bclghp", weights, xdt)


def ssd_naive(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> SSDOutput:
    """The recurrence, position by position (reference; O(L) Python steps). Same arguments as
    :func:`ssd_chunked`. Computes in float32, or float64 if any input is float64."""
    b, seqlen, h, p, g, n = _check(x, dt, A, B, C, D, initial_state)
    out_dtype, cdt = x.dtype, _compute_dtype(x, dt, A, B, C, initial_state)
    with _no_autocast(x.device):
        x, dt, A, B, C = (t.to(cdt) for t in (x, dt, A, B, C))
        Bh = B.repeat_interleave(h // g, dim=2)  # (B, L, H, N): head i reads group i // (H/G)
        Ch = C.repeat_interleave(h // g, dim=2)  # (B, L, H, N)
        state = x.new_zeros(b, h, p, n) if initial_state is None else initial_state.to(cdt)
        ys = []
        for t in range(seqlen):
            decay = torch.exp(dt[:, t] * A)[..., None, None]                          # (B, H, 1, 1)
            inp = (dt[:, t, :, None] * x[:, t]).unsqueeze(-1) * Bh[:, t].unsqueeze(2)  # (B, H, P, N)
            state = decay * state + inp
            ys.append(torch.einsum("bhpn,bhn->bhp", state, Ch[:, t]))                 # (B, H, P)
        y = torch.stack(ys, dim=1) if ys else x.new_zeros(b, 0, h, p)                 # (B, L, H, P)
        if D is not None:
            y = y + x * _d_view(D, cdt)
    return SSDOutput(y=y.to(out_dtype), final_state=state)


def segsum(a: Tensor) -> Tensor:
    """(..., T) -> (..., T, T) with out[..., i, j] = sum_{j < k <= i} a[..., k] for i >= j, -inf above
    the diagonal; exp(-inf) = 0 makes the causal mask.

    Computed as differences of a float64 cumsum: in float32, cum[i] - cum[j] would lose ~1e-5 of the
    decay of nearby positions once the cumsum reaches -1e3 (large dt, e.g. the dechunking EMA); float64
    keeps the differences exact to ~1e-13 relative, as accurate as summing masked copies, and on a CPU
    it is ~2x faster (one broadcast subtraction instead of a masked (T, T) cumsum and its flipped
    backward, which dominated the small models' training step). The backward is written out
    (:class:`_SegSum`): autograd's would expand the float64 (T, T) difference again to negate and
    reduce it, about a tenth of a small Mamba-2 layer's training step."""
    return _SegSum.apply(a)


class _SegSum(torch.autograd.Function):
    """out[i, j] = cum[i] - cum[j] (i >= j), cum = cumsum(a); the gradient in closed form:
    d cum[k] = sum_j g[k, j] - sum_i g[i, k] over the causal entries, and d a = reverse cumsum of d cum."""

    @staticmethod
    def forward(ctx, a: Tensor) -> Tensor:
        t = a.size(-1)
        cum = a.to(torch.float64).cumsum(-1)                                 # (..., T)
        diff = cum.unsqueeze(-1) - cum.unsqueeze(-2)                         # (..., T_i, T_j) float64
        out = diff if a.dtype == torch.float64 else diff.to(a.dtype)
        del diff  # the float64 (T, T) block lives only until its cast
        causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device))
        ctx.save_for_backward(causal)
        return out.masked_fill_(~causal, float("-inf"))  # in place: `out` is ours, no second (T, T) copy

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (causal,) = ctx.saved_tensors
        g = grad.masked_fill(~causal, 0.0)                                   # (..., T_i, T_j)
        d_cum = g.sum(-1) - g.sum(-2)                                        # (..., T)
        return d_cum.flip(-1).cumsum(-1).flip(-1)                            # (..., T)


def _check(x, dt, A, B, C, D, initial_state) -> tuple[int, int, int, int, int, int]:
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, seqlen, nheads, headdim), got shape {tuple(x.shape)}")
    b, seqlen, h, p = x.shape
    if B.dim() != 4 or B.shape[:2] != (b, seqlen):
        raise ValueError(f"B must be (batch={b}, seqlen={seqlen}, ngroups, d_state), got {tuple(B.shape)}")
    g, n = B.shape[2:]
    if C.shape != B.shape:
        raise ValueError(f"C must have B's shape {tuple(B.shape)}, got {tuple(C.shape)}")
    if h % g:
        raise ValueError(f"nheads={h} must be a multiple of ngroups={g}")
    if dt.shape != (b, seqlen, h):
        raise ValueError(f"dt must be (batch, seqlen, nheads)={(b, seqlen, h)}, got {tuple(dt.shape)}")
    if A.shape != (h,):
        raise ValueError(f"A must be (nheads,)={(h,)}, got {tuple(A.shape)}")
    if D is not None and D.shape not in ((h,), (h, p)):
        raise ValueError(f"D must be (nheads,) or (nheads, headdim), got {tuple(D.shape)}")
    if initial_state is not None and initial_state.shape != (b, h, p, n):
        raise ValueError(f"initial_state must be (batch, nheads, headdim, d_state)={(b, h, p, n)}, "
                         f"got {tuple(initial_state.shape)}")
    return b, seqlen, h, p, g, n


def _compute_dtype(*tensors: Tensor | None) -> torch.dtype:
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) \
        else torch.float32


def _d_view(D: Tensor, dtype: torch.dtype) -> Tensor:
    D = D.to(dtype)
    return D.unsqueeze(-1) if D.dim() == 1 else D  # (H, 1) or (H, P), broadcasts over (B, L, H, P)


def _no_autocast(device: torch.device):
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast support: nothing to disable
        return contextlib.nullcontext()
