"""The one configuration path: overrides -> a run's typed configs, and a FLOP budget -> optimizer steps.

Every entry point resolves a run here: `python -m dnahnet.train` (its `section.KEY=VALUE` arguments and
`--config`), the isoFLOP planner (`sweeps/plan.py`: `--set`, `--overrides FILE.yaml`) and the Optuna tuner
(`sweeps/optuna_study.py`: fixed settings and each trial's values). Torch-free: planning, checking and
comparing runs does not import the training stack.

- `parse_overrides(["train.lr=1e-3", ...])` and `read_override_file(path)` -> `Overrides` (by section,
  remembering where each key came from, so that an error can name it);
- `resolve(family, preset, variant, overrides)` (or `resolve_file(config.yaml, overrides)`) -> `RunConfig`:
  the family's model config (preset, then variant, then overrides), `TrainConfig`, `DataConfig`, with the
  family's context-bound field (StripedHyena 2's `l_train`) set to `data.seq_len` unless it was given;
- `config_differences(old, new)`: the one identity rule of runs, sweeps and studies (`RunConfig.identity`);
- `steps_for_budget(budget, flops_per_token, batch, seq_len)` -> `BudgetSteps`: the rule that turns a
  training-FLOP budget into steps x batch, within `TOLERANCE` of the budget.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dnahnet import typed_config as cfglib
from dnahnet.data.config import DataConfig, data_key
from dnahnet.registry import get_config, get_family
from dnahnet.train_config import TrainConfig

log = logging.getLogger(__name__)

SECTIONS = ("train", "model", "data")  # the sections of a run's configuration
TOLERANCE = 0.02  # planned FLOPs (steps x batch x seq_len x FLOPs per token) within 2% of the budget
SOFT_TOLERANCE = 0.01  # rounding the steps beyond this moves the batch (within 0.75x-1.33x)


# ------------------------------------------------------------------------------------ overrides
@dataclass
class Overrides:
    """User overrides by section (values as given: strings from a command line, YAML values from a file);
    `source` names where each key came from ("train.lr" -> "--set", "best.yaml", ...) for error messages."""

    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields (dnahnet/lit.py)
    model: dict[str, Any] = field(default_factory=dict)  # the family's config fields
    data: dict[str, Any] = field(default_factory=dict)  # DataConfig fields (dnahnet/data/module.py)
    source: dict[str, str] = field(default_factory=dict)  # "section.key" -> where it was set

    def update(self, section: str, key: str, value: Any, source: str) -> None:
        """Set one key (a later setting of the same key wins)."""
        if section not in SECTIONS:
            raise ValueError(f"{source}: unknown section {section!r} in {section}.{key} (expected one of "
                             f"{', '.join(SECTIONS)}: section.KEY=VALUE, e.g. train.lr=1e-3)")
        getattr(self, section)[key] = value
        self.source[f"{section}.{key}"] = source

    def where(self, section: str, key: str) -> str:
        """Where `section.key` was set (the section's name when not recorded)."""
        return self.source.get(f"{section}.{key}", section)


def parse_overrides(items: list[str] | None, source: str = "override", into: Overrides | None = None) -> Overrides:
    """`section.KEY=VALUE` items (e.g. train.lr=1e-3, model.n_layers=4, data.seq_len=512) -> Overrides,
    added to `into` when given. Values stay strings: `resolve` coerces them to the fields' types."""
    out = into if into is not None else Overrides()
    try:
        assignments = cfglib.parse_assignments(items)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc} (write section.KEY=VALUE, e.g. train.lr=1e-3)") from None
    for key, value in assignments.items():
        section, _, name = key.partition(".")
        if not name:
            raise ValueError(f"{source} {key}={value}: write section.KEY=VALUE with a section of "
                             f"{', '.join(SECTIONS)}, e.g. train.lr=1e-3")
        out.update(section, name, value, source)
    return out


