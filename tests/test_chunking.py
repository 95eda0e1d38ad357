"""Router, chunk, dechunk (EMA + upsampling), STE and ratio loss against naive references."""

import pytest
import torch
import torch.nn.functional as F

from dnahnet.chunking import (
    P_MAX,
    P_MIN,
    DeChunk,
    Router,
    chunk,
    confidence,
    ema_scan,
    ema_step,
    ratio_loss,
    ste,
)
from dnahnet.nn.init import init_weights

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def ema_loop(z, p, initial=None):
    """zbar_j = P_j z_j + (1 - P_j) zbar_{j-1}, one position at a time (the reference)."""
    P = p.clamp(P_MIN, P_MAX)
    prev = torch.zeros_like(z[:, 0]) if initial is None else initial
    out = []
    for j in range(z.shape[1]):
        prev = P[:, j, None] * z[:, j] + (1 - P[:, j, None]) * prev
        out.append(prev)
    return torch.stack(out, 1)


@pytest.mark.parametrize("M,chunk_size", [(1, 64), (37, 8), (64, 16), (50, 64)])
def test_ema_scan_equals_python_loop_float64(M, chunk_size):
    g = torch.Generator().manual_seed(M)
    z = torch.randn(3, M, 5, generator=g, dtype=torch.float64)
    p = torch.rand(3, M, generator=g, dtype=torch.float64)
    p[:, ::4] = 1.0  # clamped to 1 - 1e-4 (and 0 to 1e-4): the clamp is part of the definition
    p[:, 1::7] = 0.0
    init = torch.randn(3, 5, generator=g, dtype=torch.float64)
    for initial in (None, init):
        zbar, last = ema_scan(z, p, chunk_size=chunk_size, initial=initial)
        ref = ema_loop(z, p, initial)
        assert zbar.dtype == torch.float64
        torch.testing.assert_close(zbar, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(last, ref[:, -1], rtol=1e-10, atol=1e-10)


def test_ema_step_continues_the_scan():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 9, 4, generator=g, dtype=torch.float64)
    p = torch.rand(2, 9, generator=g, dtype=torch.float64)
    zbar, _ = ema_scan(z[:, :5], p[:, :5], chunk_size=4)
    last = zbar[:, -1]
    for j in range(5, 9):
        last = ema_step(z[:, j], p[:, j], last)
    torch.testing.assert_close(last, ema_loop(z, p)[:, -1], rtol=1e-12, atol=1e-12)


def test_ema_scan_gradients_match_loop():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(2, 20, 3, generator=g, dtype=torch.float64, requires_grad=True)
    p = (torch.rand(2, 20, generator=g, dtype=torch.float64) * 0.9 + 0.05).requires_grad_()
    w = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    gz, gp = torch.autograd.grad((ema_scan(z, p, chunk_size=6)[0] * w).sum(), (z, p))
    rz, rp = torch.autograd.grad((ema_loop(z, p) * w).sum(), (z, p))
    torch.testing.assert_close(gz, rz)
    torch.testing.assert_close(gp, rp)


def test_chunk_selects_boundary_rows_in_order_with_padding():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(4, 11, 6, generator=g)
    b = torch.rand(4, 11, generator=g) < 0.4
    b[:, 0] = True
    b[2] = False
    b[2, 0] = True  # a sequence with a single chunk
    out = chunk(h, b, multiple=1)
    counts = b.sum(1)
    assert out.x.shape == (4, int(counts.max()), 6)
    for i in range(4):
        n = int(counts[i])
        torch.testing.assert_close(out.x[i, :n], h[i][b[i]], rtol=0, atol=0)
        assert out.mask[i, :n].all() and not out.mask[i, n:].any()
        assert torch.equal(out.index[i, :n], torch.nonzero(b[i])[:, 0])
    assert torch.equal(out.counts, counts)


def test_dechunk_upsamples_most_recent_chunk():
    g = torch.Generator().manual_seed(4)
    B, L, D = 3, 13, 4
    prob = torch.rand(B, L, generator=g, dtype=torch.float64)
    b = prob >= 0.5
    b[:, 0] = True
    prob[:, 0] = 1.0
    chunks = chunk(torch.randn(B, L, D, generator=g, dtype=torch.float64), b)
    z = torch.randn(B, chunks.x.shape[1], D, generator=g, dtype=torch.float64)
    out = DeChunk(D, chunk_size=4)(z, prob, b, chunks)
    assert out.shape == (B, L, D)
    for i in range(B):
        n = int(chunks.counts[i])
        zbar = ema_loop(z[i : i + 1, :n], prob[i][b[i]][None])[0]  # (n, D)
        j = -1
        for t in range(L):
            j += int(b[i, t])
            torch.testing.assert_close(out[i, t], zbar[j], rtol=1e-10, atol=1e-10)


