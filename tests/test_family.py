"""A family is one module: a fourth family, defined entirely in this test module (a model, its config and
presets, its ladder recipe and an extra search dimension) and registered with one call, is built by the
registry, planned along a sweep ladder and searched by the tuner, with no other file edited."""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
import pytest
import torch
from torch import nn

from dnahnet import flops as fl
from dnahnet import registry
from dnahnet.family import FamilySearch, Recipe, SearchDimension, SizeRule, fixed_depth, width_grid
from dnahnet.nn import LanguageModel, LMOutput
from dnahnet.tokenizer import VOCAB_SIZE
from sweeps import ladders as lad
from sweeps import optuna_study


# ------------------------------------------------------------------------------------ the toy family
@dataclass
class ToyConfig:
    d_model: int = 16  # residual width
    n_layers: int = 2  # position-wise tanh layers (no mixing across positions: a bigram-like model)
    logit_scale: float = 1.0  # logits are multiplied by this (the toy family's own tuned hyperparameter)
    vocab_size: int = VOCAB_SIZE  # nucleotide vocabulary incl. special tokens


class ToyLM(LanguageModel):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(nn.Linear(cfg.d_model, cfg.d_model) for _ in range(cfg.n_layers))
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> LMOutput:
        h = self.embedding(input_ids)  # (B, L, D)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))  # (B, L, D)
        return LMOutput(logits=self.config.logit_scale * self.lm_head(h))  # (B, L, V)

    def flops_per_token(self, seq_len: int) -> fl.FlopsPerToken:
        d, v = self.config.d_model, self.config.vocab_size
        return fl.FlopsPerToken.from_forward(2 * (self.config.n_layers * d * d + d * v))


def toy_shape(width: int, depth: int, recipe: Recipe) -> dict:
    return {"d_model": width, "n_layers": depth}


TOY_SIZE_RULE = SizeRule(
    shape_fn=toy_shape, min_depth=1, center_tokens_per_param=100.0,
    recipes={"cpu": Recipe(widths=width_grid(8, 256, 8), head_dim=8, mlp_multiple=8, depth=fixed_depth(2))},
)
TOY_SEARCH = FamilySearch(
    dimensions=(SearchDimension("toy_logit_scale", log=True, range=(0.5, 2.0)),),  # no SearchSpace field: its own
    model_overrides=lambda values, cfg: {"logit_scale": values["toy_logit_scale"]},
)


@pytest.fixture
def toy_family(monkeypatch):
    """The toy family registered with its one call, in a registry restored afterwards."""
    registry.list_families()  # the real families first, so that restoring the table keeps them
    monkeypatch.setattr(registry, "_FAMILIES", dict(registry._FAMILIES))
    registry.register_family("toy", ToyConfig, ToyLM, {"tiny": ToyConfig}, size_rule=TOY_SIZE_RULE,
                             search=TOY_SEARCH)
    return "toy"


# ------------------------------------------------------------------------------------ tests
def test_the_real_families_are_listed_without_importing_them():
    assert registry.list_families() == ["dnahnet", "stripedhyena", "transformer"]
    with pytest.raises(ValueError, match="unknown model family 'gpt'; known families: dnahnet, stripedhyena, "
                                         "transformer"):
        registry.get_family("gpt")


def test_a_family_registered_in_one_call_is_listed_and_built(toy_family):
    assert registry.list_families() == ["dnahnet", "stripedhyena", "toy", "transformer"]
    family = registry.get_family("toy")
    assert family.size_rule.family == "toy" and family.search is TOY_SEARCH  # the call names the rule
    model = registry.build_model("toy", "tiny", d_model=24, n_layers=3)
    assert model.param_counts().non_embedding == 3 * (24 * 24 + 24)  # closed form: the tanh layers
    assert model(torch.zeros(2, 5, dtype=torch.long)).logits.shape == (2, 5, VOCAB_SIZE)


def test_a_family_registered_in_one_call_gets_a_ladder(toy_family):
    ladder = lad.get_ladder("cpu-smoke")
    assert lad.get_rule("toy") is registry.get_family("toy").size_rule
    for budget in ladder.budgets:
        sizes = lad.ladder_sizes("toy", None, budget, ladder)
        assert len(sizes) == ladder.sizes and len({s.name for s in sizes}) == ladder.sizes
        assert sizes[-1].stats.params / sizes[0].stats.params >= ladder.span
        for s in sizes:
            assert s.name == f"d{s.width}x2" and s.overrides == {"d_model": s.width, "n_layers": 2}
            d, v = s.width, VOCAB_SIZE
            assert s.stats.params == 2 * (d * d + d) + 2 * v * d  # layers, embedding and head, counted by hand
            assert math.isclose(s.stats.flops_per_token, 3 * 2 * (2 * d * d + d * v))


def test_a_family_registered_in_one_call_is_tuned_over_its_own_dimension(toy_family):
    base = registry.get_config("toy")
    study = optuna.create_study(sampler=optuna_study.TrialSeededTPESampler(seed=0))
    study.optimize(lambda t: optuna_study.suggest(t, optuna_study.SearchSpace(), "toy", base)["lr"], n_trials=3)
    for trial in study.trials:
        assert set(trial.params) == {"lr", "warmup_fraction", "weight_decay", "batch_size", "toy_logit_scale"}
        assert 0.5 <= trial.params["toy_logit_scale"] <= 2.0
        assert trial.distributions["toy_logit_scale"] == optuna.distributions.FloatDistribution(0.5, 2.0, log=True)
        overrides = optuna_study.overrides_from_params(trial.params, "toy", base)
        assert overrides["model"] == {"logit_scale": trial.params["toy_logit_scale"]}
        model = registry.build_model("toy", "tiny", **overrides["model"])
        assert model.config.logit_scale == trial.params["toy_logit_scale"]
