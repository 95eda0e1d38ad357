"""Hyena operator and filters: FFT and conv1d paths against float64 references, grouped filters,
the modal recurrence against the materialised filter, decoding against the forward, FLOPs."""

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from baselines.hyena import (
    ExplicitFilter,
    HyenaOperator,
    HyenaSpec,
    ModalFilter,
    causal_conv_direct,
    causal_conv_fft,
    hyena_flops,
)


def reference_causal_conv(u: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """float64 causal convolution through an explicit Toeplitz matrix: y_t = sum_{j<=t} h_{t-j} u_j.

    u: (B, C, L); h: (C, K), one filter per channel (K may be shorter or longer than L).
    """
    u, h = u.double(), h.double()
    L, K = u.shape[-1], h.shape[-1]
    lag = torch.arange(L)[:, None] - torch.arange(L)[None, :]  # (L, L): t - j
    valid = (lag >= 0) & (lag < K)
    taps = torch.cat([h, torch.zeros(h.shape[0], max(0, L - K), dtype=h.dtype)], dim=-1)  # (C, >= L)
    toeplitz = taps[:, lag.clamp(0, taps.shape[-1] - 1)] * valid  # (C, L, L)
    return torch.einsum("ctj,bcj->bct", toeplitz, u)


@pytest.mark.parametrize("K", [7, 64, 200])
def test_fft_and_direct_convs_equal_float64_reference(K):
    torch.manual_seed(0)
    u, h = torch.randn(2, 6, 64), torch.randn(6, K) / math.sqrt(K)
    ref = reference_causal_conv(u, h)
    assert torch.allclose(causal_conv_fft(u, h).double(), ref, atol=1e-5)
    assert torch.allclose(causal_conv_direct(u, h).double(), ref, atol=1e-5)
    # grouped form: one spectrum per group broadcast over its channels
    grouped = causal_conv_fft(u.view(2, 3, 2, 64), h[::2, None, :]).view(2, 6, 64)
    assert torch.allclose(grouped.double(), reference_causal_conv(u, h[::2].repeat_interleave(2, 0)), atol=1e-5)


def test_fft_conv_computes_in_float32_for_bf16_inputs():
    torch.manual_seed(0)
    u, h = torch.randn(1, 4, 512), torch.randn(4, 512) * torch.exp(-0.01 * torch.arange(512.0))
    y = causal_conv_fft(u.bfloat16(), h)
    assert y.dtype == torch.bfloat16
    ref = reference_causal_conv(u.bfloat16().float(), h)  # same rounded input, exact arithmetic
    assert torch.allclose(y.double(), ref, rtol=1e-2, atol=1e-2 * ref.abs().max().item())


@pytest.mark.parametrize("fft_min_length", [1, 1000])  # FFT path, conv1d path
def test_grouped_explicit_filter_equals_per_channel_filters(fft_min_length):
    torch.manual_seed(0)
    d, K, g, l_train = 32, 10, 8, 20
    filt = ExplicitFilter(d, K, g, decay_range=(0.01, 100.0), decay_length=l_train, use_d=True,
                          fft_min_length=fft_min_length)
    assert filt.use_fft == (fft_min_length <= K)
    with torch.no_grad():
        filt.D.normal_()
    # the decay, written out from docs/FIDELITY.md ("Hyena-MR"): exp(-r_g t/(L_train-1)), r_g log-spaced in [0.01, 100]
    G = d // g
    rates = 10.0 ** torch.linspace(-2, 2, G, dtype=torch.float64)
    decayed = filt.h.detach().double() * torch.exp(-rates[:, None] * torch.arange(K) / (l_train - 1))
    per_channel = torch.stack([decayed[c // g] for c in range(d)])  # (d, K)
    s = torch.randn(3, d, 25)
    ref = reference_causal_conv(s, per_channel) + filt.D.detach().double()[:, None] * s.double()
    assert torch.allclose(filt(s).double(), ref, atol=1e-5)


def test_se_filter_has_no_d_term_and_mr_does():
    op_se, op_mr = HyenaOperator(32, "SE", HyenaSpec(group_size=8)), HyenaOperator(32, "MR", HyenaSpec(group_size=8))
    assert op_se.filter.D is None and op_se.filter.decay is None and op_se.filter.h.shape == (4, 7)
    assert op_mr.filter.D is not None and op_mr.filter.h.shape == (4, 128)
    assert not op_se.filter.use_fft and op_mr.filter.use_fft  # SE by conv1d, MR by FFT (default threshold)


def test_modal_filter_parameterisation_and_kernel():
    torch.manual_seed(0)
    filt = ModalFilter(8, order=16)
    assert torch.all(filt.p == -1)
    rate = torch.exp(filt.gamma.detach())
    assert rate.min() >= 0.01 - 1e-7 and rate.max() <= 0.1 + 1e-7
    lam = -torch.exp(filt.p.detach().double()) * torch.exp(filt.gamma.detach().double())  # (d, N)
    t = torch.arange(100, dtype=torch.float64)
    ref = (filt.R.detach().double()[..., None] * torch.exp(lam[..., None] * t)).sum(1)
    assert torch.allclose(filt.kernel(100).double(), ref, atol=1e-5)
    assert torch.all(filt.poles() < 0)


def test_modal_recurrence_equals_convolution_with_materialised_filter():
    torch.manual_seed(0)
    d, L = 8, 300
    filt = ModalFilter(d)
    with torch.no_grad():
        filt.D.normal_()
        filt.gamma.add_(torch.randn_like(filt.gamma))  # spread the poles: fast and slow modes
    s = torch.randn(2, d, L)
    ref = reference_causal_conv(s, filt.kernel(L).detach()) + filt.D.detach().double()[:, None] * s.double()
    with torch.no_grad():
        conv = filt(s)
        state = filt.allocate_state(2, s.device, s.dtype)
        rec = torch.stack([filt.step(s[..., t], state) for t in range(L)], dim=-1)
        prefilled = filt.allocate_state(2, s.device, s.dtype)
        filt.prefill_chunk = 64  # several chunks
        filt.prefill(s, prefilled)
    scale = ref.abs().max().item()
    assert torch.allclose(conv.double(), ref, atol=1e-5 * scale)
    assert torch.allclose(rec.double(), ref, atol=1e-5 * scale)
    assert torch.allclose(prefilled, state, atol=1e-5 * state.abs().max().item())  # closed form == recurrence


def randomize_filters(op: HyenaOperator) -> HyenaOperator:
    """Unit-scale filters and D: at Savanna's init the MR taps (~1e-7) and D (0) would leave the MR and
    D paths numerically silent, and a comparison could not see them."""
    with torch.no_grad():
        filt = op.filter
        if isinstance(filt, ExplicitFilter):
            filt.h.normal_(0, filt.length ** -0.5)
        else:
            filt.R.normal_(0, filt.order ** -0.5)
        if filt.D is not None:
            filt.D.normal_()
    return op


def reference_operator(op: HyenaOperator, x: torch.Tensor) -> torch.Tensor:
    """The Hyena operator in float64 from its weights, written from docs/FIDELITY.md's StripedHyena 2 rows."""
    d, L = op.d_model, x.shape[1]
    x = x.double()
    u = x @ op.in_proj.weight.detach().double().T  # (B, L, 3d)
    w = op.featurizer.weight.detach().double()[:, 0, :]  # (3d, k), w[:, -1] multiplies the current input
    z = reference_causal_conv(u.transpose(1, 2), w.flip(-1))  # (B, 3d, L)
    q, k, v = z[:, :d], z[:, d : 2 * d], z[:, 2 * d :]
    s = k * v
    if op.kind == "LI":
        h = op.filter.kernel(L).detach()
    else:
        h = op.filter.channel_kernel().detach()
    filtered = reference_causal_conv(s, h)
    if op.filter.D is not None:
        filtered = filtered + op.filter.D.detach().double()[:, None] * s
    y = (q * filtered).transpose(1, 2)  # (B, L, d)
    return y @ op.out_proj.weight.detach().double().T + op.out_proj.bias.detach().double()


@pytest.mark.parametrize("kind", ["SE", "MR", "LI"])
def test_operator_matches_float64_reference(kind):
    torch.manual_seed(0)
    op = randomize_filters(HyenaOperator(32, kind, HyenaSpec(group_size=8, l_train=64)))
    with torch.no_grad():
        op.out_proj.bias.normal_()
    x = torch.randn(2, 50, 32)
    ref = reference_operator(op, x)
    assert torch.allclose(op(x).double(), ref, atol=1e-4 * ref.abs().max().item())


@pytest.mark.parametrize("kind", ["SE", "MR", "LI"])
def test_operator_step_and_prefill_reproduce_forward(kind):
    torch.manual_seed(0)
    op = randomize_filters(HyenaOperator(32, kind, HyenaSpec(group_size=8, mr_length=16, l_train=30))).eval()
    x = torch.randn(2, 30, 32)
    with torch.no_grad():
        full = op(x)
        cache = op.allocate_cache(2, 30)
        stepped = torch.stack([op.step(x[:, t], cache) for t in range(30)], dim=1)
        prefill_cache = op.allocate_cache(2, 30)
        head = op(x[:, :20], cache=prefill_cache)
        tail = torch.stack([op.step(x[:, t], prefill_cache) for t in range(20, 30)], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5, rtol=1e-5)
    assert torch.allclose(head, full[:, :20], atol=1e-6)
    assert torch.allclose(tail, full[:, 20:], atol=1e-5, rtol=1e-5)


def test_short_prefill_shorter_than_filter_memory():
    """A prompt shorter than the FIR memory leaves zeros in the oldest slots (causal zero padding)."""
    torch.manual_seed(0)
    op = randomize_filters(HyenaOperator(16, "MR", HyenaSpec(group_size=4, mr_length=12, l_train=9))).eval()
    x = torch.randn(1, 9, 16)
    with torch.no_grad():
        full = op(x)
        cache = op.allocate_cache(1, 9)
        op(x[:, :2], cache=cache)
        tail = torch.stack([op.step(x[:, t], cache) for t in range(2, 9)], dim=1)
    assert torch.allclose(tail, full[:, 2:], atol=1e-5, rtol=1e-5)


def test_every_filter_parameter_gets_a_gradient():
    torch.manual_seed(0)
    ops = [HyenaOperator(16, kind, HyenaSpec(group_size=4)) for kind in ("SE", "MR", "LI")]
    x = torch.randn(2, 40, 16)
    sum(op(x).square().sum() for op in ops).backward()
    for op in ops:
        for name, p in op.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (op.kind, name)


@pytest.mark.parametrize("kind,fft_min_length", [("SE", 128), ("MR", 1000), ("MR", 128), ("LI", 128)])
def test_operator_flops_match_flop_counter_for_what_it_sees(kind, fft_min_length):
    """FlopCounterMode sees the projections and conv1d paths exactly; FFTs are invisible to it."""
    d, L, B = 32, 64, 2
    spec = HyenaSpec(group_size=8, fft_min_length=fft_min_length)
    op = HyenaOperator(d, kind, spec)
    parts = hyena_flops(d, kind, L, spec)
    assert parts["hyena_proj"] == 8 * d * d and parts["featurizer"] == 18 * d
    expected_filter = {"SE": 14 * d, "MR": 256 * d, "LI": 10 * math.log2(2 * L) * d}[kind]
    assert sum(v for k, v in parts.items() if k not in ("hyena_proj", "featurizer")) == pytest.approx(expected_filter)
    with FlopCounterMode(display=False) as counter:
        op(torch.randn(B, L, d))
    visible = sum(v for k, v in parts.items() if not k.endswith("_fft"))
    assert counter.get_total_flops() / (B * L) == pytest.approx(visible, rel=1e-6)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="group size 5 must divide d_model=32"):
        HyenaOperator(32, "SE", HyenaSpec(group_size=5))
    with pytest.raises(ValueError, match="unknown Hyena filter 'XX'"):
        HyenaOperator(32, "XX")
    with pytest.raises(ValueError, match="decay range"):
        ExplicitFilter(32, 8, 8, decay_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="L_train"):
        ExplicitFilter(32, 8, 8, decay_range=(0.1, 1.0), decay_length=1)
    with pytest.raises(ValueError, match="gamma range"):
        ModalFilter(8, gamma_range=(0.1, 0.01))
