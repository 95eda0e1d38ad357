"""Run planning: (family, variants, ladder, overrides) -> one `RunSpec` per (budget, size).

Per run (the dnaHNet paper's isoFLOP sweeps; docs/FIDELITY.md, "Run length (sweeps)"):
- tokens D = budget / training FLOPs per token of that model at the context length (exact count,
  `model.flops_per_token(seq_len).training`, the model built on the meta device);
- global batch (windows) and peak learning rate by the ladder's rules of model size;
- steps = D / (batch x seq_len), rounded by the budget rule (`dnahnet.run_config.steps_for_budget`): when
  rounding would miss the budget by more than 1%, the batch is moved (within 0.75x-1.33x) to the size
  that lands closest, so that planned FLOPs = steps x batch x seq_len x FLOPs per token are always within
  2% of the budget (an error otherwise);
- the learning-rate schedule spans the run's steps; checkpoints every `ckpt_fraction` of them.

Override file (`--overrides FILE.yaml`, also what `sweeps/tune.py` writes as best_overrides.yaml):

    train:                 # TrainConfig fields (dnahnet/lit.py), plus:
      lr_scale: 0.8        #   multiplies the ladder's learning-rate rule (every size)
      lr: 1.5e-3           #   or: one absolute peak learning rate for every size (replaces the rule)
      warmup_fraction: 0.05
    model:                 # the family's config fields, applied on top of each size's shape
      alpha: 0.015         #   e.g. dnaHNet's ratio-loss weight, per-stage lr_multipliers
    data:                  # DataConfig fields (dnahnet/data/module.py)
      batch_size: 16       #   per-device batch (windows): fixes the batch instead of the size rule

`--set section.KEY=VALUE` sets the same keys from the command line and wins over the file. Run length,
context and parallelism are the sweep's own (train.max_steps, data.seq_len, train.devices/num_nodes/
strategy are refused: use the budget, --seq-len, --devices/--num-nodes/--strategy).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from dnahnet import fileio, run_config
from dnahnet import typed_config as cfglib
from dnahnet.registry import get_config, get_family
from dnahnet.run_config import TOLERANCE, Overrides, RunConfig
from dnahnet.rundir import RunRefused
from dnahnet.train import check_configs
from sweeps.ladders import Ladder, ModelStats, get_rule, ladder_sizes, stats_of
from sweeps.memory import plan_micro_batch

log = logging.getLogger(__name__)

REFUSED = {
    "train.max_steps": "the run length follows from the budget",
    "train.devices": "use --devices",
    "train.num_nodes": "use --num-nodes",
    "train.strategy": "use --strategy",
    "data.seq_len": "use --seq-len",
}
EXTRA_TRAIN_KEYS = ("lr_scale",)  # planner-only keys of the train section


# ------------------------------------------------------------------------------------ overrides
def load_overrides(path: str | os.PathLike | None = None, assignments: list[str] | None = None) -> Overrides:
    """Overrides from a YAML file (sections train:, model:, data:) then `section.KEY=VALUE` assignments
    (`--set`, which win); keys the sweep sets itself (`REFUSED`) are refused, naming where they were set."""
    out = Overrides()
    if path:
        run_config.read_override_file(path, "--overrides", into=out)
    run_config.parse_overrides(assignments, "--set", into=out)
    for full, source in out.source.items():
        if full in REFUSED:
            raise ValueError(f"{source}: {full} cannot be overridden in a sweep: {REFUSED[full]}")
    return out


# ------------------------------------------------------------------------------------ run specs
@dataclass
class RunSpec:
    """Everything one run of a sweep needs; one row of plan.csv."""

    run_id: str  # stable: family, variant, budget, size
    family: str
    variant: str | None
    budget: float  # training FLOPs the run is planned for
    size: str  # the ladder size's name, e.g. "d64x2"
    seq_len: int
    params: int
    params_non_embedding: int
    flops_per_token: float  # training FLOPs per token (analytic, target ratios for dnaHNet)
    tokens: int  # steps x batch x seq_len
    flops: float  # tokens x flops_per_token (planned)
    steps: int
    batch: int  # global batch, windows
    batch_per_device: int
    lr: float  # peak learning rate
    tokens_per_param: float
    preset: str = "tiny"  # base preset the model overrides apply to
    model: dict = field(default_factory=dict)  # model-config overrides (size shape + user overrides)
    train: dict = field(default_factory=dict)  # TrainConfig values
    data: dict = field(default_factory=dict)  # DataConfig values
    ladder: str = ""
    seed: int = 0  # seed index: 0 for the ladder's runs, k for the k-th replica (run id "...-s<k>")

    @property
    def world_size(self) -> int:
        return int(self.train.get("devices", 1)) * int(self.train.get("num_nodes", 1))

    @functools.cached_property
    def run_config(self) -> RunConfig:
        """The run's configuration (what `dnahnet.train.train_run` trains and its config.yaml records): the
        preset with the plan's model, train and data settings, resolved once per spec."""
        sections = Overrides(model=dict(self.model), train=dict(self.train), data=dict(self.data))
        return run_config.resolve(self.family, self.preset, self.variant, sections)

    def row(self) -> dict:
        """A flat plan.csv row (overrides as JSON)."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("model", "train", "data")}
        d["variant"] = self.variant or ""
        d["flops_over_budget"] = self.flops / self.budget
        d["model_overrides"] = json.dumps(self.model, sort_keys=True)
        d["train_overrides"] = json.dumps(self.train, sort_keys=True)
        d["data_overrides"] = json.dumps(self.data, sort_keys=True)
        return d

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RunSpec:
        return cls(**data)


def with_seed_replicas(specs: list[RunSpec], seeds: int, budgets: list[float] | None = None) -> list[RunSpec]:
    """The plan plus `seeds - 1` replicas of every run (of the given budgets only, when given): replica k
    is the same run with the initialisation seed (train.seed) and the training-window stream (data.seed)
    moved by k; the validation windows (data.split_seed) stay the same, so replicas measure training noise
    on the very windows every run is scored on. Run ids get "-s<k>"."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if budgets is not None:
        have = {s.budget for s in specs}
        missing = [b for b in budgets if not any(math.isclose(b, h, rel_tol=1e-9) for h in have)]
        if missing:
            raise ValueError(f"--seed-budgets: {', '.join(budget_tag(b) for b in missing)} not among the plan's "
                             f"budgets ({', '.join(budget_tag(b) for b in sorted(have))})")
    out = list(specs)
    for spec in specs:
        if budgets is not None and not any(math.isclose(spec.budget, b, rel_tol=1e-9) for b in budgets):
            continue
        for k in range(1, seeds):
            train = {**spec.train, "seed": int(spec.train.get("seed", 0)) + k}
            data = {**spec.data, "seed": int(spec.data.get("seed", 0)) + k}
            out.append(dataclasses.replace(spec, run_id=f"{spec.run_id}-s{k}", train=train, data=data, seed=k))
    return out