# A bare `section.KEY=VALUE` token on a command line: the same as `--set section.KEY=VALUE`, in any position
# (a name with `=` but no section, `max_steps=2`, is taken too: `parse_overrides` says what it lacks).
_BARE_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")
OVERRIDE_HELP = ("a setting, e.g. --set train.lr=1e-3 --set data.seq_len=512 (repeatable); the --set may be left "
                 "out: a bare SECTION.KEY=VALUE anywhere on the command line is the same (sections: train, model, data)")


def is_bare_override(token: str) -> bool:
    """Whether a command-line token is a bare `SECTION.KEY=VALUE` setting (see `parse_args_with_overrides`)."""
    return bool(_BARE_OVERRIDE.match(token))


def add_override_argument(parser, dest: str = "overrides", help: str = OVERRIDE_HELP) -> None:
    """`--set SECTION.KEY=VALUE` (repeatable) into `dest`; with `parse_args_with_overrides`, bare
    `SECTION.KEY=VALUE` tokens anywhere on the line join it. The one override grammar of every command
    (`python -m dnahnet.train`, `sweeps/isoflop.py`, `sweeps/tune.py`)."""
    parser.add_argument("--set", dest=dest, action="append", default=[], metavar="SECTION.KEY=VALUE", help=help)


def parse_args_with_overrides(parser, argv: list[str] | None = None, dest: str = "overrides"):
    """`parser.parse_args(argv)`, with the bare `SECTION.KEY=VALUE` tokens of any position appended to `dest`
    (after the `--set` ones: a later setting of a key wins). Anything else unrecognised is argparse's usage error
    (exit 2)."""
    args, rest = parser.parse_known_args(argv)
    rest = [token for token in rest if token != "--"]
    unknown = [token for token in rest if not is_bare_override(token)]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    setattr(args, dest, [*(getattr(args, dest, None) or []), *rest])
    return args


def read_override_file(path: str | os.PathLike, flag: str = "--overrides", into: Overrides | None = None) -> Overrides:
    """Overrides from a YAML file with sections train:, model:, data: (each a mapping of KEY: VALUE)."""
    out = into if into is not None else Overrides()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{flag} {path}: no such file")
    try:
        body = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{flag} {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    body = body or {}
    if not isinstance(body, dict):
        raise ValueError(f"{flag} {path}: expected a mapping with train:, model: or data:, got {type(body).__name__}")
    for section, values in body.items():
        if section not in SECTIONS:
            raise ValueError(f"{flag} {path}: unknown section {section!r} (expected {', '.join(SECTIONS)})")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ValueError(f"{flag} {path}: section {section!r} must be a mapping of KEY: VALUE")
        for key, value in values.items():
            out.update(section, str(key), value, str(path))
    return out


# ------------------------------------------------------------------------------------ the run's configuration
@dataclass
class RunConfig:
    """One run's resolved configuration: what every entry point resolves (`resolve`, `resolve_file`), what
    `dnahnet.train.train_run` trains, what `dnahnet.lit.LitLM` holds and what a sweep's `RunSpec` carries.

    Its context is `data.seq_len` (`seq_len`); the family's context-bound model field (StripedHyena 2's
    `l_train`) is resolved from it. `to_dict()` is the run directory's config.yaml; `identity()` is what
    makes the run what it is (`config_differences`: one rule for single runs, sweeps and the tuner)."""

    family: str
    preset: str
    variant: str | None
    model: Any  # the family's config dataclass
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)

    @property
    def seq_len(self) -> int:
        """The run's context in nucleotides (windows hold seq_len + 1)."""
        return self.data.seq_len

    @property
    def global_batch(self) -> int:
        """Windows per optimizer step: data.batch_size x train.devices x train.num_nodes x
        train.accumulate_grad_batches (the fields marked `GLOBAL_BATCH`)."""
        return global_batch(self._settings())

    def _settings(self) -> dict:
        return {"family": self.family, "preset": self.preset, "variant": self.variant,
                "model": cfglib.to_dict(self.model), "train": cfglib.to_dict(self.train),
                "data": cfglib.to_dict(self.data)}

    def to_dict(self) -> dict:
        """The resolved config.yaml: the settings, and `data_key`, the identity of the genomes read
        (`dnahnet.data.data_key`: a rerun on other genomes is another run)."""
        return {**self._settings(), "data_key": data_key(self.data)}

    @classmethod
    def from_dict(cls, resolved: dict, overrides: Overrides | None = None) -> RunConfig:
        """A resolved config (`to_dict`, a config.yaml), with `overrides` on top; `data_key` is not a setting
        (it is read from the genomes) and is ignored."""
        ov = overrides or Overrides()
        family = resolved["family"]
        model = cfglib.replace(cfglib.from_dict(get_family(family).config_cls, resolved.get("model") or {}), **ov.model)
        train = cfglib.replace(cfglib.from_dict(TrainConfig, resolved.get("train") or {}), **ov.train)
        data = cfglib.replace(cfglib.from_dict(DataConfig, resolved.get("data") or {}), **ov.data)
        return _finish(family, resolved.get("preset", "custom"), resolved.get("variant"), model, train, data, ov)

    def identity(self) -> dict[str, Any]:
        """What the run computes, as flat entries: the family and variant, every config field not marked
        neutral ("section.key"), the global batch and the genomes' `data_key` (`identity_of`)."""
        return identity_of(self.to_dict())

    def differences(self, other: RunConfig | dict) -> list[str]:
        """'key: ours -> theirs' for every identity entry `other` (a RunConfig, or its `to_dict`) changes. (A
        config.yaml written by older code is compared as the old side: `config_differences(old, run.to_dict())`,
        as `dnahnet.rundir.check_same_run` does.)"""
        return config_differences(self.to_dict(), other.to_dict() if isinstance(other, RunConfig) else other)


