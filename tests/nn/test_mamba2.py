"""Mamba2 mixer: parameter layout, init, full forward vs recurrent step, prefill, causality, backends."""

import inspect
import logging
import math

import pytest
import torch
import torch.nn.functional as F

from dnahnet import kernels
from dnahnet.nn.mamba2 import Mamba2, Mamba2Cache, RMSNormGated

SMALL = dict(d_model=32, d_state=8, headdim=8, chunk_size=8, backend="torch")
CONFIGS = {
    "default": dict(),
    "ngroups2": dict(ngroups=2),
    "no_rmsnorm": dict(rmsnorm=False, ngroups=2),
    "mlp_part": dict(d_ssm=32, D_has_hdim=True, dt_limit=(0.01, 0.05), norm_before_gate=True),
    "headdim16_nobias_conv": dict(headdim=16, conv_bias=False, d_conv=3),
}


def make(name="default", seed=0, **over):
    torch.manual_seed(seed)
    m = Mamba2(**{**SMALL, **CONFIGS[name], **over})
    # Larger dt than the default init (mostly < 0.1) so that the state actually decays over the
    # test's length and the chunk-to-chunk hand-over is exercised.
    with torch.no_grad():
        m.dt_bias.uniform_(-2.0, 1.0)
    return m


def test_constructor_signature_matches_mamba_ssm():
    params = inspect.signature(Mamba2.__init__).parameters
    expected = dict(d_state=128, d_conv=4, conv_init=None, expand=2, headdim=64, d_ssm=None, ngroups=1,
                    A_init_range=(1, 16), D_has_hdim=False, rmsnorm=True, norm_before_gate=False,
                    dt_min=0.001, dt_max=0.1, dt_init_floor=1e-4, dt_limit=(0.0, float("inf")),
                    bias=False, conv_bias=True, chunk_size=256, layer_idx=None, device=None,
                    dtype=None, backend="auto")
    assert list(params)[1] == "d_model"
    for name, default in expected.items():
        assert params[name].default == default, name


def test_parameter_names_and_shapes():
    # d_model 48, expand 2 -> d_inner 96; headdim 16 -> nheads 6; ngroups 2, d_state 16:
    # d_in_proj = 2*96 + 2*2*16 + 6 = 262; conv_dim = 96 + 2*2*16 = 160.
    m = Mamba2(d_model=48, d_state=16, headdim=16, ngroups=2)
    expected = {
        "dt_bias": (6,),
        "A_log": (6,),
        "D": (6,),
        "in_proj.weight": (262, 48),
        "conv1d.weight": (160, 1, 4),
        "conv1d.bias": (160,),
        "norm.weight": (96,),
        "out_proj.weight": (48, 96),
    }
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected
    assert m.norm.group_size == 48  # d_inner / ngroups

    # d_ssm=32 of d_inner=64 (d_mlp=32), D per channel, biases: d_in_proj = 2*64 + 2*1*8 + 4 = 148.
    m = Mamba2(d_model=32, d_state=8, headdim=8, d_ssm=32, D_has_hdim=True, bias=True, rmsnorm=False)
    expected = {
        "dt_bias": (4,), "A_log": (4,), "D": (32,),
        "in_proj.weight": (148, 32), "in_proj.bias": (148,),
        "conv1d.weight": (48, 1, 4), "conv1d.bias": (48,),
        "out_proj.weight": (32, 64), "out_proj.bias": (32,),
    }
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == expected


def test_default_init():
    torch.manual_seed(0)
    m = Mamba2(d_model=256, headdim=8, d_state=4)  # 64 heads
    dt = F.softplus(m.dt_bias)
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    # log-uniform: the median of log(dt) sits near the middle of [log 1e-3, log 1e-1]
    assert abs(dt.log().median().item() - math.log(1e-2)) < 0.8
    A = m.A_log.exp()
    assert A.min() >= 1 and A.max() <= 16
    assert torch.equal(m.D, torch.ones(64)) and torch.equal(m.norm.weight, torch.ones(512))
    for p in (m.dt_bias, m.A_log, m.D):
        assert getattr(p, "_no_weight_decay", False)
    assert not getattr(m.in_proj.weight, "_no_weight_decay", False)
    m = Mamba2(d_model=16, headdim=8, d_state=4, conv_init=0.01)
    assert m.conv1d.weight.abs().max() <= 0.01


