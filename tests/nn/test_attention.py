"""Attention block: decoding from the KV cache equals the full forward, causality, windows, rotary."""

import math

import pytest
import torch

from dnahnet.nn import Attention
from dnahnet.nn.rotary import RotaryEmbedding


def naive_attention(x, attn: Attention):
    """Float64 reference: explicit per-query loop over visible keys."""
    B, L, D = x.shape
    H, dh = attn.n_heads, attn.head_dim
    qkv = (x.double() @ attn.Wqkv.weight.double().T).view(B, L, 3, H, dh).permute(2, 0, 3, 1, 4)
    rot = RotaryEmbedding(attn.rotary_dim).double()
    rot.inv_freq = rot.inv_freq.double()
    pos = torch.arange(L)
    q = _rotate64(qkv[0], pos, attn.rotary_dim)
    k = _rotate64(qkv[1], pos, attn.rotary_dim)
    v = qkv[2]
    out = torch.zeros(B, H, L, dh, dtype=torch.float64)
    for i in range(L):
        lo = 0 if attn.window is None else max(0, i - attn.window)
        scores = q[:, :, i : i + 1] @ k[:, :, lo : i + 1].transpose(-1, -2) / math.sqrt(dh)
        out[:, :, i] = (scores.softmax(-1) @ v[:, :, lo : i + 1])[:, :, 0]
    return out.transpose(1, 2).reshape(B, L, D) @ attn.out_proj.weight.double().T


def _rotate64(x, pos, r):
    inv = 1.0 / (10000.0 ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
    ang = pos.double()[:, None] * inv
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., : r // 2], x[..., r // 2 : r]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin, x[..., r:]], dim=-1)


@pytest.mark.parametrize("window,rotary_dim", [(None, None), (None, 4), (5, 4), (0, 8)])
def test_matches_float64_reference(window, rotary_dim):
    torch.manual_seed(0)
    attn = Attention(32, 4, rotary_dim=rotary_dim, window=window, backend="torch")
    x = torch.randn(2, 19, 32)
    ref = naive_attention(x, attn)
    assert torch.allclose(attn(x).double(), ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("window", [None, 3, 6])
def test_step_equals_forward_and_prefill(window):
    torch.manual_seed(1)
    attn = Attention(32, 2, rotary_dim=8, window=window, backend="torch")
    x = torch.randn(3, 17, 32)
    full = attn(x)
    cache = attn.allocate_cache(3, 17)
    stepped = torch.stack([attn.step(x[:, t], cache) for t in range(17)], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5)
    if window is not None:  # a rolling cache holds window + 1 slots, not the whole sequence
        assert cache.k.shape[2] == window + 1
    cache = attn.allocate_cache(3, 17)
    prefix = attn(x[:, :9], cache=cache)
    rest = torch.stack([attn.step(x[:, t], cache) for t in range(9, 17)], dim=1)
    assert torch.allclose(prefix, full[:, :9], atol=1e-6)
    assert torch.allclose(rest, full[:, 9:], atol=1e-5)


def test_causality():
    torch.manual_seed(2)
    attn = Attention(16, 2, backend="torch")
    x = torch.randn(1, 12, 16)
    y = x.clone()
    y[:, 7] += 1.0
    a, b = attn(x), attn(y)
    assert torch.equal(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="n_heads"):
        Attention(30, 4)
    with pytest.raises(ValueError, match="rotary_dim"):
        Attention(32, 4, rotary_dim=16)
    with pytest.raises(RuntimeError, match="kernel"):
        Attention(32, 4, backend="kernel")(torch.randn(1, 3, 32))


def test_long_sliding_window_uses_blocks_and_matches_dense_mask():
    """Beyond 2 (window + 1) positions, attention runs in query blocks (memory L x window); it must
    equal the dense masked computation, gradients included."""
    torch.manual_seed(3)
    attn = Attention(16, 2, rotary_dim=4, window=4, backend="torch")
    x = torch.randn(2, 53, 16, requires_grad=True)
    blocked = attn(x)
    q, k, v = attn._qkv(x, torch.arange(53))
    from dnahnet.nn.attention import sliding_window_mask

    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(53, 4, x.device))
    dense = attn.out_proj(dense.transpose(1, 2).reshape(2, 53, 16))
    assert torch.allclose(blocked, dense, atol=1e-6)
    g1 = torch.autograd.grad(blocked.sum(), x)[0]
    g2 = torch.autograd.grad(dense.sum(), x)[0]
    assert torch.allclose(g1, g2, atol=1e-5)


# ---------------------------------------------------------------- CUDA routing, on CPU (issue 26)
def test_fp32_never_goes_to_flash_attn(monkeypatch):
    """Issue 26, crash 3: flash-attn takes fp16/bf16 only, so with it installed and CUDA tensors, float32
    must take SDPA; under bf16 autocast the kernel is used."""
    import torch.nn.functional as F

    from dnahnet import kernels

    calls = []

    def fake_flash(q, k, v, causal, window_size):  # (B, L, H, dh), as flash_attn_func
        if q.dtype not in (torch.float16, torch.bfloat16):
            raise RuntimeError("FlashAttention only support fp16 and bf16 data type")
        calls.append(q.dtype)
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              is_causal=causal).transpose(1, 2)

    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(2, 16, 32)
    reference = attn(x)  # CPU: SDPA
    monkeypatch.setattr(kernels, "_is_cuda", lambda device: True)
    monkeypatch.setitem(kernels.AVAILABLE, "flash_attn", True)
    monkeypatch.setattr(kernels, "flash_attn_func", fake_flash)
    torch.testing.assert_close(attn(x), reference)  # float32: SDPA, the kernel never called
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attn(x)
    assert calls == [torch.bfloat16]
    with pytest.raises(RuntimeError, match="take float16, bfloat16.*float32"):
        Attention(32, 4, backend="kernel")(x)


def test_decoding_under_autocast_reads_the_cache_in_place(monkeypatch):
    """Issue 26: a KV cache made under autocast is in the autocast dtype and every step's attention reads it
    as it is (no copy of the whole cache per step); the outputs match the forward."""
    import torch.nn.functional as F

    seen = []
    sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(k.data_ptr())
        return sdpa(q, k, v, **kw)

    torch.manual_seed(0)
    attn = Attention(32, 4, window=5).eval()
    x = torch.randn(2, 12, 32)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        full = attn(x).float()
        cache = attn.allocate_cache(2, 12)
        assert cache.k.dtype == torch.bfloat16
        monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
        steps = torch.stack([attn.step(x[:, t], cache) for t in range(12)], 1).float()
    assert seen and set(seen) == {cache.k.data_ptr()}
    torch.testing.assert_close(steps, full, atol=3e-2, rtol=3e-2)
