"""dnaHNet follows H-Net where the reference code is explicit: W_res has a bias, and AdamW decays every
parameter except biases and norms (goombalab/hnet: hnet/models/hnet.py, hnet/utils/train.py)."""

from __future__ import annotations

import math

import torch

import dnahnet
from dnahnet.lit import param_groups


def test_residual_projection_has_a_default_initialised_bias_and_a_zero_weight():
    model = dnahnet.build_model("dnahnet", "tiny", "3,2")
    projections = [st.residual for st in model.stages()[:-1]]
    assert len(projections) == 2
    for proj in projections:
        d = proj.weight.shape[0]
        assert proj.weight.dtype == proj.bias.dtype == torch.float32
        assert torch.count_nonzero(proj.weight) == 0
        bound = 1 / math.sqrt(d)  # nn.Linear's default bias init, U(-1/sqrt(d), 1/sqrt(d))
        assert proj.bias.abs().max() <= bound and proj.bias.std() > 0.4 * bound / math.sqrt(3)
        # the bias is applied: with a zero weight the projection returns the bias at every position
        h = torch.randn(2, 5, d)
        assert torch.allclose(proj(h), proj.bias.expand(2, 5, d))


def test_weight_decay_follows_hnet_all_but_biases_and_norms():
    model = dnahnet.build_model("dnahnet", "tiny", "3,2")
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    names = dict(model.named_parameters())
    for name in names:
        is_norm = any(part.startswith("norm") for part in name.split(".")[-2:-1]) or ".norm." in name
        expected = not name.endswith(".bias") and not is_norm
        assert (name in decayed) == expected, name
    # H-Net decays what the generic matrices-only rule exempts.
    for fragment in ("embedding.weight", "A_log", ".D", "dt_bias", ".pad"):
        assert any(fragment in n for n in decayed), fragment
    # dnaHNet's own parameters carry no `_no_weight_decay` marker its rule would ignore (the Mamba-2 mixers'
    # markers serve the generic rule of any other model that uses them).
    marked = {n for n, p in names.items() if getattr(p, "_no_weight_decay", False)}
    assert marked <= {n for n in names if n.rsplit(".", 1)[-1] in ("A_log", "D", "dt_bias")}, marked


def test_transformer_keeps_the_generic_rule():
    model = dnahnet.build_model("transformer", "tiny")
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    assert decayed == {n for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n}
