"""StripedHyena 2 against Evo 2 as Savanna trains it (issue 13; values and sources in docs/FIDELITY.md):
the MR decay over the training context, the initial statistics of filters, residues, D and projections,
and the block details (gated MLP activations, tied embeddings, norm epsilon, attention biases)."""

import math

import pytest
import torch
import torch.nn.functional as F

import dnahnet
from baselines.hyena import HyenaOperator, HyenaSpec
from dnahnet.nn import Attention, Block, RMSNorm, SwiGLU


def assert_std(tensor: torch.Tensor, expected: float, what: str, rel: float = 0.10) -> None:
    """Sample std (about a zero mean) within `rel` of `expected`."""
    got = tensor.detach().double().pow(2).mean().sqrt().item()
    assert abs(got / expected - 1) < rel, f"{what}: std {got:.4g}, expected {expected:.4g}"


# ---------------------------------------------------------------------------------------------- MR decay
def test_mr_decay_spans_the_training_context():
    """exp(-r_g j / (L - 1)), r_g log-spaced in [0.01, 100], computed here in float64 and compared with
    what the filter applies to an impulse; at L = 8192 every group keeps >= 0.2 of its gain at tap 127."""
    torch.manual_seed(0)
    d, g, L = 256, 16, 8192  # 16 groups, as in issue 13
    model = dnahnet.build_model("stripedhyena", "tiny", d_model=d, n_heads=4)
    assert model.config.l_train == L  # the default: Evo 2's context
    mr = next(op for op in model.hyena_operators() if op.kind == "MR")
    filt = mr.filter
    with torch.no_grad():
        filt.h.normal_()  # unit taps, so the applied filter reads out the decay
    G, K = d // g, filt.length
    rates = torch.logspace(-2, 2, G, dtype=torch.float64)  # 0.01 ... 100
    decay = torch.exp(-rates[:, None] * torch.arange(K, dtype=torch.float64) / (L - 1))  # (G, K)
    assert decay[:, 127].min() >= 0.2  # the slowest-decaying tap of the fastest group: exp(-100 * 127 / 8191)
    impulse = torch.zeros(1, d, 200)
    impulse[..., 0] = 1.0
    with torch.no_grad():
        response = filt(impulse)[0, :, :K].double()  # (d, K): h * decay per channel, D = 0
    expected = (filt.h.detach().double() * decay).repeat_interleave(g, dim=0)
    assert torch.allclose(response, expected, rtol=1e-5, atol=1e-6)
    # the decay a run trained at 128 would get: a third of the groups fade below 0.05 within 82 taps
    short = torch.exp(-rates[:, None] * torch.arange(K, dtype=torch.float64) / 127)
    assert int((short[:, 82] < 0.05).sum()) >= 5


