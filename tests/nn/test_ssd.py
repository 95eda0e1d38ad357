"""The chunked SSD scan against the sequential recurrence (float64) and an explicit quadratic form."""

import pytest
import torch

from dnahnet.nn.ssd import segsum, ssd_chunked, ssd_naive


def make_inputs(b, seqlen, h, p, g, n, dtype=torch.float64, seed=0, with_state=False, d_per_channel=False):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=dtype)

    x = rand(b, seqlen, h, p)
    # dt in (0.01, 1) and A in (-4, -0.5): decays from ~0.02 to ~1 per step, a realistic spread.
    dt = 0.01 + torch.rand(b, seqlen, h, generator=gen, dtype=dtype) * 0.99
    A = -(0.5 + torch.rand(h, generator=gen, dtype=dtype) * 3.5)
    B, C = rand(b, seqlen, g, n), rand(b, seqlen, g, n)
    D = rand(h, p) if d_per_channel else rand(h)
    s0 = rand(b, h, p, n) if with_state else None
    return dict(x=x, dt=dt, A=A, B=B, C=C, D=D, initial_state=s0)


def to32(inp):
    return {k: (v.float() if v is not None else None) for k, v in inp.items()}


def rel_err(a, ref):
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("seqlen,chunk", [(64, 16), (37, 16), (5, 16), (1, 8), (100, 32), (17, 1)])
@pytest.mark.parametrize("g,h,p", [(1, 4, 8), (2, 4, 3), (2, 6, 16)])
@pytest.mark.parametrize("with_state", [False, True])
def test_chunked_matches_naive_float64(seqlen, chunk, g, h, p, with_state):
    inp = make_inputs(2, seqlen, h, p, g, n=6, with_state=with_state, seed=seqlen * 7 + g)
    ref = ssd_naive(**inp)                        # float64 sequential recurrence
    out = ssd_chunked(**to32(inp), chunk_size=chunk)  # float32 chunked
    assert out.y.dtype == torch.float32 and out.y.shape == (2, seqlen, h, p)
    assert rel_err(out.y, ref.y) < 1e-4
    assert out.final_state.shape == (2, h, p, 6)
    assert rel_err(out.final_state, ref.final_state) < 1e-4


@pytest.mark.parametrize("dt_max,a_max", [(0.1, 16.0), (1.0, 16.0), (9.0, 1.0)])
def test_chunked_accurate_with_large_decays(dt_max, a_max):
    """Long chunks with large dt*A (Mamba-2's A up to 16; the dechunking EMA's dt up to 9): the
    cumulative decay inside a 256-chunk reaches -1e3, where decays computed as differences of a
    cumsum lose ~1e-5 in float32. The scan must stay at float32 round-off (~1e-7) instead."""
    gen = torch.Generator().manual_seed(1)
    b, seqlen, h, p, g, n = 1, 600, 4, 8, 1, 16
    x = torch.randn(b, seqlen, h, p, generator=gen, dtype=torch.float64)
    dt = torch.rand(b, seqlen, h, generator=gen, dtype=torch.float64) * dt_max
    A = -torch.linspace(1.0, a_max, h, dtype=torch.float64)
    B = torch.randn(b, seqlen, g, n, generator=gen, dtype=torch.float64)
    C = torch.randn(b, seqlen, g, n, generator=gen, dtype=torch.float64)
    ref = ssd_naive(x, dt, A, B, C)
    out = ssd_chunked(x.float(), dt.float(), A.float(), B.float(), C.float(), chunk_size=256)
    assert rel_err(out.y, ref.y) < 1e-6
    assert rel_err(out.final_state, ref.final_state) < 1e-6


def test_naive_matches_quadratic_form():
    """Independent check of the reference itself: y = M x + D x with the explicit matrix
    M[t, s] = (C_t . B_s) dt_s exp(A sum_{s<k<=t} dt_k) for s <= t, per head (float64)."""
    b, seqlen, h, p, g, n = 1, 9, 4, 2, 2, 3
    inp = make_inputs(b, seqlen, h, p, g, n)
    y = ssd_naive(**inp).y
    x, dt, A, B, C, D = (inp[k] for k in ("x", "dt", "A", "B", "C", "D"))
    expected = torch.zeros_like(x)
    for head in range(h):
        grp = head // (h // g)
        for t in range(seqlen):
            for s in range(t + 1):
                decay = torch.exp(A[head] * dt[0, s + 1:t + 1, head].sum())
                coef = (C[0, t, grp] @ B[0, s, grp]) * dt[0, s, head] * decay
                expected[0, t, head] += coef * x[0, s, head]
            expected[0, t, head] += D[head] * x[0, t, head]
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


def test_chunk_size_and_padding_do_not_change_results():
    inp = to32(make_inputs(2, 45, 4, 8, 2, 5, with_state=True))
    base = ssd_chunked(**inp, chunk_size=45)  # one chunk, no padding
    for chunk in (1, 4, 16, 44, 64, 256):     # padded (45 % chunk != 0) and L < chunk
        out = ssd_chunked(**inp, chunk_size=chunk)
        torch.testing.assert_close(out.y, base.y, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.final_state, base.final_state, rtol=1e-5, atol=1e-5)


def test_per_channel_D():
    inp = make_inputs(1, 20, 4, 3, 1, 4, d_per_channel=True)
    ref = ssd_naive(**inp)
    out = ssd_chunked(**to32(inp), chunk_size=8)
    assert rel_err(out.y, ref.y) < 1e-4