def context_overrides(family: str, seq_len: int, model_overrides: dict) -> dict:
    """{field: seq_len} for the family's context-bound field (`Family.context_field`), unless the user set
    that field themselves. StripedHyena 2's MR decay is built over the training context (Savanna's Hyena-MR;
    docs/FIDELITY.md, "MR decay length L_train"), so a model trained at L must be configured for L; the
    resolved config records it."""
    bound = get_family(family).context_field
    if bound is None or bound in model_overrides:
        return {}
    return {bound: int(seq_len)}


def resolve(family: str, preset: str = "tiny", variant: str | None = None,
            overrides: Overrides | None = None) -> RunConfig:
    """The configs of a run: the family's preset, its variant, then `overrides`; TrainConfig and
    DataConfig defaults with theirs; the context-bound model field set to `data.seq_len`."""
    ov = overrides or Overrides()
    model = get_config(family, preset, variant, **ov.model)
    return _finish(family, preset, variant, model, cfglib.replace(TrainConfig(), **ov.train),
                   cfglib.replace(DataConfig(), **ov.data), ov)


def resolve_file(path: str | os.PathLike, overrides: Overrides | None = None, flag: str = "--config") -> RunConfig:
    """The configs of a resolved config.yaml (what every run directory holds), with `overrides` on top."""
    return RunConfig.from_dict(read_resolved_config(path, flag), overrides)


def _finish(family, preset, variant, model, train, data, ov: Overrides) -> RunConfig:
    model = cfglib.replace(model, **context_overrides(family, data.seq_len, ov.model))
    return RunConfig(family, preset, variant, model, train, data)