def test_dt_floor():
    m = Mamba2(d_model=64, headdim=8, d_state=4, dt_min=1e-6, dt_max=1e-5, dt_init_floor=1e-4)
    torch.testing.assert_close(F.softplus(m.dt_bias), torch.full((16,), 1e-4))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_forward_equals_stepwise(name):
    m = make(name)
    u = torch.randn(2, 21, 32)  # 21: not a multiple of chunk_size 8
    with torch.no_grad():
        y = m(u)
        cache = m.allocate_cache(2, 21)
        ys = torch.stack([m.step(u[:, t], cache) for t in range(21)], dim=1)
    assert y.shape == (2, 21, 32)
    torch.testing.assert_close(ys, y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["default", "ngroups2", "mlp_part"])
@pytest.mark.parametrize("prefix", [2, 13])  # 2 < d_conv: the conv cache must be left-padded
def test_prefill_then_step_equals_forward(name, prefix):
    m = make(name)
    u = torch.randn(2, 20, 32)
    with torch.no_grad():
        y = m(u)
        cache = m.allocate_cache(2, 20)
        y_pre = m(u[:, :prefix], cache)
        y_rest = torch.stack([m.step(u[:, t], cache) for t in range(prefix, 20)], dim=1)
        stepped = m.allocate_cache(2, 20)
        for t in range(prefix):
            m.step(u[:, t], stepped)
    torch.testing.assert_close(torch.cat([y_pre, y_rest], 1), y, rtol=1e-4, atol=1e-5)
    # the prefill left exactly the state that stepping through the prefix leaves
    cache = m.allocate_cache(2, 20)
    with torch.no_grad():
        m(u[:, :prefix], cache)
    torch.testing.assert_close(cache.conv_state, stepped.conv_state)
    torch.testing.assert_close(cache.ssm_state, stepped.ssm_state, rtol=1e-4, atol=1e-6)


def test_chained_prefills_equal_forward():
    m = make("ngroups2")
    u = torch.randn(1, 40, 32)
    with torch.no_grad():
        y = m(u)
        cache = m.allocate_cache(1, 40)
        parts = [m(u[:, a:b], cache) for a, b in [(0, 11), (11, 12), (12, 30), (30, 40)]]
    torch.testing.assert_close(torch.cat(parts, 1), y, rtol=1e-4, atol=1e-5)


def test_causality():
    m = make("ngroups2")
    u = torch.randn(1, 30, 32)
    k = 17
    v = u.clone()
    v[:, k] += torch.randn(32)
    with torch.no_grad():
        yu, yv = m(u), m(v)
    torch.testing.assert_close(yu[:, :k], yv[:, :k], rtol=0, atol=0)
    assert (yu[:, k:] - yv[:, k:]).abs().amax(-1).min() > 0  # every later position sees the change


def test_gradients_reach_every_parameter():
    m = make("mlp_part")
    m(torch.randn(2, 19, 32)).square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_bf16_autocast():
    m = make("default")
    u = torch.randn(2, 24, 32)
    with torch.no_grad():
        ref = m(u)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(u)
            cache = m.allocate_cache(2, 24)
            ys = torch.stack([m.step(u[:, t], cache) for t in range(24)], dim=1)
    assert y.dtype == torch.bfloat16 and ys.dtype == torch.bfloat16
    assert cache.ssm_state.dtype == torch.float32  # the state accumulates in float32
    assert ((y.float() - ref).abs().max() / ref.abs().max()) < 5e-2
    assert ((ys.float() - ref).abs().max() / ref.abs().max()) < 5e-2


def test_rmsnorm_gated_matches_formula():
    torch.manual_seed(0)
    norm = RMSNormGated(12, group_size=4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
    x, z = torch.randn(3, 12), torch.randn(3, 12)
    g = (x * z * torch.sigmoid(z)).view(3, 3, 4)
    expected = (g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).view(3, 12) * norm.weight
    torch.testing.assert_close(norm(x, z), expected)
    norm.norm_before_gate = True
    g = x.view(3, 3, 4)
    expected = (g / torch.sqrt(g.pow(2).mean(-1, keepdim=True) + 1e-5)).view(3, 12) * norm.weight
    torch.testing.assert_close(norm(x, z), expected * F.silu(z))


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="backend"):
        Mamba2(16, headdim=8, backend="cuda")
    with pytest.raises(ValueError, match="multiple of headdim"):
        Mamba2(20, headdim=16)
    with pytest.raises(ValueError, match="ngroups"):
        Mamba2(16, headdim=8, ngroups=3)
    m = make()
    with pytest.raises(ValueError, match="d_model=32"):
        m(torch.randn(2, 5, 31))
    with pytest.raises(ValueError, match="allocate_cache"):
        m(torch.randn(2, 5, 32), m.allocate_cache(3, 5))
    with pytest.raises(ValueError, match="Mamba2.step"):
        m.step(torch.randn(2, 1, 32), m.allocate_cache(2, 5))