def test_split_sequence_through_final_state():
    """Scanning [0, a) then [a, L) from the returned state equals scanning [0, L)."""
    inp = to32(make_inputs(2, 50, 4, 8, 1, 6))
    full = ssd_chunked(**inp, chunk_size=16)
    first = ssd_chunked(**{k: (v[:, :23] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()},
                        chunk_size=16)
    rest = {k: (v[:, 23:] if k in ("x", "dt", "B", "C") else v) for k, v in inp.items()}
    rest["initial_state"] = first.final_state
    second = ssd_chunked(**rest, chunk_size=16)
    torch.testing.assert_close(torch.cat([first.y, second.y], 1), full.y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.final_state, full.final_state, rtol=1e-5, atol=1e-5)


def test_empty_sequence_passes_state_through():
    inp = to32(make_inputs(1, 0, 2, 3, 1, 4, with_state=True))
    out = ssd_chunked(**inp, chunk_size=8)
    assert out.y.shape == (1, 0, 2, 3)
    torch.testing.assert_close(out.final_state, inp["initial_state"])


def test_gradcheck_chunked():
    inp = make_inputs(1, 7, 2, 2, 1, 3, with_state=True, d_per_channel=False)
    names = ["x", "dt", "A", "B", "C", "D", "initial_state"]
    args = [inp[k].clone().requires_grad_(True) for k in names]

    def fn(x, dt, A, B, C, D, s0):
        out = ssd_chunked(x, dt, A, B, C, chunk_size=3, D=D, initial_state=s0)
        return out.y, out.final_state

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_keeps_float32_math():
    """Under bf16 autocast the scan still computes in float32: same result as without autocast."""
    inp = to32(make_inputs(1, 40, 4, 8, 1, 16, with_state=True))
    plain = ssd_chunked(**inp, chunk_size=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = ssd_chunked(**inp, chunk_size=16)
    assert auto.y.dtype == torch.float32
    torch.testing.assert_close(auto.y, plain.y, rtol=1e-6, atol=1e-6)
    # bf16 inputs: output in bf16, state in float32, error no worse than bf16 rounding of the output.
    inp16 = {k: v.bfloat16() for k, v in inp.items()}
    out16 = ssd_chunked(**inp16, chunk_size=16)
    ref = ssd_naive(**{k: v.double() for k, v in inp16.items()})
    assert out16.y.dtype == torch.bfloat16 and out16.final_state.dtype == torch.float32
    assert rel_err(out16.y, ref.y) < 1e-2
    assert rel_err(out16.final_state, ref.final_state) < 1e-5


def test_segsum_closed_form():
    a = torch.randn(2, 6, dtype=torch.float64)
    s = segsum(a)
    for i in range(6):
        for j in range(6):
            if j <= i:
                torch.testing.assert_close(s[:, i, j], a[:, j + 1:i + 1].sum(-1))
            else:
                assert torch.isneginf(s[:, i, j]).all()


def test_segsum_gradient_matches_the_masked_sum_reference():
    """segsum's hand-written backward against autograd through the naive masked sums (float64), and
    against finite differences; the -inf entries (exp -> 0) carry no gradient."""
    a = torch.randn(3, 2, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 7, 7, dtype=torch.float64)

    def naive(a):
        t = a.size(-1)
        rows = [torch.stack([a[..., j + 1:i + 1].sum(-1) if j <= i else torch.full_like(a[..., 0], float("-inf"))
                             for j in range(t)], dim=-1) for i in range(t)]
        return torch.stack(rows, dim=-2)                                     # (..., T, T)

    got = torch.autograd.grad((torch.exp(segsum(a)) * w).sum(), a)[0]
    want = torch.autograd.grad((torch.exp(naive(a)) * w).sum(), a)[0]
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda a: (torch.exp(segsum(a)) * w).sum(), (a,))


@pytest.mark.parametrize("bad,match", [
    (dict(x=torch.zeros(1, 5, 4)), "x must be"),
    (dict(dt=torch.zeros(1, 5, 3)), "dt must be"),
    (dict(A=torch.zeros(3)), "A must be"),
    (dict(B=torch.zeros(1, 5, 3, 4), C=torch.zeros(1, 5, 3, 4)), "multiple of ngroups"),
    (dict(C=torch.zeros(1, 5, 1, 3)), "C must have"),
    (dict(D=torch.zeros(5)), "D must be"),
    (dict(initial_state=torch.zeros(1, 4, 2, 3)), "initial_state must be"),
])
def test_bad_shapes_raise(bad, match):
    inp = to32(make_inputs(1, 5, 4, 2, 1, 4))
    inp.update(bad)
    with pytest.raises(ValueError, match=match):
        ssd_chunked(**inp, chunk_size=4)


def test_inference_chunk_groups_equal_the_batched_intra_chunk_path():
    """Under no_grad, long inputs compute the intra-chunk blocks a group of chunks at a time
    (bounded memory); the result must equal the all-at-once path used with gradients."""
    from dnahnet.nn import ssd

    torch.manual_seed(0)
    b, L, h, p, g, n, q = 2, 8 * (ssd.INFERENCE_CHUNK_GROUP + 3) + 5, 4, 8, 2, 16, 8
    x, dt = torch.randn(b, L, h, p), torch.rand(b, L, h) * 0.5
    A, B, C = -torch.rand(h) * 4, torch.randn(b, L, g, n), torch.randn(b, L, g, n)
    with torch.no_grad():
        grouped = ssd.ssd_chunked(x, dt, A, B, C, chunk_size=q)
    with torch.enable_grad():
        whole = ssd.ssd_chunked(x, dt, A, B, C, chunk_size=q)
    assert torch.equal(grouped.y, whole.y.detach())
    assert torch.equal(grouped.final_state, whole.final_state.detach())
