"""The shared training loop: optimiser groups, learning-rate multipliers, objective."""

import math

import torch

import dnahnet
from dnahnet import config as cfglib
from dnahnet.lit import LitLM, TrainConfig, param_groups


def test_no_weight_decay_on_norms_biases_embeddings():
    model = dnahnet.build_model("transformer", "tiny")
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "embedding.weight" in plain
    assert any("norm" in n for n in plain) and not any("norm" in n for n in decayed)
    assert "lm_head.weight" in decayed and any("Wqkv" in n for n in decayed)
    assert decayed | plain == {n for n, _ in model.named_parameters()}


def test_lr_multipliers_become_groups(monkeypatch):
    model = dnahnet.build_model("transformer", "tiny")
    monkeypatch.setattr(model, "lr_multipliers", lambda: {"lm_head.weight": 2.0, "embedding.weight": 2.0})
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["lm_head.weight"]["lr"] == 2e-3 and by_name["embedding.weight"]["lr"] == 2e-3
    assert by_name["backbone.norm_f.weight"]["lr"] == 1e-3


def test_objective_is_cross_entropy_plus_aux_and_counts_tokens():
    torch.manual_seed(0)
    model_cfg = cfglib.to_dict(dnahnet.get_config("transformer", "tiny"))
    lit = LitLM("transformer", model_cfg, cfglib.to_dict(TrainConfig()), seq_len=16)
    ids = torch.randint(0, 4, (2, 17))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:].clone()}
    batch["labels"][0, :4] = -100  # ignored positions
    nll_sum, nll, n, _ = lit._loss(batch)
    logp = lit.model(batch["input_ids"]).logits.log_softmax(-1)
    mask = batch["labels"] != -100
    ref = -logp.gather(-1, batch["labels"].clamp_min(0)[..., None])[..., 0][mask].sum()
    assert n == 28 and torch.allclose(nll_sum, ref, rtol=1e-5)
    assert math.isclose(float(nll), float(ref) / 28, rel_tol=1e-5)
