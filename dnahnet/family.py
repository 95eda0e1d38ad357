"""What a model family is: its model, its presets, how it grows along a ladder, what the tuner searches.

A family lives in one module, which describes itself here and calls `dnahnet.registry.register_family`
once; the registry's `FAMILY_MODULES` lists those modules. The sweeps read a family's ladder recipe
(`SizeRule`) and its extra search dimensions (`FamilySearch`) from the registry, so adding a family touches
its own module and that one list, never the sweep code.

This module imports no torch (the registry and `sweeps` read it without building a model); the shared
helpers the size rules of several families use live here too (`width_grid`, `fixed_depth`,
`aspect_depth`, `plain_shape`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


# ------------------------------------------------------------------------------------ ladder recipes
@dataclass(frozen=True)
class Recipe:
    """One family's architecture recipe: what stays fixed while width and depth vary."""

    widths: tuple[int, ...]  # the width grid (every entry divisible by `head_dim`)
    head_dim: int | None  # attention head dim (n_heads = width / head_dim); None when `heads` is fixed
    mlp_multiple: int  # SwiGLU hidden width rounded up to this
    depth: Callable[[int, str | None], int]  # (width, variant) -> the depth the recipe prefers
    extra: dict = field(default_factory=dict)  # other fixed config fields (dnaHNet: Mamba-2 settings)
    heads: int | None = None  # a fixed number of attention heads at every width (head dim = width / heads)


@dataclass(frozen=True)
class SizeRule:
    """How one family grows: (width, depth) -> model-config overrides of `preset`, under a recipe (one per
    architecture recipe of a ladder, `sweeps.ladders.Ladder.arch`)."""

    shape_fn: Callable[[int, int, Recipe], dict]  # (width, depth, recipe) -> config overrides
    recipes: dict[str, Recipe]  # arch name -> recipe
    family: str = ""  # the family's name (`register_family` fills it in)
    min_depth: int = 2  # shallowest model the rule builds
    preset: str = "tiny"  # base preset the overrides apply to
    default_variant: str | None = None  # the variant a sweep uses when none is asked for
    center_tokens_per_param: float = 300.0  # expected compute-optimal tokens / parameters (ladder centre)
    note: str = ""  # one line on the recipes, shown by the planner

    def recipe(self, arch: str) -> Recipe:
        if arch not in self.recipes:
            raise ValueError(f"{self.family}: no architecture recipe {arch!r}; recipes: {', '.join(self.recipes)}")
        return self.recipes[arch]

    def widths(self, arch: str) -> tuple[int, ...]:
        return self.recipe(arch).widths

    def shape(self, width: int, depth: int, arch: str) -> dict:
        return self.shape_fn(width, depth, self.recipe(arch))

    def preferred_depth(self, width: int, variant: str | None, arch: str) -> int:
        return self.recipe(arch).depth(width, variant)

    def size_name(self, width: int, depth: int) -> str:
        return f"d{width}x{depth}"


def width_grid(lo: int, hi: int, multiple: int = 16) -> tuple[int, ...]:
    """Widths from lo to hi, ~10-15% apart (a step of ~1/8 of the width), each a multiple of `multiple`."""
    out, w = [], lo
    while w <= hi:
        out.append(w)
        w += max(multiple, (w // 8) // multiple * multiple)
    return tuple(out)


def fixed_depth(depth: int) -> Callable[[int, str | None], int]:
    """A recipe depth: the same at every width."""
    return lambda width, variant=None: depth


def aspect_depth(aspect: float, min_depth: int) -> Callable[[int, str | None], int]:
    """A recipe depth: width / aspect, rounded, at least `min_depth`."""
    return lambda width, variant=None: max(min_depth, int(round(width / aspect)))


def plain_shape(width: int, depth: int, recipe: Recipe) -> dict:
    """Transformer++ and StripedHyena 2: width, depth, heads of the recipe's head dim, SwiGLU rounding.
    A recipe's `filter_groups` (StripedHyena 2) fixes the number of SE/MR filter groups at every width, so
    every rung has the same set of MR decay rates (they are log-spaced over the groups)."""
    extra = dict(recipe.extra)
    groups = extra.pop("filter_groups", None)
    if groups is not None:
        if width % groups:
            raise ValueError(f"width {width} is not a multiple of the recipe's {groups} filter groups")
        extra["filter_group_size"] = width // groups
    heads = recipe.heads or max(1, width // recipe.head_dim)
    return {"d_model": width, "n_layers": depth, "n_heads": heads, "mlp_multiple": recipe.mlp_multiple, **extra}


# ------------------------------------------------------------------------------------ search space
@dataclass(frozen=True)
class SearchDimension:
    """One hyperparameter the tuner (`sweeps.optuna_study`) searches for this family only, besides the ones every
    family shares (peak lr, warmup, weight decay, batch size). Drawn with `trial.suggest_float`."""

    name: str  # the trial parameter, as study databases store it (renaming it orphans stored studies)
    log: bool = False  # drawn log-uniformly, else uniformly
    # (low, high); a field of the tuner's `SearchSpace` with the same name (a command-line range) replaces it
    # and is required where this is None
    range: tuple[float, float] | None = None
    searched: Callable[[Any], bool] | None = None  # model config -> whether that model has it (None: always)


@dataclass(frozen=True)
class FamilySearch:
    """A family's own search dimensions and what a trial's values of them set in the model config."""

    # drawn in this order after the shared ones: a seeded study's draws depend on the order of the calls
    dimensions: tuple[SearchDimension, ...]
    # (the trial's values of the dimensions it drew, by name; the model config before them) -> model overrides
    model_overrides: Callable[[dict[str, float], Any], dict[str, Any]]


# ------------------------------------------------------------------------------------ the family
@dataclass
class Family:
    """A model family as the registry holds it."""

    name: str  # the family's name ("dnahnet"), as runs, sweeps and checkpoints record it
    config_cls: type  # the family's config dataclass
    build: Callable[[Any], Any]  # config -> nn.Module
    presets: dict[str, Callable[[], Any]]  # preset name -> config factory
    variants: dict[str, dict]  # variant name -> config overrides (e.g. dnaHNet "3,2")
    context_field: str | None = None  # config field set to the run's context length (SH2: l_train; dnahnet.run_config)
    size_rule: SizeRule | None = None  # how it grows along a sweep's ladder (None: it has no ladder)
    search: FamilySearch | None = None  # the tuner's extra dimensions for it (None: the shared ones only)