def test_cache_layout():
    m = make("ngroups2")
    c = m.allocate_cache(3, 100)
    assert isinstance(c, Mamba2Cache)
    assert c.conv_state.shape == (3, m.conv_dim, 4) and c.conv_state.dtype == torch.float32
    assert c.ssm_state.shape == (3, 8, 8, 8) and c.ssm_state.dtype == torch.float32
    assert (c.conv_state == 0).all() and (c.ssm_state == 0).all()


@pytest.mark.skipif(kernels.HAS_MAMBA_SSM and kernels.HAS_CAUSAL_CONV1D,
                    reason="kernels installed: 'kernel' is only refused for non-CUDA tensors")
def test_explicit_kernel_backend_without_packages_raises():
    m = make(backend="kernel")
    with pytest.raises(RuntimeError, match=r"backend='kernel'.*mamba_ssm"):
        m(torch.randn(1, 4, 32))
    with pytest.raises(RuntimeError, match="backend='kernel'"):
        m.step(torch.randn(1, 32), m.allocate_cache(1, 4))


def test_auto_backend_falls_back_and_logs_once(caplog):
    kernels.reset_fallback_log()
    auto, ref = make(backend="auto"), make(backend="torch")
    u = torch.randn(1, 9, 32)
    with caplog.at_level(logging.INFO, logger="dnahnet.kernels"), torch.no_grad():
        y1, y2 = auto(u), auto(u)
        auto.step(u[:, 0], auto.allocate_cache(1, 9))
        expected = ref(u)
    records = [r for r in caplog.records if r.name == "dnahnet.kernels"]
    assert len(records) == 1 and "mamba2" in records[0].getMessage()
    assert "pure-PyTorch" in records[0].getMessage()
    torch.testing.assert_close(y1, expected, rtol=0, atol=0)
    torch.testing.assert_close(y2, expected, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.skipif(not (kernels.HAS_MAMBA_SSM and kernels.HAS_CAUSAL_CONV1D),
                    reason="needs mamba_ssm and causal_conv1d")
@pytest.mark.parametrize("name", ["default", "ngroups2", "no_rmsnorm", "mlp_part"])
def test_torch_and_kernel_paths_agree_on_gpu(name):
    torch_m = make(name, d_model=64, d_state=16, headdim=16, chunk_size=64).cuda()
    kern_m = make(name, d_model=64, d_state=16, headdim=16, chunk_size=64, backend="kernel").cuda()
    kern_m.load_state_dict(torch_m.state_dict())
    u = torch.randn(2, 150, 64, device="cuda")
    tol = dict(rtol=1e-2, atol=1e-2)  # mamba_ssm's Triton matmuls run fp32 inputs in TF32
    with torch.no_grad():
        y_t, y_k = torch_m(u), kern_m(u)
        torch.testing.assert_close(y_k, y_t, **tol)
        c_t, c_k = torch_m.allocate_cache(2, 160), kern_m.allocate_cache(2, 160)
        torch_m(u[:, :100], c_t)
        kern_m(u[:, :100], c_k)
        torch.testing.assert_close(c_k.ssm_state, c_t.ssm_state, **tol)
        torch.testing.assert_close(c_k.conv_state, c_t.conv_state)
        s_t = torch.stack([torch_m.step(u[:, t], c_t) for t in range(100, 150)], 1)
        s_k = torch.stack([kern_m.step(u[:, t], c_k) for t in range(100, 150)], 1)
        torch.testing.assert_close(s_k, s_t, **tol)
        torch.testing.assert_close(s_k, y_t[:, 100:], **tol)
    # gradients
    u.requires_grad_(True)
    torch_m(u).square().mean().backward()
    kern_m(u).square().mean().backward()
    for (name_, p_t), p_k in zip(torch_m.named_parameters(), kern_m.parameters(), strict=True):
        # relative to the largest entry; dt_bias's gradient is exactly 0 where dt_limit clamps
        err = (p_k.grad - p_t.grad).abs().max().item()
        assert err <= 2e-2 * p_t.grad.abs().max().item() + 1e-7, (name_, err)


# ---------------------------------------------------------------- kernel wiring, with CPU stand-ins (issue 26)
def _fake_conv_update(x, conv_state, weight, bias=None, activation=None):
    """causal_conv1d_update's contract on CPU, including its check that x and conv_state share a dtype."""
    if x.dtype != conv_state.dtype:
        raise RuntimeError(f"causal_conv1d_update: x is {x.dtype}, conv_state {conv_state.dtype}")
    conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
    conv_state[:, :, -1] = x
    out = (conv_state * weight).sum(-1) + (0 if bias is None else bias)
    return F.silu(out) if activation == "silu" else out


def _fake_state_update(state, x, dt, A, B, C, D=None, z=None, dt_bias=None, dt_softplus=False):
    """selective_state_update's math in float32 (mamba_ssm's reference `selective_state_update_ref`)."""
    hg = state.shape[1] // B.shape[1]
    dt = dt.float() + (0 if dt_bias is None else dt_bias.float())
    dt = F.softplus(dt) if dt_softplus else dt
    Bh, Ch = B.float().repeat_interleave(hg, 1), C.float().repeat_interleave(hg, 1)  # (B, H, N)
    new = state.float() * torch.exp(dt[..., None] * A) + (dt * x.float())[..., None] * Bh[:, :, None, :]
    state.copy_(new)
    y = torch.einsum("bhpn,bhn->bhp", new, Ch) + x.float() * D.float()
    return (y if z is None else y * F.silu(z.float())).to(x.dtype)


def _fake_chunk_scan(x, dt, A, B, C, chunk_size, D=None, z=None, dt_bias=None, initial_states=None,
                     dt_softplus=False, dt_limit=(0.0, float("inf")), return_final_states=False):
    from dnahnet.nn.ssd import ssd_chunked

    dt = F.softplus(dt.float() + dt_bias.float()) if dt_softplus else dt.float()
    if tuple(dt_limit) != (0.0, float("inf")):
        dt = dt.clamp(*dt_limit)
    res = ssd_chunked(x, dt, A, B, C, chunk_size, D=D, initial_state=initial_states)
    y = res.y if z is None else res.y * F.silu(z.float())
    return (y, res.final_state) if return_final_states else y


def _pretend_cuda(monkeypatch, **available):
    monkeypatch.setattr(kernels, "_is_cuda", lambda device: True)
    for pkg, ok in available.items():
        monkeypatch.setitem(kernels.AVAILABLE, pkg, ok)
    monkeypatch.setattr(kernels, "causal_conv1d_update", _fake_conv_update)
    monkeypatch.setattr(kernels, "selective_state_update", _fake_state_update)
    monkeypatch.setattr(kernels, "mamba_chunk_scan_combined", _fake_chunk_scan)


def test_kernel_decoding_under_bf16_autocast_passes_one_dtype_to_the_conv_update(monkeypatch):
    """Issue 26, crash 4: under bf16 autocast in_proj's output is bf16 while the conv cache keeps the fp32
    weight's dtype; causal_conv1d_update refuses mixed dtypes. Decoding with the (stand-in) kernels must
    run and give the PyTorch path's outputs."""
    m = make(backend="auto").eval()
    u = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(3))

    def decode(model):
        cache = model.allocate_cache(2)
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.stack([model.step(u[:, t], cache) for t in range(u.shape[1])], 1).float()

    reference = decode(m)  # CPU: the PyTorch path
    _pretend_cuda(monkeypatch, mamba_ssm=True, causal_conv1d=True)
    assert m._paths(u.device) == ("kernel", "kernel")
    assert m.allocate_cache(2).conv_state.dtype == torch.float32  # the condition of the crash
    out = decode(m)
    torch.testing.assert_close(out, reference, atol=2e-2, rtol=2e-2)  # bf16 in_proj/out_proj either way


def test_ssd_kernel_runs_without_causal_conv1d(monkeypatch):
    """mamba_ssm alone: the SSD kernel with the PyTorch conv (its SiLU included), same outputs."""
    m = make(backend="auto")
    u = torch.randn(2, 20, 32, generator=torch.Generator().manual_seed(4))
    reference = m(u)
    _pretend_cuda(monkeypatch, mamba_ssm=True, causal_conv1d=False)
    assert m._paths(u.device) == ("kernel", "torch")
    torch.testing.assert_close(m(u), reference, atol=1e-5, rtol=1e-5)
    with pytest.raises(RuntimeError, match="mamba_ssm"):  # an explicit kernel request still needs mamba_ssm
        monkeypatch.setitem(kernels.AVAILABLE, "mamba_ssm", False)
        make(backend="kernel")(u)
