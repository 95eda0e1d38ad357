"""StripedHyena 2: the stripe, decoding equals the forward, causality, FLOPs against FlopCounterMode,
presets and config errors."""

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

import dnahnet
from baselines.hyena import HyenaOperator
from baselines.striped_hyena import StripedHyenaConfig
from dnahnet.nn import Attention
from dnahnet.registry import config_from_dict
from dnahnet.typed_config import to_dict


def randomized(model):
    """The model with unit-scale Hyena filters and D (see tests/baselines/test_hyena.py): at Savanna's
    init the MR taps (~1e-7) and D (0) are numerically silent, and decoding checks could not see them."""
    with torch.no_grad():
        for op in model.hyena_operators():
            filt = op.filter
            if op.kind == "LI":
                filt.R.normal_(0, filt.order ** -0.5)
            else:
                filt.h.normal_(0, filt.length ** -0.5)
            if filt.D is not None:
                filt.D.normal_()
    return model


def test_stripe_pattern_places_attention_at_3_10_17():
    with torch.device("meta"):
        model = dnahnet.build_model("stripedhyena", "tiny", n_layers=18)
    kinds = ["A" if isinstance(b.mixer, Attention) else b.mixer.kind for b in model.backbone.blocks]
    assert [i for i, k in enumerate(kinds) if k == "A"] == [3, 10, 17]
    assert kinds[:7] == ["SE", "MR", "LI", "A", "SE", "MR", "LI"]
    assert all(b.mlp is not None for b in model.backbone.blocks)  # every layer has its gated MLP
    assert model.embedding.weight is model.lm_head.weight  # tied, as Evo 2


def test_step_decoding_reproduces_forward():
    torch.manual_seed(0)
    model = randomized(dnahnet.build_model("stripedhyena", "tiny")).eval()  # one period SMLASML
    ids = torch.randint(0, 5, (2, 40))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.init_cache(2, 40)
        stepped = torch.stack([model.step(ids[:, t], cache) for t in range(40)], dim=1)
    assert torch.allclose(stepped, full, atol=1e-5, rtol=1e-5)


def test_prefill_then_step_equals_forward():
    torch.manual_seed(0)
    model = randomized(dnahnet.build_model("stripedhyena", "tiny")).eval()
    ids = torch.randint(0, 4, (2, 48))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.init_cache(2, 48)
        last = model.prefill(ids[:, :37], cache)  # (B, V) after position 36
        tail = torch.stack([model.step(ids[:, t], cache) for t in range(37, 48)], dim=1)
    assert torch.allclose(last, full[:, 36], atol=1e-6)
    assert torch.allclose(tail, full[:, 37:], atol=1e-5, rtol=1e-5)


def test_greedy_generation_matches_argmax_of_full_forwards():
    """dnahnet.generate (parallel prefill, then steps) against re-running the full forward per token."""
    torch.manual_seed(0)
    model = randomized(dnahnet.build_model("stripedhyena", "tiny")).eval()
    prompt = torch.randint(0, 4, (2, 20))
    out = dnahnet.generate(model, prompt, max_new_tokens=12, temperature=0)
    ids = prompt
    with torch.no_grad():
        for _ in range(12):
            nxt = model(ids).logits[:, -1, :4].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    assert torch.equal(out, ids)


def test_causality():
    torch.manual_seed(0)
    model = randomized(dnahnet.build_model("stripedhyena", "tiny")).eval()
    ids = torch.randint(0, 4, (1, 300))  # longer than the MR filter: every path is exercised
    k = 211
    other = ids.clone()
    other[0, k] = (other[0, k] + 1) % 4
    with torch.no_grad():
        a, b = model(ids).logits, model(other).logits
    # FFT round-off leaks ~1e-7 of every position into every other; exact causality holds up to it
    assert torch.allclose(a[:, :k], b[:, :k], atol=1e-5, rtol=0)
    assert (a[:, k:] - b[:, k:]).abs().max() > 1e-3


