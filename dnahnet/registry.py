"""Model registry: family + preset (+ variant) + overrides -> config -> model.

A family is one module that registers itself when imported (`register_family`: its model, presets,
ladder recipe and search space; `dnahnet.family`). `FAMILY_MODULES` lists those modules, the one line to
add for a new family; they are imported on the first lookup (they import torch), so that
`build_model("stripedhyena")` works without the caller importing anything.
"""

from __future__ import annotations

import dataclasses
import importlib

from dnahnet import typed_config as cfglib
from dnahnet.family import Family, FamilySearch, SizeRule

FAMILY_MODULES = ("baselines.transformer", "dnahnet.model", "baselines.striped_hyena")

_FAMILIES: dict[str, Family] = {}


def register_family(name, config_cls, build, presets, variants=None, context_field=None,
                    size_rule: SizeRule | None = None, search: FamilySearch | None = None) -> None:
    """Register a family (called once, by the family's module); `size_rule` takes the family's name."""
    if size_rule is not None:
        size_rule = dataclasses.replace(size_rule, family=name)
    _FAMILIES[name] = Family(name, config_cls, build, dict(presets), dict(variants or {}), context_field,
                             size_rule, search)


def _import_family_modules() -> None:
    for module in FAMILY_MODULES:  # each registers its family; a module imported before is not run again
        importlib.import_module(module)


def get_family(name: str) -> Family:
    if name not in _FAMILIES:
        _import_family_modules()
    if name not in _FAMILIES:
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(list_families())}")
    return _FAMILIES[name]


def list_families() -> list[str]:
    _import_family_modules()
    return sorted(_FAMILIES)


def get_config(family: str, preset: str = "tiny", variant: str | None = None, **overrides):
    """The resolved config of a family at a preset, with a variant's and then explicit overrides."""
    fam = get_family(family)
    if preset not in fam.presets:
        raise ValueError(f"unknown preset {preset!r} for {family}; presets: {', '.join(fam.presets)}")
    cfg = fam.presets[preset]()
    if variant:
        if variant not in fam.variants:
            raise ValueError(
                f"unknown variant {variant!r} for {family}; variants: {', '.join(fam.variants) or '(none)'}"
            )
        cfg = cfglib.replace(cfg, **fam.variants[variant])
    return cfglib.replace(cfg, **overrides)


def build_model_from_config(family: str, cfg):
    return get_family(family).build(cfg)


def build_model(family: str, preset: str = "tiny", variant: str | None = None, **overrides):
    """Build a model: `build_model("transformer", preset="tiny", n_layers=4)`."""
    return build_model_from_config(family, get_config(family, preset, variant, **overrides))


def config_from_dict(family: str, data: dict):
    return cfglib.from_dict(get_family(family).config_cls, data)
