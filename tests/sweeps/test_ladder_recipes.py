"""One architecture per ladder: within a budget only width and depth change (issue: fidelity, point 5),
the ladders bracket their budgets, and StripedHyena 2's MR decay length follows the sweep's context."""

from __future__ import annotations

import copy

import pytest
import torch

from sweeps import ladders as lad
from sweeps.plan import plan_family
from tests.helpers.ladders import (  # every family and variant, failing (never skipping) on a broken one
    FAMILIES,
    variants,
)

# derived from the width by the recipe (SH2's group size: a fixed number of groups, width / groups channels each)
WIDTH_FIELDS = {"d_model", "n_heads", "d_intermediate", "filter_group_size"}
DEPTH_FIELDS = {"n_layers"}


def _recipe_signature(model: dict) -> dict:
    """The run's model overrides without its width and depth fields. dnaHNet's depth lives in its layout
    (the main network's block count), so the layout is compared with that count blanked out."""
    out = {k: v for k, v in model.items() if k not in WIDTH_FIELDS | DEPTH_FIELDS}
    if "layout" in out:
        layout = copy.deepcopy(out["layout"])
        inner = layout
        while isinstance(inner, list) and len(inner) == 3:
            inner = inner[1]
        assert isinstance(inner, list) and len(inner) == 1 and inner[0][0] in "Tt", layout
        inner[0] = inner[0][0] + "*"
        out["layout"] = layout
    return out


@pytest.mark.parametrize("ladder_name", list(lad.LADDERS))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_run_of_a_ladder_shares_one_architecture_recipe(family, ladder_name):
    ladder = lad.get_ladder(ladder_name)
    for variant in variants(family):
        specs = plan_family(family, variant, ladder)
        signatures = {repr(sorted(_recipe_signature(s.model).items())) for s in specs}
        assert len(signatures) == 1, (family, variant, ladder_name, signatures)
        for budget in ladder.budgets_for(family):
            runs = sorted((s for s in specs if s.budget == budget), key=lambda s: s.params)
            widths = [s.model["d_model"] if isinstance(s.model["d_model"], int) else s.model["d_model"][-1] for s in runs]
            assert widths == sorted(widths) and len(set(widths)) == len(widths), widths  # size grows with width


def _main_depth(layout) -> int:
    inner = layout
    while isinstance(inner, list) and len(inner) == 3:
        inner = inner[1]
    return int(inner[0][1:])


@pytest.mark.parametrize("ladder_name", list(lad.LADDERS))
def test_dnahnet_has_one_set_of_stage_proportions_and_one_main_depth_at_every_rung(ladder_name):
    """Stage widths exactly (w/2, 3w/4, w) at every rung (no rounding: rounding gave d8 (8, 8, 8) and d16
    (8, 16, 16), a different shape where the CPU optimum lies), and one main depth per ladder (the paper
    recipe's depth used to jitter between 11 and 15 from one width to the next)."""
    ladder = lad.get_ladder(ladder_name)
    for variant in variants("dnahnet"):
        specs = plan_family("dnahnet", variant, ladder)
        for s in specs:
            d = s.model["d_model"]
            assert 2 * d[0] == d[-1] and 4 * d[1] == 3 * d[-1], (s.run_id, d)
        assert len({_main_depth(s.model["layout"]) for s in specs}) == 1, [s.model["layout"] for s in specs]


@pytest.mark.parametrize("ladder_name", list(lad.LADDERS))
def test_stripedhyena_has_one_set_of_mr_decay_rates_at_every_rung(ladder_name):
    """The MR decay rates are log-spaced over the filter groups, so one set of rates at every rung means
    one number of groups; checked on the config and on the built MR filters' decay curves."""
    from baselines.hyena import ExplicitFilter
    from dnahnet.registry import get_config

    ladder = lad.get_ladder(ladder_name)
    specs = plan_family("stripedhyena", None, ladder)
    groups = {s.model["d_model"] // s.model["filter_group_size"] for s in specs}
    assert len(groups) == 1, groups
    curves = []
    for s in specs:
        cfg = get_config("stripedhyena", s.preset, None, **s.model)
        spec = cfg.hyena_spec
        mr = ExplicitFilter(cfg.d_model, spec.mr_length, spec.group_size, decay_range=spec.mr_decay_range,
                             decay_length=spec.l_train)
        curves.append(mr.decay)
    assert curves and all(torch.equal(c, curves[0]) for c in curves)


def test_mixed_recipes_are_detected():
    """The signature above is not vacuous: the old paper rule (tiny layout and Mamba-2 state 16 below
    width 512, the appendix layout and state 128 from 512) gives two signatures."""
    small = {"layout": ["m2", ["T1m1", ["T9"], "m1T1"], "m2"], "d_model": [192, 320, 384]}
    large = {"layout": ["m4", ["T1m4", ["T9"], "m4T1"], "m4"], "d_model": [256, 384, 512], "d_state": 128}
    assert _recipe_signature(small) != _recipe_signature(large)
    assert _recipe_signature(small) == _recipe_signature({**small, "layout": ["m2", ["T1m1", ["T3"], "m1T1"], "m2"]})


def test_cpu_ladder_budgets_span_8x_with_5_sizes_spanning_8x():
    ladder = lad.get_ladder("cpu")
    for family in FAMILIES:
        budgets = ladder.budgets_for(family)
        assert max(budgets) / min(budgets) >= 8
        for budget in budgets:
            sizes = lad.ladder_sizes(family, lad.get_rule(family).default_variant, budget, ladder)
            assert len(sizes) >= 5 and sizes[-1].stats.params / sizes[0].stats.params >= 8
    shared = set.intersection(*(set(ladder.budgets_for(f)) for f in FAMILIES))
    assert len(shared) >= 2  # the frontiers are compared at budgets every family ran


@pytest.mark.parametrize("ladder_name", ["cpu-smoke", "cpu"])
def test_stripedhyena_mr_decay_length_is_the_sweeps_context(ladder_name):
    ladder = lad.get_ladder(ladder_name)
    specs = plan_family("stripedhyena", None, ladder)
    assert specs and all(s.model["l_train"] == s.seq_len == ladder.seq_len for s in specs)
    specs = plan_family("stripedhyena", None, ladder, seq_len=96)
    assert all(s.model["l_train"] == 96 for s in specs)
