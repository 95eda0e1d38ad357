"""Typed dataclass configs: overrides, coercion from strings, conversion to and from plain dicts (YAML).

Writing them to disk is `dnahnet.fileio`'s job."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import yaml


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce `value` (often a string from a command line) to a field's annotated type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise ValueError(f"{where}: cannot interpret {value!r} as {annotation}")
    if origin in (tuple, list):
        if isinstance(value, str):
            value = yaml.safe_load(value if value.strip().startswith(("[", "(")) else f"[{value}]")
            if isinstance(value, str):
                value = [value]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, str):
            low = value.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{where}: expected a boolean, got {value!r}")
        return bool(value)
    if annotation in (int, float, str):
        if annotation is int and isinstance(value, str):
            try:
                number = float(value)  # accepts "1e6"
            except ValueError:
                raise ValueError(f"{where}: expected an integer, got {value!r}") from None
            if number != int(number):
                raise ValueError(f"{where}: expected an integer, got {value!r}")
            return int(number)
        if annotation is int and isinstance(value, float) and value != int(value):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, (dict, list, tuple, set)):  # str({'a': 1}) would be accepted as a name
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
        try:
            return annotation(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}") from None
    return value


def replace(cfg, **overrides):
    """dataclasses.replace with validation: unknown names and bad values raise errors naming them."""
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    clean = {}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(
                f"unknown field {key!r} for {type(cfg).__name__}; known fields: {', '.join(sorted(names))}"
            )
        clean[key] = _coerce(value, hints[key], f"{type(cfg).__name__}.{key}")
    try:
        return dataclasses.replace(cfg, **clean)
    except ArithmeticError as exc:  # a __post_init__ dividing by a zero it was given (filter_group_size=0)
        given = ", ".join(f"{k}={v!r}" for k, v in clean.items())
        raise ValueError(f"{type(cfg).__name__}: {given}: {exc} (a size that must be positive)") from None


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """["a=1", "b=x"] -> {"a": "1", "b": "x"}, with a clear error for a malformed item."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def to_dict(cfg) -> dict:
    """A plain, YAML-safe dict (tuples become lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


def from_dict(cls, data: dict):
    """Build a config dataclass from a dict (e.g. a resolved YAML), coercing and validating values."""
    return replace(cls(), **data)


# ------------------------------------------------------------------------------------ run identity
# Which config fields make a run what it is: a rerun into the same run (or sweep) directory must keep them,
# or it would resume, or report, a run computed with other settings. Every field is part of the identity
# unless its dataclass field says otherwise, with `field(default=..., metadata=NEUTRAL)` (or GLOBAL_BATCH).
# `dnahnet.run_config.config_differences` reads these rules for single runs, sweeps and the tuner.
NEUTRAL = {"identity": False}  # does not change what a run computes: logging, checkpoint cadence, kernels, caches
GLOBAL_BATCH = {"identity": "global batch"}  # a factor of the global batch: may change when their product does not


def identity_rule(cls, name: str) -> bool | str:
    """The identity rule of field `name` of config dataclass `cls`: True (part of the run's identity),
    False (neutral) or "global batch"; a field `cls` does not have (removed since, or `cls` is None) is True."""
    if cls is not None and dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            if f.name == name:
                return f.metadata.get("identity", True)
    return True