# ------------------------------------------------------------------------------------ run identity
# Every config field is part of a run's identity unless its dataclass field is marked otherwise
# (`dnahnet.typed_config.NEUTRAL`, `GLOBAL_BATCH`: TrainConfig, DataConfig, the families' model configs). One rule
# for `python -m dnahnet.train` reruns, sweeps (`sweeps/isoflop.py`, `sweeps.runner`) and the tuner's studies.
# The preset is a name: what it sets is compared field by field, so a sweep's sizes and a run resolved from
# its config.yaml (preset "custom") are the same run as the preset they came from.
# Keys added after runs were recorded: absent from an older config.yaml means this value (what those runs did).
_ADDED_DEFAULTS = {"train.accumulate_grad_batches": 1}
# A config.yaml written before `data_key` existed: its data paths stand for its genomes.
_LEGACY_DATA_KEYS = ("data.data_dir", "data.inputs")
SECTION_CLASSES = {"train": TrainConfig, "data": DataConfig}  # the model section's class is the family's


def _section_classes(family) -> dict:
    """The config dataclass of each section of a resolved config of `family` (model None: an unknown family)."""
    try:
        model = get_family(family).config_cls
    except (ValueError, TypeError):
        model = None
    return {"model": model, **SECTION_CLASSES}


def global_batch(cfg: dict, classes: dict | None = None) -> int:
    """Windows per optimizer step of a resolved config: the product of its `GLOBAL_BATCH` fields
    (data.batch_size x train.devices x train.num_nodes x train.accumulate_grad_batches)."""
    classes = classes or _section_classes(cfg.get("family"))
    product = 1
    for section, cls in classes.items():
        for f in dataclasses.fields(cls) if cls is not None else ():
            if f.metadata.get("identity", True) == "global batch":
                value = (cfg.get(section) or {}).get(f.name, _ADDED_DEFAULTS.get(f"{section}.{f.name}", f.default))
                product *= int(value or 1)
    return product


def identity_of(resolved: dict, legacy: bool | None = None) -> dict[str, Any]:
    """The identity entries of a resolved config (a config.yaml, `RunConfig.to_dict`): "family", "variant",
    "section.key" for every field not marked neutral (absent keys added since read as their `_ADDED_DEFAULTS`),
    "global batch" and "data_key". `legacy` (default: the config has no `data_key`): its data paths stand for
    its genomes."""
    legacy = "data_key" not in resolved if legacy is None else legacy
    classes = _section_classes(resolved.get("family"))
    out: dict[str, Any] = {"family": resolved.get("family"), "variant": resolved.get("variant")}
    for section in ("model", "train", "data"):
        values = resolved.get(section) or {}
        keys = set(values) | {k.partition(".")[2] for k in _ADDED_DEFAULTS if k.startswith(section + ".")}
        for k in sorted(keys):
            name = f"{section}.{k}"
            if cfglib.identity_rule(classes[section], k) is True or (legacy and name in _LEGACY_DATA_KEYS):
                value = values.get(k, _ADDED_DEFAULTS.get(name))
                out[name] = list(value) if isinstance(value, tuple) else value
    out["global batch"] = global_batch(resolved, classes)
    if not legacy:
        out["data_key"] = resolved.get("data_key")
    return out


def config_differences(old: dict, new: dict) -> list[str]:
    """'key: old -> new' for every identity entry (`identity_of`) two resolved configs disagree on. A config
    written before `data_key` existed (`old` without it) is compared by its data paths instead; a `data_key` of
    None (the genomes could not be read then, or now: the run fails on its own) is not compared."""
    legacy = "data_key" not in old
    a, b = identity_of(old, legacy), identity_of(new, legacy)
    diffs = []
    for key in [k for k in a if k in b] + [k for k in b if k not in a] + [k for k in a if k not in b]:
        if a.get(key) == b.get(key) or (key == "data_key" and None in (a[key], b[key])):
            continue
        if key == "global batch":
            diffs.append(f"global batch (data.batch_size x train.devices x train.num_nodes x "
                         f"train.accumulate_grad_batches): {a[key]} -> {b[key]}")
        elif key == "data_key":
            diffs.append(f"data_key: {a[key]!r} -> {b[key]!r} (other genomes under data.data_dir / data.inputs)")
        else:
            diffs.append(f"{key}: {_as_written(old, key)!r} -> {_as_written(new, key)!r}")
    return diffs