def test_l_train_is_recorded_in_the_config_and_changes_the_decay():
    cfg = dnahnet.get_config("stripedhyena", "tiny", l_train=1024)
    assert cfg.hyena_spec.l_train == 1024
    model = dnahnet.build_model("stripedhyena", "tiny", l_train=1024)
    mr = next(op for op in model.hyena_operators() if op.kind == "MR")
    rates = torch.logspace(-2, 2, mr.filter.n_groups, dtype=torch.float64)
    expected = torch.exp(-rates[:, None] * torch.arange(128, dtype=torch.float64) / 1023)
    assert torch.allclose(mr.filter.decay.double(), expected, rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------------------------------------------- inits
def test_initial_filter_residue_and_d_statistics_follow_savanna():
    """Savanna's values: featurizer and SE taps U(+-1/sqrt(3)) (std 1/3), MR taps N(0, 1/L) * 1e-5,
    LI residues 0.1 N(0, 1/16), p = -1, exp(gamma) ~ U[0.01, 0.1], D = 0 (Vortex)."""
    torch.manual_seed(0)
    d, L = 512, 8192
    spec = HyenaSpec(group_size=4, l_train=L)  # 128 groups: enough taps for a 10% std estimate
    se, mr, li = (HyenaOperator(d, kind, spec) for kind in ("SE", "MR", "LI"))
    bound = 1 / math.sqrt(3)
    for op in (se, mr, li):
        w = op.featurizer.weight
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
        assert_std(w, bound / math.sqrt(3), f"{op.kind} featurizer")
    assert se.filter.h.abs().max() <= bound
    assert_std(se.filter.h, bound / math.sqrt(3), "SE taps")
    assert se.filter.D is None
    assert_std(mr.filter.h, 1e-5 / math.sqrt(L), "MR taps")
    assert_std(li.filter.R, 0.1 / math.sqrt(16), "LI residues")
    assert torch.equal(li.filter.p, torch.full_like(li.filter.p, -1.0))
    rate = li.filter.gamma.detach().exp()
    assert rate.min() >= 0.01 - 1e-7 and rate.max() <= 0.1 + 1e-7
    assert abs(rate.std().item() / (0.09 / math.sqrt(12)) - 1) < 0.1  # uniform on [0.01, 0.1]
    for op in (mr, li):
        assert torch.equal(op.filter.D, torch.zeros(d))
        assert torch.equal(op.out_proj.bias, torch.zeros(d))


def test_initial_projection_statistics_follow_savanna():
    """small_init sqrt(2/(5d)) on the embedding and every input projection, wang_init 2/(n sqrt(d)) on
    every output projection, zero biases."""
    torch.manual_seed(0)
    d, n = 128, 7
    model = dnahnet.build_model("stripedhyena", "tiny", d_model=d, n_layers=n)
    small, wang = math.sqrt(2 / (5 * d)), 2 / (n * math.sqrt(d))
    assert_std(model.embedding.weight, small, "embedding")
    for i, block in enumerate(model.backbone.blocks):
        mixer = block.mixer
        proj_in = mixer.Wqkv if isinstance(mixer, Attention) else mixer.in_proj
        assert_std(proj_in.weight, small, f"layer {i} input projection")
        assert_std(block.mlp.fc1.weight, small, f"layer {i} MLP fc1")
        assert_std(mixer.out_proj.weight, wang, f"layer {i} output projection")
        assert_std(block.mlp.fc2.weight, wang, f"layer {i} MLP fc2")
        assert torch.equal(mixer.out_proj.bias, torch.zeros(d))
    for norm in (m for m in model.modules() if isinstance(m, RMSNorm)):
        assert torch.equal(norm.weight, torch.ones(d))


# ---------------------------------------------------------------------------------------------- block
def test_evo2_block_details():
    """Norm eps 1e-6, tied embeddings, QKV without bias and output projection with one, GELU gate in
    layer 0 and identity gates after, each checked against the formula in float64."""
    torch.manual_seed(0)
    model = dnahnet.build_model("stripedhyena", "tiny").double().eval()
    norms = [m for m in model.modules() if isinstance(m, RMSNorm)]
    assert len(norms) == 2 * 7 + 1 and all(m.eps == 1e-6 for m in norms)
    attn = model.backbone.blocks[3].mixer
    assert isinstance(attn, Attention) and attn.Wqkv.bias is None and attn.out_proj.bias is not None
    assert attn.rotary.rotary_dim == attn.head_dim  # rotary on the full head dim
    assert [b.mlp.activation for b in model.backbone.blocks] == ["gelu"] + ["identity"] * 6
    x = torch.randn(3, 5, 64, dtype=torch.float64)
    for block in model.backbone.blocks[:2]:
        a, b = (x @ block.mlp.fc1.weight.T).chunk(2, dim=-1)
        gate = 0.5 * a * (1 + torch.erf(a / math.sqrt(2))) if block.mlp.activation == "gelu" else a
        assert torch.allclose(block.mlp(x), (gate * b) @ block.mlp.fc2.weight.T, atol=1e-12)
    ids = torch.randint(0, 4, (2, 16))
    with torch.no_grad():
        h = model.backbone(model.embedding(ids))
        assert torch.allclose(model(ids).logits, h @ model.embedding.weight.T, atol=1e-12)
    assert model.lm_head.weight is model.embedding.weight
    untied = dnahnet.build_model("stripedhyena", "tiny", tie_embeddings=False, evo2_style_activations=False)
    assert untied.lm_head.weight is not untied.embedding.weight
    assert {b.mlp.activation for b in untied.backbone.blocks} == {"gelu"}


def test_param_counts_with_tied_embeddings():
    model = dnahnet.build_model("stripedhyena", "tiny")
    unique = {id(p): p.numel() for _, p in model.named_parameters(remove_duplicate=False)}
    counts = model.param_counts()
    assert counts.total == sum(unique.values())
    body = sum(p.numel() for n, p in model.named_parameters() if n != "embedding.weight")
    assert counts.non_embedding == body == counts.total - 8 * 64
    untied = dnahnet.build_model("stripedhyena", "tiny", tie_embeddings=False).param_counts()
    assert untied.total == counts.total + 8 * 64 and untied.non_embedding == counts.non_embedding


def test_weight_decay_follows_savanna_grouping():
    """No decay on norm scales, biases and MR taps; decay on everything else (embedding, featurizer,
    SE taps, D, LI residues and poles)."""
    model = dnahnet.build_model("stripedhyena", "tiny")
    decayed = model.weight_decay_names()
    names = dict(model.named_parameters())
    exempt = set(names) - decayed
    mr_taps = {f"backbone.blocks.{i}.mixer.filter.h" for i, letter in enumerate(model.config.layer_letters) if letter == "M"}
    assert exempt == {n for n in names if n.endswith("bias") or "norm" in n} | mr_taps
    assert "embedding.weight" in decayed and "backbone.blocks.1.mixer.filter.h" not in decayed
    for leaf in ("filter.R", "filter.p", "filter.gamma", "filter.D"):
        assert f"backbone.blocks.2.mixer.{leaf}" in decayed
    assert "backbone.blocks.0.mixer.filter.h" in decayed and "backbone.blocks.0.mixer.featurizer.weight" in decayed
    assert "backbone.blocks.3.mixer.out_proj.bias" in exempt and "backbone.norm_f.weight" in exempt


# ---------------------------------------------------------------------------------------------- shared layers
def test_shared_layer_defaults_are_unchanged():
    """The options added for StripedHyena 2 default to what Transformer++ and dnaHNet use: RMSNorm eps
    1e-5, SwiGLU (silu gate, bitwise the old formula), no attention biases."""
    torch.manual_seed(0)
    mlp = SwiGLU(16, 32)
    x = torch.randn(4, 16)
    a, b = mlp.fc1(x).chunk(2, dim=-1)
    assert torch.equal(mlp(x), mlp.fc2(F.silu(a) * b))
    block = Block(Attention(16, 2), 16, 32)
    assert block.norm1.eps == block.norm2.eps == 1e-5 and block.mlp.activation == "silu"
    assert block.mixer.out_proj.bias is None and block.mixer.Wqkv.bias is None
    for family, preset in (("transformer", "tiny"), ("dnahnet", "tiny")):
        with torch.device("meta"):
            model = dnahnet.build_model(family, preset)
        assert {m.eps for m in model.modules() if isinstance(m, RMSNorm)} == {1e-5}
        assert {m.activation for m in model.modules() if isinstance(m, SwiGLU)} <= {"silu"}
        assert all(m.out_proj.bias is None for m in model.modules() if isinstance(m, Attention))
    with pytest.raises(ValueError, match="unknown MLP activation 'relu6'"):
        SwiGLU(8, 8, activation="relu6")
    with pytest.raises(ValueError, match="StripedHyenaConfig.mlp_activation='tanh'"):
        dnahnet.build_model("stripedhyena", "tiny", mlp_activation="tanh")