def budget_tag(budget: float) -> str:
    """1e13 -> "1e13", 2.5e13 -> "2.5e13" (run ids and tables)."""
    text = f"{budget:.4g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}e{int(exponent)}"
    return text


def make_run_id(family: str, variant: str | None, budget: float, size: str) -> str:
    v = f"-v{variant.replace(',', '.')}" if variant else ""
    return f"{family}{v}-C{budget_tag(budget)}-{size}"


def _check_settings(family: str, preset: str, variant: str | None, user: dict, seq_len: int, parallel: dict) -> None:
    """The user's settings checked as `dnahnet.train` checks a run's, once, before any size is planned:
    model.d_model=0 would divide by zero in the planner, and --precision fp99 or data.n_val_windows=0 would
    plan a sweep whose every run is refused (ValueError naming the setting)."""
    sections = Overrides(model=dict(user["model"]), train={**user["train"], **parallel},
                         data={**user["data"], "seq_len": seq_len})
    try:
        check_configs(run_config.resolve(family, preset, variant, sections))
    except RunRefused as exc:
        raise ValueError(f"every planned run would be refused: {exc}") from None


def plan_family(
    family: str,
    variant: str | None,
    ladder: Ladder,
    overrides: Overrides | None = None,
    seq_len: int | None = None,
    data_dir: str | None = None,
    devices: int = 1,
    num_nodes: int = 1,
    strategy: str = "auto",
    accelerator: str = "auto",
    precision: str = "auto",
    device_memory_gb: float | None = None,
) -> list[RunSpec]:
    """Plan every run of one family/variant over the ladder's budgets. `device_memory_gb`: the per-device
    batch is split into micro-batches (gradient accumulation, activation checkpointing if needed) that fit
    this memory (sweeps/memory.py)."""
    overrides = overrides or Overrides()
    rule = get_rule(family)
    fam = get_family(family)
    if variant and variant not in fam.variants:
        raise ValueError(f"--variant {variant!r}: {family} has variants {', '.join(fam.variants) or '(none)'}")
    L = int(seq_len or ladder.seq_len)
    world = int(devices) * int(num_nodes)
    if world < 1:
        raise ValueError(f"--devices {devices} x --num-nodes {num_nodes} must be >= 1")

    # Validate user overrides once, naming their source; keep the coerced (typed) values.
    user = run_config.typed_overrides(family, rule.preset, variant, overrides,
                                     skip=tuple(f"train.{k}" for k in EXTRA_TRAIN_KEYS))
    try:
        lr_scale = float(overrides.train.get("lr_scale", 1.0))
    except (TypeError, ValueError):
        lr_scale = float("nan")
    if not lr_scale > 0:
        raise ValueError(f"{overrides.source.get('train.lr_scale')}: train.lr_scale must be > 0, got {lr_scale}")
    parallel = {"devices": int(devices), "num_nodes": int(num_nodes), "strategy": strategy,
                "accelerator": accelerator, "precision": precision}
    _check_settings(family, rule.preset, variant, user, L, parallel)

    specs: list[RunSpec] = []
    for budget in ladder.budgets_for(family):
        for size in ladder_sizes(family, variant, budget, ladder, L):
            # e.g. SH2's MR decay length: the sweep's context unless set
            model = {**size.overrides, **user["model"], **run_config.context_overrides(family, L, user["model"])}
            st = stats_of(family, variant, model, L, rule.preset) if user["model"] else size.stats
            run_id = make_run_id(family, variant, budget, size.name)
            spent = _spend_budget(budget, st, ladder, L, world, user["data"].get("batch_size"))
            if spent.steps < ladder.min_steps:
                log.warning("%s: only %d steps (< %d) at this budget; dropped", run_id, spent.steps, ladder.min_steps)
                continue
            if spent.error > TOLERANCE:
                raise ValueError(f"{run_id}: planned FLOPs miss the budget by {100 * spent.error:.1f}% (> 2%)")
            lr = float(user["train"]["lr"]) if "lr" in user["train"] else ladder.lr(st.params_non_embedding, family) * lr_scale
            spec = _run_spec(run_id, family, variant, budget, size.name, L, st, spent, lr, world, rule.preset,
                             model, ladder, parallel, user, data_dir)
            if device_memory_gb is not None:
                _fit_memory(spec, device_memory_gb)
            specs.append(spec)
    ids = [s.run_id for s in specs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"duplicate run ids in the plan: {sorted({i for i in ids if ids.count(i) > 1})}")
    return specs


