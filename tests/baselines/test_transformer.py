"""Transformer++: decoding equals the forward, causality, FLOPs against FlopCounterMode."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import dnahnet


def test_step_decoding_reproduces_forward():
    torch.manual_seed(0)
    model = dnahnet.build_model("transformer", "tiny").eval()
    ids = torch.randint(0, 5, (2, 33))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.init_cache(2, 33)
        stepped = torch.stack([model.step(ids[:, t], cache) for t in range(33)], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5, rtol=1e-5)


def test_causality():
    torch.manual_seed(0)
    model = dnahnet.build_model("transformer", "tiny").eval()
    ids = torch.randint(0, 4, (1, 40))
    k = 23
    other = ids.clone()
    other[0, k] = (other[0, k] + 1) % 4
    with torch.no_grad():
        a, b = model(ids).logits, model(other).logits
    assert torch.equal(a[:, :k], b[:, :k])
    assert not torch.allclose(a[:, k:], b[:, k:])


@pytest.mark.parametrize("seq_len", [64, 256])
def test_analytic_flops_match_flop_counter(seq_len):
    """Forward + backward FLOPs within 5% of FlopCounterMode (MATH attention: full L x L, as we count)."""
    model = dnahnet.build_model("transformer", "tiny", d_model=128, n_heads=4, n_layers=2)
    ids = torch.randint(0, 4, (2, seq_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(ids).logits.sum().backward()
    counted = counter.get_total_flops() / ids.numel()
    analytic = model.flops_per_token(seq_len).training
    assert abs(analytic / counted - 1) < 0.05, (analytic, counted)


def test_param_counts_and_presets():
    model = dnahnet.build_model("transformer", "tiny")
    counts = model.param_counts()
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.total - counts.non_embedding == 2 * 8 * 64  # embedding + head, V=8, d=64
    cfg = dnahnet.get_config("transformer", "base")
    assert cfg.d_ff % 128 == 0 and cfg.d_ff >= 8 * cfg.d_model / 3  # 8/3 d rounded up to a multiple of 128


def test_registry_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown model family 'gpt'"):
        dnahnet.build_model("gpt")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        dnahnet.build_model("transformer", "huge")
    with pytest.raises(ValueError, match="unknown field 'width'"):
        dnahnet.build_model("transformer", "tiny", width=3)
    with pytest.raises(ValueError, match="TransformerConfig.n_layers"):
        dnahnet.build_model("transformer", "tiny", n_layers="two")
