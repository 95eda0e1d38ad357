"""Budget ladders and size rules: every named ladder, every family that builds, every variant."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sweeps import ladders as lad
from sweeps.plan import Overrides, plan_family
from tests.helpers.ladders import FAMILIES, variants


def _fresh_stats(family: str, variant: str | None, model: dict, seq_len: int, preset: str) -> tuple[int, float]:
    """(parameters, training FLOPs per token) of a model built here from the run's own config, on the meta
    device: not through `stats_of` (its lru_cache would hand back the planner's own numbers). Parameters
    are counted from the module's tensors, not from `param_counts()`."""
    import torch

    from dnahnet.registry import build_model_from_config, get_config

    with torch.device("meta"):
        m = build_model_from_config(family, get_config(family, preset, variant, **model))
    return sum(p.numel() for p in m.parameters()), float(m.flops_per_token(seq_len).training)


@pytest.mark.parametrize("ladder_name", list(lad.LADDERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_named_ladders_hit_budgets_and_span(family, ladder_name):
    """Acceptance: planned FLOPs within 2% of the budget; each budget's ladder spans >= 5x in parameters."""
    ladder = lad.get_ladder(ladder_name)
    for variant in variants(family):
        specs = plan_family(family, variant, ladder)
        assert {s.budget for s in specs} == set(ladder.budgets_for(family)), "a budget lost all its runs"
        for budget in ladder.budgets_for(family):
            runs = [s for s in specs if s.budget == budget]
            assert len(runs) >= 3, (family, variant, budget, [s.run_id for s in runs])
            params = sorted(s.params for s in runs)
            assert params[-1] / params[0] >= 5.0, (family, variant, budget, params)
            assert len(set(params)) == len(params)  # distinct sizes
        for s in specs:
            # Independent recount: tokens from steps x batch x context, FLOPs from a fresh model build.
            assert s.tokens == s.steps * s.batch * s.seq_len
            params, flops_per_token = _fresh_stats(family, variant, s.model, s.seq_len, s.preset)
            assert params == s.params, s.run_id
            assert flops_per_token == s.flops_per_token, s.run_id
            assert abs(s.tokens * flops_per_token / s.budget - 1) <= 0.02, s.run_id
            assert s.steps >= ladder.min_steps and s.train["max_steps"] == s.steps
            assert 1 <= s.train["ckpt_every"] <= s.steps


def test_flops_per_token_matches_a_real_model():
    """stats_of builds on the meta device with init skipped: same numbers as a real CPU model."""
    from dnahnet.registry import build_model

    ov = lad.get_rule("transformer").shape(48, 3, "cpu")
    s = lad.stats_of("transformer", None, ov, 256)
    model = build_model("transformer", "tiny", **ov)
    assert s.params == sum(p.numel() for p in model.parameters())
    assert s.params_non_embedding == model.param_counts().non_embedding
    assert s.flops_per_token == model.flops_per_token(256).training
    # init was restored after the meta build
    assert model.lm_head.weight.std() > 0


def test_counting_skips_init_of_meta_tensors_only_and_patches_nothing():
    """The counting builds skip initialisation through a scoped function mode: torch.nn.init is never
    replaced, a real tensor is still initialised inside the mode, and nothing is skipped after it."""
    import threading

    import torch

    before = {name: getattr(torch.nn.init, name) for name in dir(torch.nn.init)}
    seen_in_other_thread = []
    with torch.device("meta"), lad._SkipInitOnMeta():
        meta = torch.empty(64, 64)
        assert torch.nn.init.normal_(meta) is meta and meta.uniform_() is meta
        real = torch.nn.init.normal_(torch.zeros(4096, device="cpu"))
        other = threading.Thread(target=lambda: seen_in_other_thread.append(torch.nn.init.normal_(torch.zeros(4096))))
        other.start()
        other.join()
        assert {name: getattr(torch.nn.init, name) for name in dir(torch.nn.init)} == before
    assert 0.9 < float(real.std()) < 1.1
    assert 0.9 < float(seen_in_other_thread[0].std()) < 1.1  # another thread is not affected
    assert float(torch.nn.init.normal_(torch.zeros(4096)).std()) > 0.9


def test_transformer_shapes_follow_the_rule():
    rule = lad.get_rule("transformer")
    assert rule.preferred_depth(512, None, "paper") == 8 and rule.preferred_depth(256, None, "paper") == 4
    ov = rule.shape(512, 8, "paper")
    assert ov["d_model"] % ov["n_heads"] == 0 and ov["d_model"] // ov["n_heads"] == 64
    assert rule.preferred_depth(8, None, "cpu") == rule.preferred_depth(256, None, "cpu") == 4  # fixed depth
    for arch in ("cpu", "paper"):  # one attention layer in SE-MR-LI-MHA
        assert lad.get_rule("stripedhyena").preferred_depth(256, None, arch) >= 4


def test_dnahnet_rule_keeps_main_network_near_70_percent():
    rule = lad.get_rule("dnahnet")
    for width in (256, 512, 1024):
        depth = rule.preferred_depth(width, None, "paper")
        full = lad.stats_of("dnahnet", None, rule.shape(width, depth, "paper"), 64).params_non_embedding
        one = lad.stats_of("dnahnet", None, rule.shape(width, 1, "paper"), 64).params_non_embedding
        two = lad.stats_of("dnahnet", None, rule.shape(width, 2, "paper"), 64).params_non_embedding
        share = depth * (two - one) / full
        assert 0.6 <= share <= 0.8, (width, depth, share)
        d = rule.shape(width, depth, "paper")["d_model"]
        assert d[0] <= d[1] <= d[2] == width


def test_center_moves_with_budget_and_ladder_spans_a_decade_for_paper():
    ladder = lad.get_ladder("paper")
    rule = lad.get_rule("transformer")
    centers = [lad.center_params(rule, None, b, ladder.seq_len, arch="paper") for b in ladder.budgets]
    assert len(centers) >= 2 and all(a < b for a, b in zip(centers[:-1], centers[1:], strict=True))
    sizes = lad.ladder_sizes("transformer", None, 2e19, ladder)
    assert len(sizes) == ladder.sizes
    ratio = sizes[-1].stats.params / sizes[0].stats.params
    assert 8 <= ratio <= 20  # "about a decade"
    # The expected optimum lies inside the ladder.
    assert sizes[0].stats.params < centers[2] < sizes[-1].stats.params


def test_rules_batch_and_lr():
    ladder = lad.get_ladder("paper")
    assert ladder.batch_windows(1e8) * ladder.seq_len == 2**19
    assert ladder.batch_windows(1e9) >= ladder.batch_windows(1e8) >= ladder.batch_windows(1e7)
    assert ladder.lr(1e7) > ladder.lr(1e8) > ladder.lr(1e9)
    assert math.isclose(ladder.lr(1e8), 1e-3)


def test_bad_ladders_and_budgets_are_refused():
    with pytest.raises(ValueError, match="unknown ladder"):
        lad.get_ladder("gpu-huge")
    with pytest.raises(ValueError, match="not a number"):
        lad.parse_budgets("1e13,abc")
    with pytest.raises(ValueError, match="positive"):
        lad.parse_budgets("-1e13")
    with pytest.raises(ValueError, match="span"):
        lad.custom_ladder([1e12], span=2.0)
    assert lad.parse_budgets("3e13, 1e13,1e13") == [1e13, 3e13]
    assert lad.custom_ladder([1e12]).seq_len == lad.LADDERS["cpu"].seq_len
    assert lad.custom_ladder([1e19]).seq_len == lad.LADDERS["paper"].seq_len


def test_plan_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant"):
        plan_family("transformer", "3,2", lad.get_ladder("cpu-smoke"), Overrides())


def test_the_cpu_ladders_learning_rates_pass_through_the_committed_learning_rate_sweeps_optima():
    """Each family's cpu-ladder rate rule is the size rule scaled to its learning-rate sweep's best rate
    (analysis/reference/cpu/lr_sweep.csv, the best row of each family), at the swept model's size; dnaHNet's
    stage multipliers are the sweep's winning set."""
    import pandas as pd

    sweep = pd.read_csv(Path(__file__).resolve().parents[2] / "analysis/reference/cpu/lr_sweep.csv",
                        keep_default_na=False)
    ladder = lad.get_ladder("cpu")
    assert set(sweep["family"]) == set(FAMILIES) == set(lad.CPU_LR_SWEEP)
    for family, rows in sweep.groupby("family"):
        assert rows["lr"].nunique() >= 3 and rows["budget"].nunique() == 1 and rows["size"].nunique() == 1
        best = rows.loc[rows["val_loss"].idxmin()]
        assert lad.CPU_LR_SWEEP[family] == (best["lr"], best["params_non_embedding"]), family
        assert math.isclose(ladder.lr(best["params_non_embedding"], family), best["lr"], rel_tol=1e-12)
        if family == "dnahnet":
            assert rows["lr_multipliers"].nunique() >= 2
            model_cfg = plan_family("dnahnet", "3,2", ladder)[0].run_config.model
            assert ",".join(f"{m:g}" for m in model_cfg.lr_multipliers) == best["lr_multipliers"]