def _fit_memory(spec: RunSpec, memory_gb: float) -> None:
    """Micro-batch, accumulation and checkpointing of one run within `memory_gb` per device (in place)."""
    cfg = get_config(spec.family, spec.preset, spec.variant, **spec.model)
    plan = plan_micro_batch(spec.family, cfg, spec.params, spec.seq_len, spec.batch_per_device, memory_gb)
    spec.data["batch_size"] = plan.micro_batch
    spec.train["accumulate_grad_batches"] = plan.accumulate
    spec.train["activation_checkpointing"] = plan.checkpointing
    log.info("%s: micro-batch %d x %d accumulated%s, ~%.1f GiB of %g", spec.run_id, plan.micro_batch,
             plan.accumulate, ", checkpointed" if plan.checkpointing else "", plan.estimate_gb, memory_gb)


def _spend_budget(budget: float, st: ModelStats, ladder: Ladder, L: int, world: int,
                  fixed_batch: int | None) -> run_config.BudgetSteps:
    """Steps and global batch of one run: the user's per-device batch if fixed, else the ladder's batch
    rule (halved, down to one window per device, while the run would get fewer than `min_steps`); then
    the budget rule."""
    if fixed_batch is not None:
        batch = int(fixed_batch) * world
    else:
        batch = max(world, ladder.batch_windows(st.params, L) // world * world)
        tokens_target = budget / st.flops_per_token
        while batch > world and tokens_target / (batch * L) < ladder.min_steps:
            batch = max(world, batch // 2 // world * world)
    return run_config.steps_for_budget(budget, st.flops_per_token, batch, L, world,
                                      warn_on_move=fixed_batch is not None)


def _run_spec(run_id: str, family: str, variant: str | None, budget: float, size: str, L: int, st: ModelStats,
              spent: run_config.BudgetSteps, lr: float, world: int, preset: str, model: dict, ladder: Ladder,
              parallel: dict, user: dict, data_dir: str | None) -> RunSpec:
    """The RunSpec of one planned run: its schedule, parallelism and data settings, and the user's."""
    steps, batch = spent.steps, spent.batch
    ckpt_every = max(1, int(math.ceil(steps * ladder.ckpt_fraction)))
    train = {"lr": lr, "max_steps": steps, "ckpt_every": ckpt_every, "log_every": max(1, min(50, steps // 50)),
             "val_every": 0, **parallel, **{k: v for k, v in user["train"].items() if k != "lr"}}
    # The per-device batch is the planned one (a user's fixed batch_size may have moved to spend the budget).
    data = {"seq_len": L, "batch_size": batch // world, "n_val_windows": ladder.n_val_windows,
            **({"data_dir": str(data_dir)} if data_dir else {}),
            **{k: v for k, v in user["data"].items() if k != "batch_size"}}
    tokens = steps * batch * L
    return RunSpec(
        run_id=run_id, family=family, variant=variant, budget=float(budget), size=size, seq_len=L,
        params=st.params, params_non_embedding=st.params_non_embedding, flops_per_token=st.flops_per_token,
        tokens=tokens, flops=tokens * st.flops_per_token, steps=steps, batch=batch, batch_per_device=batch // world,
        lr=lr, tokens_per_param=tokens / st.params, preset=preset, model=cfglib.to_dict(model), train=train,
        data=data, ladder=ladder.name,
    )


# ------------------------------------------------------------------------------------ plan files
def write_plan(specs: list[RunSpec], out_dir: str | os.PathLike, meta: dict | None = None) -> tuple[Path, Path]:
    """DIR/plan.csv (the table) and DIR/plan.json (full specs, what workers and jobs read), atomically."""
    import pandas as pd

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "plan.csv", out_dir / "plan.json"
    fileio.atomic_write_text(csv_path, pd.DataFrame([s.row() for s in specs]).to_csv(index=False))
    fileio.atomic_write_text(json_path, json.dumps({"meta": meta or {}, "runs": [s.to_json() for s in specs]}, indent=1))
    return csv_path, json_path


def read_plan(out_dir: str | os.PathLike) -> list[RunSpec]:
    path = Path(out_dir) / "plan.json"
    if not path.is_file():
        raise ValueError(f"{path}: no plan (run sweeps/isoflop.py first)")
    try:
        runs = json.loads(path.read_text())["runs"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path}: not a sweep plan ({exc})") from None
    return [RunSpec.from_json(r) for r in runs]


def _human(x: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def format_table(specs: list[RunSpec]) -> str:
    """A readable plan table."""
    head = ("run_id", "budget", "params", "tokens", "tok/param", "flops", "flops/C", "steps", "batch", "lr")
    rows = [(s.run_id, f"{s.budget:.3g}", _human(s.params), _human(s.tokens), f"{s.tokens_per_param:.3g}",
             f"{s.flops:.4g}", f"{s.flops / s.budget:.4f}", str(s.steps), str(s.batch), f"{s.lr:.3g}") for s in specs]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])
