"""Model registry: family + preset (+ variant) + overrides -> config -> model.

Families register themselves when their module is imported; `_FAMILY_MODULES` says where each lives so
that `build_model("stripedhyena")` works without the caller importing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dnahnet import config as cfglib

_FAMILY_MODULES = {
    "transformer": "baselines.transformer",
    "dnahnet": "dnahnet.model",
    "stripedhyena": "baselines.striped_hyena",
}


@dataclass
class Family:
    name: str
    config_cls: type  # the family's config dataclass
    build: Callable[[Any], Any]  # config -> nn.Module
    presets: dict[str, Callable[[], Any]]  # preset name -> config factory
    variants: dict[str, dict]  # variant name -> config overrides (e.g. dnaHNet "3,2")
    context_field: str | None = None  # config field set to the run's context length (SH2: l_train; dnahnet.configure)


_FAMILIES: dict[str, Family] = {}


def register_family(name, config_cls, build, presets, variants=None, context_field=None) -> None:
    _FAMILIES[name] = Family(name, config_cls, build, dict(presets), dict(variants or {}), context_field)


def get_family(name: str) -> Family:
    if name not in _FAMILIES and name in _FAMILY_MODULES:
        importlib.import_module(_FAMILY_MODULES[name])
    if name not in _FAMILIES:
        known = sorted(set(_FAMILIES) | set(_FAMILY_MODULES))
        raise ValueError(f"unknown model family {name!r}; known families: {', '.join(known)}")
    return _FAMILIES[name]


def list_families() -> list[str]:
    return sorted(_FAMILY_MODULES)


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