@pytest.mark.parametrize("seq_len,fft_min_length", [(64, 1000), (256, 128)])
def test_analytic_flops_match_flop_counter(seq_len, fft_min_length):
    """Forward and forward + backward within 5% of FlopCounterMode, the FFT terms (which it cannot see)
    and the softmax (3 h L, elementwise) removed from the analytic side.

    FlopCounterMode ignores `groups` in the weight gradient of a convolution, overcounting a depthwise
    conv's backward by a factor of its channels; an exact backward of a conv costs twice its forward
    (input and weight gradients), so the training check takes the counted backward convs as that.
    """
    torch.manual_seed(0)
    model = dnahnet.build_model("stripedhyena", "tiny", d_model=128, n_heads=4, fft_min_length=fft_min_length)
    parts = model.flops_breakdown(seq_len)
    assert ("mr_conv" in parts) == (fft_min_length > 128) and ("mr_fft" in parts) == (fft_min_length <= 128)
    visible = model.flops_per_token(seq_len).forward - sum(v for k, v in parts.items() if k.endswith("_fft"))
    visible -= parts["attention_softmax"]
    ids = torch.randint(0, 4, (2, seq_len))
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fwd:
        model(ids)
    assert abs(visible / (fwd.get_total_flops() / ids.numel()) - 1) < 0.05
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as train:
        model(ids).logits.sum().backward()
    ops = {str(op): n for op, n in train.get_flop_counts()["Global"].items()}
    conv = ops.get("aten.convolution", 0)
    assert (conv > 0) and ops.get("aten.convolution_backward", 0) > 2 * conv  # the overcount, still there
    counted = sum(n for op, n in ops.items() if op != "aten.convolution_backward") + 2 * conv
    assert abs(3 * visible / (counted / ids.numel()) - 1) < 0.05


def test_flops_per_token_by_hand():
    """The tiny preset's count written out from the "FLOPs" rows of docs/FIDELITY.md (d 64, SwiGLU 176,
    4 heads, V 8)."""
    model = dnahnet.build_model("stripedhyena", "tiny")
    d, f, L, V = 64, 176, 1024, 8
    hyena = 6 * d * d + 18 * d + 2 * d * d
    se, mr, li = hyena + 14 * d, hyena + 256 * d, hyena + 10 * math.log2(2 * L) * d
    attn = 6 * d * d + 2 * L * d + 3 * 4 * L + 2 * L * d + 2 * d * d
    expected = 2 * se + 2 * mr + 2 * li + attn + 7 * 6 * d * f + 2 * d * V
    got = model.flops_per_token(L)
    assert got.forward == pytest.approx(expected)
    assert got.training == pytest.approx(3 * expected)


def test_presets_reach_their_sizes():
    """Parameter counts of every preset (built on the meta device: no memory, no time)."""
    sizes = {"tiny": (0.2e6, 0.5e6), "small": (2.5e6, 4e6), "7m": (6e6, 8e6), "40m": (35e6, 45e6),
             "100m": (90e6, 110e6), "1b": (0.95e9, 1.25e9)}
    for preset, (lo, hi) in sizes.items():
        with torch.device("meta"):
            model = dnahnet.build_model("stripedhyena", preset)
        counts = model.param_counts()
        assert lo <= counts.total <= hi, (preset, counts)
        assert counts.total - counts.non_embedding == model.config.vocab_size * model.config.d_model  # tied
    with torch.device("meta"):
        sh, tf = dnahnet.build_model("stripedhyena", "small"), dnahnet.build_model("transformer", "small")
    assert abs(sh.param_counts().total / tf.param_counts().total - 1) < 0.1  # benchmark pairs match


def test_config_errors_name_the_field_and_config_round_trips():
    with pytest.raises(ValueError, match="StripedHyenaConfig.pattern='SMQ'"):
        dnahnet.build_model("stripedhyena", "tiny", pattern="SMQ")
    with pytest.raises(ValueError, match="filter_group_size=16 must divide d_model=40"):
        dnahnet.build_model("stripedhyena", "tiny", d_model=40)
    with pytest.raises(ValueError, match="n_heads=3 must divide"):
        dnahnet.build_model("stripedhyena", "tiny", n_heads=3)
    hyena_only = dnahnet.get_config("stripedhyena", "tiny", pattern="SML", n_heads=3)  # no attention: fine
    assert hyena_only.layer_letters == "SMLSMLS"
    cfg = dnahnet.get_config("stripedhyena", "7m")
    assert config_from_dict("stripedhyena", to_dict(cfg)) == cfg
    assert isinstance(cfg, StripedHyenaConfig)


def test_every_parameter_trains_and_loss_drops_on_a_repeat():
    """A few Adam steps on a periodic sequence: every parameter gets a gradient and the loss falls."""
    torch.manual_seed(0)
    model = dnahnet.build_model("stripedhyena", "tiny")
    period = torch.randint(0, 4, (16,))
    window = period.repeat(5)[:65]
    ids, labels = window[:-1][None].repeat(4, 1), window[1:][None].repeat(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        loss = torch.nn.functional.cross_entropy(model(ids).logits.flatten(0, 1), labels.flatten())
        opt.zero_grad()
        loss.backward()
        if step == 0:
            missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
            assert not missing, missing
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(isinstance(m, HyenaOperator) for m in model.hyena_operators())