def _as_written(resolved: dict, key: str) -> Any:
    """The value of identity entry `key` ("family", "model.d_model") as the resolved config holds it."""
    section, _, name = key.partition(".")
    return (resolved.get(section) or {}).get(name) if name else resolved.get(key)


def read_resolved_config(path: str | os.PathLike, flag: str = "--config") -> dict:
    """A resolved config.yaml as a dict, with one-line errors for a directory, an empty file, not YAML."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {path}: is a directory, not a config.yaml")
    try:
        base = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ValueError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{flag} {path}: unreadable ({exc})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{flag} {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(base, dict):
        kind = "empty" if base is None else f"a YAML {type(base).__name__}, not a mapping"
        raise ValueError(f"{flag} {path}: {kind} (expected a resolved config.yaml with family, model, train, data)")
    if "family" not in base:
        raise ValueError(f"{flag} {path}: no 'family' entry (expected a resolved config.yaml)")
    for section in ("model", "train", "data"):
        if not isinstance(base.get(section) or {}, dict):
            raise ValueError(f"{flag} {path}: '{section}' must be a mapping")
    return base


def typed_overrides(family: str, preset: str, variant: str | None, overrides: Overrides,
                    skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Each override checked on its own against its section's config and coerced to the field's type
    (plain values: tuples become lists); a bad one raises an error naming where it was set. `skip`:
    "section.key" names that are not config fields (e.g. the planner's train.lr_scale)."""
    build = {
        "train": lambda kv: cfglib.replace(TrainConfig(), **kv),
        "model": lambda kv: get_config(family, preset, variant, **kv),
        "data": lambda kv: cfglib.replace(DataConfig(), **kv),
    }
    out: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        out[section] = {}
        for key, value in getattr(overrides, section).items():
            if f"{section}.{key}" in skip:
                continue
            try:
                out[section][key] = cfglib.to_dict(getattr(build[section]({key: value}), key))
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{overrides.where(section, key)}: {section}.{key}={value!r}: {exc}") from None
    return out


# ------------------------------------------------------------------------------------ budget -> steps
@dataclass(frozen=True)
class BudgetSteps:
    """How a run spends a training-FLOP budget."""

    steps: int  # optimizer steps (a multiple of `step_multiple`)
    batch: int  # global batch in windows (a multiple of the world size)
    error: float  # |steps x batch x seq_len x flops_per_token / budget - 1|


def steps_for_budget(budget: float, flops_per_token: float, batch: int, seq_len: int, world: int = 1,
                     step_multiple: int = 1, warn_on_move: bool = False) -> BudgetSteps:
    """Steps and global batch that spend `budget` training FLOPs at `flops_per_token`.

    steps = budget / (flops_per_token x batch x seq_len), rounded to a multiple of `step_multiple` (at
    least one). When rounding misses the budget by more than `SOFT_TOLERANCE`, the batch moves (within
    0.75x-1.33x, a multiple of `world`) to the one that lands closest (ties: the nearest to `batch`).
    Callers refuse a result whose `error` exceeds `TOLERANCE` (too few steps for any batch nearby)."""
    tokens = budget / flops_per_token
    target = tokens / step_multiple  # in units of `step_multiple` steps

    def spend(b: int) -> tuple[int, float]:
        units = max(1, int(round(target / (b * seq_len))))
        return units, abs(units * b * seq_len - target) / target

    units, error = spend(batch)
    if error <= SOFT_TOLERANCE:
        return BudgetSteps(units * step_multiple, batch, error)
    candidates = [b for b in range(max(world, int(batch * 0.75) // world * world), int(batch * 4 / 3) + 1, world)
                  if b >= world]
    best = min(candidates, key=lambda b: (spend(b)[1], abs(b - batch)))
    if warn_on_move and best != batch:
        log.warning("batch %d misses the budget by %.1f%%; using %d instead", batch, 100 * error, best)
    units, error = spend(best)
    return BudgetSteps(units * step_multiple, best, error)