def test_router_identity_init_cosine_of_adjacent_states():
    g = torch.Generator().manual_seed(5)
    h = torch.randn(2, 9, 8, generator=g)
    router = Router(8)
    init_weights(router, n_residuals=4)  # generic re-init must leave the identity alone
    assert torch.equal(router.q_proj.weight, torch.eye(8)) and torch.equal(router.k_proj.weight, torch.eye(8))
    out = router(h)
    cos = F.cosine_similarity(h[:, 1:].double(), h[:, :-1].double(), dim=-1)
    ref = torch.cat([torch.ones(2, 1, dtype=torch.float64), (1 - cos) / 2], dim=1)
    torch.testing.assert_close(out.prob.double(), ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(out.boundary, out.prob >= 0.5)
    assert out.boundary[:, 0].all()
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    assert not router(h, mask).boundary[1, 5:].any()


def test_router_step_matches_forward_and_fixed_period():
    g = torch.Generator().manual_seed(6)
    router = Router(8)
    with torch.no_grad():
        router.q_proj.weight.add_(0.5 * torch.randn(8, 8, generator=g))
    h = torch.randn(3, 10, 8, generator=g)
    for period in (None, 3):
        router.fixed_period = period
        full = router(h)
        cache = router.allocate_cache(3)
        steps = [router.step(h[:, t], cache) for t in range(10)]
        torch.testing.assert_close(torch.stack([s.prob for s in steps], 1), full.prob, rtol=1e-5, atol=1e-6)
        assert torch.equal(torch.stack([s.boundary for s in steps], 1), full.boundary)
    assert torch.equal(full.boundary[0], torch.arange(10) % 3 == 0)


def test_ste_forward_is_one_and_gradient_is_that_of_c():
    p = torch.tensor([0.9, 0.2, 0.6, 0.51], requires_grad=True)
    b = torch.tensor([True, False, True, False])
    c = confidence(p, b)
    assert torch.equal(c.detach(), torch.tensor([0.9, 0.8, 0.6, 0.49]))
    y = ste(c)
    assert torch.equal(y.detach(), torch.ones(4))
    (grad,) = torch.autograd.grad((y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum(), p)
    assert torch.equal(grad, torch.tensor([1.0, -2.0, 3.0, -4.0]))


@pytest.mark.parametrize("N", [2.0, 3.0, 6.0])
def test_ratio_loss_hand_computed_points(N):
    def loss_at(F_, G, n=12):
        # n positions, round(F n) boundaries, every p = G
        k = round(F_ * n)
        b = torch.zeros(1, n, dtype=torch.bool)
        b[0, :k] = True
        return ratio_loss(torch.full((1, n), G), b, N)

    r = loss_at(1 / N, 1 / N, n=int(6 * N))
    torch.testing.assert_close(r.loss, torch.tensor(1.0))  # the minimum, at F = G = 1/N
    torch.testing.assert_close(r.selection_rate, torch.tensor(1 / N))
    torch.testing.assert_close(loss_at(1.0, 1.0).loss, torch.tensor(N))  # every position selected
    torch.testing.assert_close(loss_at(0.0, 0.0).loss, torch.tensor(N / (N - 1)))
    F_, G = 0.25, 0.7
    expected = N / (N - 1) * ((N - 1) * F_ * G + (1 - F_) * (1 - G))
    torch.testing.assert_close(loss_at(F_, G).loss, torch.tensor(expected))


def test_ratio_loss_masks_padding_and_has_gradient_through_g():
    p = torch.tensor([[0.9, 0.2, 0.4, 0.99], [0.8, 0.1, 0.3, 0.3]], requires_grad=True)
    b = p.detach() >= 0.5
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    r = ratio_loss(p, b, 3.0, mask)
    F_ = (2 + 1) / 6
    G = (0.9 + 0.2 + 0.4 + 0.99 + 0.8 + 0.1) / 6
    torch.testing.assert_close(r.selection_rate, torch.tensor(F_))
    torch.testing.assert_close(r.loss, torch.tensor(1.5 * (2 * F_ * G + (1 - F_) * (1 - G))))
    (grad,) = torch.autograd.grad(r.loss, p)
    dG = 1.5 * (2 * F_ - (1 - F_)) / 6  # dL/dG * dG/dp for a real position
    torch.testing.assert_close(grad, mask.float() * dG)
    with pytest.raises(ValueError, match="ratio must be > 1"):
        ratio_loss(p, b, 1.0)


def test_chunk_count_is_rounded_up_and_padding_changes_nothing(monkeypatch):
    """Issue 26: M rounds up to a multiple (at most L) so torch.compile sees few shapes; the extra rows are
    masked padding after every real chunk, and dnaHNet's logits, ratio losses and gradients are unchanged."""
    import dnahnet
    from dnahnet import chunking

    g = torch.Generator().manual_seed(5)
    b = torch.rand(3, 40, generator=g) < 0.3
    b[:, 0] = True
    h = torch.randn(3, 40, 4, generator=g)
    out, exact = chunk(h, b, multiple=8), chunk(h, b, multiple=1)
    assert out.x.shape[1] % 8 == 0 and out.x.shape[1] >= exact.x.shape[1]
    assert chunk(h, b, multiple=64).x.shape[1] == 40  # capped at L
    assert torch.equal(out.x[:, : exact.x.shape[1]], exact.x) and not out.mask[:, exact.x.shape[1]:].any()

    ids = torch.randint(0, 4, (2, 48), generator=g)

    def run(multiple):
        monkeypatch.setattr(chunking, "CHUNK_MULTIPLE", multiple)
        torch.manual_seed(0)
        model = dnahnet.build_model("dnahnet", "tiny", d_model=(16, 24), d_intermediate=(0, 32), n_heads=(2, 2),
                                    layout=["m1", ["T1"], "m1"], window=(15,), ratios=(3.0,), lr_multipliers=(1.5, 1.0), chunk_size=8, ema_chunk_size=8)
        o = model(ids)
        loss = o.logits.float().logsumexp(-1).mean() + o.aux_loss
        loss.backward()
        return o, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    (o1, g1), (o64, g64) = run(1), run(64)
    assert o64.chunk_indices[0].shape[1] == 48 > o1.chunk_indices[0].shape[1]  # padding happened
    torch.testing.assert_close(o64.logits, o1.logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.stack(o64.ratio_losses), torch.stack(o1.ratio_losses), rtol=0, atol=1e-7)
    for a, c in zip(g64, g1, strict=True):
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)
