"""Budget ladders and per-family size rules: compute budget -> a ladder of model sizes.

A **ladder** (`Ladder`) names the budgets of a sweep and the recipe rules every run follows: context
length, models per budget, how wide a range of sizes each budget spans, batch size and learning rate as
functions of model size, validation windows, checkpoint spacing. Named ladders:

    cpu-smoke  2 budgets x 3 tiny models, context 256: about a minute per family on one CPU core
               (the demo's live sweep; shows the pipeline, too small to measure scaling)
    cpu        4 budgets (8x) x 5 models spanning 16x, context 512, 512 validation windows, learning
               rates from each family's learning-rate sweep; the committed reference sweeps
               (analysis/reference/cpu)
    paper      4e18 .. 8e19 FLOPs x 7 models, context 8192 (the dnaHNet paper's range; GPU clusters)

A **size rule** (`dnahnet.family.SizeRule`, one per family, registered by the family's own module:
baselines/transformer.py, baselines/striped_hyena.py, dnahnet/model.py; `get_rule` reads it from the
registry) turns a (width, depth) pair into model-config overrides of the family's preset, under the ladder's **architecture recipe** (`Ladder.arch`). Every run of a ladder
shares one recipe (layout template, Mamba-2 and Hyena settings, head dimension, SwiGLU rounding): only
width and depth fields change between its models, so an isoFLOP parabola measures size alone.

- recipe `cpu` (CPU ladders): a fixed depth, width varying on a fine grid, one set of proportions at every
  rung. transformer / stripedhyena: 4 layers (SE-MR-LI-MHA holds one attention layer), SwiGLU rounded to 8;
  transformer one attention head at every width, widths 4..256 (its optimum at CPU budgets is near width
  8); stripedhyena head dim 8, widths 8..256, 8 SE/MR filter groups at every width, so every rung has the
  same 8 MR decay rates (Evo 2: groups of 16 channels at widths of 1920+). dnahnet: shallow stages
  `["m1", ["m1", ["T4"], "m1"], "m1"]`, stage widths exactly (w/2, 3w/4, w) (w from 8), Mamba-2 state 16 /
  head dim 4 / SSD chunk 16, attention head dim 8 (ours: small enough that the compute-optimal size at
  CPU budgets lies inside the ladder).
- recipe `paper` (GPU ladders): transformer / stripedhyena depth = width / 64 (>= 2 / >= 4), head dim
  64, SwiGLU rounded to 128, stripedhyena 64 SE/MR filter groups at every width; dnahnet the appendix
  layout `["m4", ["T1m4", ["T{n}"], "m4T1"], "m4"]` at every width, Mamba-2 state 128 / head dim 32,
  stage widths exactly (w/2, 3w/4, w) (the paper's presets 256/384/512 .. 1024/1536/2048), one main depth
  for every width: the one giving the main network ~70% of the non-embedding parameters at width 1024
  (the dnaHNet paper; docs/FIDELITY.md, "Parameter split").
  Every dnaHNet variant takes the depth of the full two-stage layout (variant "3" is that model
  without the inner stage's encoder and decoder).

For a budget C the ladder is centred on the size N_c where tokens / parameters = the family's
`center_tokens_per_param` (or the ladder's, `Ladder.center_tokens_for`; solved with the family's exact FLOPs per token at the context length), and
spans `span` (>= 5x) in parameters around it, log-spaced, one model per target: the candidate (width,
depth) with the nearest parameter count, preferring the family's depth (`_pick`). When the budget is too
small for its centre (CPU ladders), the window slides up to start at the smallest model and says so.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dnahnet.family import SizeRule
from dnahnet.registry import build_model_from_config, get_config, get_family, list_families

log = logging.getLogger(__name__)

ARCHS = ("cpu", "paper")  # architecture recipes (module docstring)


# --------------------------------------------------------------------------------------- ladders
@dataclass(frozen=True)
class Ladder:
    """Budgets and recipe rules of a sweep (see the module docstring)."""

    name: str  # the ladder's name ("custom" for explicit --budgets)
    budgets: tuple[float, ...]  # training FLOPs per run, one ladder of sizes each
    seq_len: int  # context length (nucleotides per window)
    sizes: int  # models per budget
    span: float  # largest / smallest target parameter count within a budget (>= 5)
    min_steps: int  # a run with fewer optimizer steps is dropped (too short to mean anything)
    batch_ref_tokens: float  # tokens per optimizer step for a model of `batch_ref_params` parameters
    batch_ref_params: float = 1e8  # reference size of the batch rule
    batch_exponent: float = 0.5  # batch tokens ~ params^exponent (rounded to a power of two in windows)
    min_batch_windows: int = 1  # smallest global batch (windows)
    max_batch_windows: int = 1024  # largest global batch (windows)
    lr_ref: float = 3e-3  # peak learning rate of a model with `lr_ref_params` non-embedding parameters
    lr_ref_params: float = 1e6  # reference size of the learning-rate rule
    lr_exponent: float = 0.25  # lr ~ params^-exponent (GPT-3 / H-Net tables: 6e-4 near 1e8-1e9)
    lr_min: float = 2e-4  # clamp of the rule
    lr_max: float = 6e-3  # clamp of the rule (tiny models tolerate high rates)
    n_val_windows: int = 256  # fixed validation windows (the same for every run of the sweep)
    ckpt_fraction: float = 0.05  # checkpoint every this fraction of a run's steps (the resume point)
    max_width: int = 2048  # widest model considered (keeps CPU ladders tiny)
    arch: str = "paper"  # architecture recipe shared by every run of the ladder: "cpu" | "paper" (see above)
    family_budgets: dict = field(default_factory=dict)  # family -> its own budgets (else `budgets`)
    family_lr_scale: dict = field(default_factory=dict)  # family -> factor on the lr rule (its learning-rate sweep)
    center_tokens_per_param: float | None = None  # ladder centre (tokens / params); None = the family's
    family_center_tokens_per_param: dict = field(default_factory=dict)  # family -> its own centre (else the above)
    description: str = ""

    def __post_init__(self):
        for budgets in (self.budgets, *self.family_budgets.values()):
            if not budgets or any(not (b > 0 and math.isfinite(b)) for b in budgets):
                raise ValueError(f"ladder {self.name!r}: budgets must be positive finite FLOP counts, got {budgets}")
        if self.sizes < 3:
            raise ValueError(f"ladder {self.name!r}: sizes={self.sizes}; an isoFLOP parabola needs >= 3 models")
        if self.span < 5:
            raise ValueError(f"ladder {self.name!r}: span={self.span}; each budget's ladder must span >= 5x")
        if self.seq_len < 8:
            raise ValueError(f"ladder {self.name!r}: seq_len={self.seq_len} is too short")
        if self.arch not in ARCHS:
            raise ValueError(f"ladder {self.name!r}: arch={self.arch!r}; architecture recipes: {', '.join(ARCHS)}")

    def budgets_for(self, family: str) -> tuple[float, ...]:
        """The budgets one family runs: its own where the ladder gives them, else the ladder's."""
        return tuple(self.family_budgets.get(family, self.budgets))

    def center_tokens_for(self, family: str) -> float | None:
        """Tokens per parameter at the centre of one family's windows: its own where the ladder gives one
        (measured on this ladder), else the ladder's, else None (the family's size rule decides)."""
        return self.family_center_tokens_per_param.get(family, self.center_tokens_per_param)

    def batch_windows(self, params: float, seq_len: int | None = None) -> int:
        """Global batch in windows: `batch_ref_tokens` x (params / ref)^exponent tokens, a power of two."""
        L = seq_len or self.seq_len
        tokens = self.batch_ref_tokens * (params / self.batch_ref_params) ** self.batch_exponent
        windows = 2 ** int(round(math.log2(max(1.0, tokens / L))))
        return int(min(max(windows, self.min_batch_windows), self.max_batch_windows))

    def lr(self, params_non_embedding: float, family: str | None = None) -> float:
        """Peak learning rate by model size, times the family's factor (`family_lr_scale`), clamped to
        [lr_min, lr_max]."""
        scale = self.family_lr_scale.get(family, 1.0) if family else 1.0
        value = scale * self.lr_ref * (max(params_non_embedding, 1.0) / self.lr_ref_params) ** (-self.lr_exponent)
        return float(min(max(value, self.lr_min), self.lr_max))


CPU_LR_REF, CPU_LR_REF_PARAMS, CPU_LR_EXPONENT = 3e-3, 1e6, 0.25  # the cpu ladder's size rule (below)

# The cpu ladder's learning rates: family -> (the best peak rate of its learning-rate sweep, the swept model's
# non-embedding parameters); `python -m sweeps.lr_sweep --ladder cpu --budget 1e12` on the ladder's middle size,
# 4 rates a factor 2 apart (analysis/reference/cpu/lr_sweep.csv; tests/sweeps/test_ladders.py checks the two
# agree). Every size then trains at the size rule scaled to pass through that point.
CPU_LR_SWEEP = {"stripedhyena": (1.2e-2, 30888), "dnahnet": (1.2e-2, 38884), "transformer": (4.8e-2, 7020)}


def _rule_factor(best_lr: float, params_non_embedding: float) -> float:
    """The factor that makes the cpu size rule give `best_lr` at `params_non_embedding`."""
    return best_lr / (CPU_LR_REF * (params_non_embedding / CPU_LR_REF_PARAMS) ** -CPU_LR_EXPONENT)


CPU_LR_SCALE = {family: _rule_factor(lr, n) for family, (lr, n) in CPU_LR_SWEEP.items()}

LADDERS: dict[str, Ladder] = {
    "cpu-smoke": Ladder(
        name="cpu-smoke", budgets=(2.5e10, 5e10), seq_len=256, sizes=3, span=7.0, min_steps=30,
        batch_ref_tokens=2048, batch_ref_params=1e5, batch_exponent=0.0, min_batch_windows=8,
        max_batch_windows=8, n_val_windows=32, ckpt_fraction=0.15, max_width=256, arch="cpu",
        description="2 budgets x 3 tiny models at context 256: the demo's live sweep, about a minute per "
        "family on one CPU core (shows the pipeline, too small to measure scaling)",
    ),
    # Budgets: 2.5e11-2e12 (8x), what two CPU cores train in a few hours per family (`--budgets` asks for
    # more); all three families share them, so every frontier is compared budget by budget; the seed replicas
    # run at the two cheapest shared budgets that every size trains >= 100 steps at (`--seeds 2 --seed-budgets
    # 5e11,1e12`). Windows: every family's measured optimum at these budgets (d8-d24) is near the bottom of its
    # grid, so each window starts at the smallest model; Transformer++'s centre is the ~2000 tokens per
    # parameter its d8 optimum had at 2e12 in the sweep before this one (its rule's 350 would centre it on
    # d16-d24). Learning rates: the size rule below times each family's factor from its learning-rate sweep
    # (`family_lr_scale`, from analysis/reference/cpu/lr_sweep.csv: `python -m sweeps.lr_sweep ... --budget
    # 1e12`, the middle size), with the clamp lifted so that the rule, not the clamp, sets every rate.
    "cpu": Ladder(
        name="cpu", budgets=(2.5e11, 5e11, 1e12, 2e12), seq_len=512, sizes=5, span=16.0, min_steps=100,
        family_center_tokens_per_param={"transformer": 2000.0},
        family_lr_scale=CPU_LR_SCALE,
        batch_ref_tokens=8192, batch_ref_params=1e6, batch_exponent=0.0, min_batch_windows=16,
        max_batch_windows=16, n_val_windows=512, ckpt_fraction=0.1, max_width=256, arch="cpu",
        lr_ref=CPU_LR_REF, lr_ref_params=CPU_LR_REF_PARAMS, lr_exponent=CPU_LR_EXPONENT, lr_min=2e-4, lr_max=1e-1,
        description="4 budgets (8x) x 5 models spanning 16x at context 512, 512 validation "
        "windows, learning rates from each family's learning-rate sweep: a few hours per family on one CPU core",
    ),
    "paper": Ladder(
        name="paper", budgets=(4e18, 8e18, 2e19, 4e19, 8e19), seq_len=8192, sizes=7, span=10.0, min_steps=500,
        batch_ref_tokens=2**19, batch_ref_params=1e8, batch_exponent=0.5, min_batch_windows=16,
        max_batch_windows=512, lr_ref=1e-3, lr_ref_params=1e8, lr_exponent=0.25, lr_min=2e-4, lr_max=3e-3,
        n_val_windows=256, ckpt_fraction=0.02, arch="paper",
        description="dnaHNet paper budgets 4e18-8e19 FLOPs (Evo's 8e18, 2e19, 4e19, 8e19 plus 4e18), 7 models "
        "spanning a decade each, context 8192 (GPU clusters)",
    ),
}


def _lookup(table: dict, name: str, what: str):
    """table[name], or ValueError listing the names there are."""
    if name not in table:
        raise ValueError(f"{what} {name!r}; {', '.join(table)} are known")
    return table[name]


def get_ladder(name: str) -> Ladder:
    return _lookup(LADDERS, name, "unknown ladder")


def custom_ladder(budgets: list[float], base: str | None = None, **changes) -> Ladder:
    """A ladder with explicit budgets and the rules of `base` (default: `cpu` below 1e16 FLOPs, else `paper`)."""
    if not budgets:
        raise ValueError("--budgets: give at least one budget, e.g. --budgets 1e12,3e12")
    base = base or ("cpu" if max(budgets) < 1e16 else "paper")
    fields = dict(get_ladder(base).__dict__)
    fields.update(name="custom" if base in LADDERS and tuple(budgets) != LADDERS[base].budgets else base,
                  budgets=tuple(float(b) for b in budgets), family_budgets={}, **changes)  # for every family
    return Ladder(**fields)


def parse_budgets(text: str) -> list[float]:
    """"1e13,3e13" -> [1e13, 3e13], with an error naming the bad item."""
    out = []
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"--budgets: {item!r} is not a number (expected e.g. 1e13,3e13)") from None
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"--budgets: {item!r} must be a positive FLOP count")
        out.append(value)
    if not out:
        raise ValueError("--budgets: no budget given (expected e.g. 1e13,3e13)")
    return sorted(set(out))


# ------------------------------------------------------------------------------------ size rules
def get_rule(family: str) -> SizeRule:
    """The family's size rule, as its module registered it (`dnahnet.family.SizeRule`)."""
    rule = get_family(family).size_rule
    if rule is None:
        with_rules = [name for name in list_families() if get_family(name).size_rule is not None]
        raise ValueError(f"no size rule for family {family!r}; {', '.join(with_rules)} have one")
    return rule


# ------------------------------------------------------------------------------------ model sizes
@dataclass(frozen=True)
class ModelStats:
    params: int
    params_non_embedding: int
    flops_per_token: float  # training FLOPs per token at the context length (forward + backward)


def _freeze(value):
    """A hashable version of a config-override dict (for caching)."""
    if isinstance(value, dict):
        return ("__map__",) + tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("__seq__",) + tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, tuple) and value and value[0] == "__seq__":
        return [_thaw(v) for v in value[1:]]
    if isinstance(value, tuple) and value and value[0] == "__map__":
        return {k: _thaw(v) for k, v in value[1:]}
    return value


class _SkipInitOnMeta(torch.overrides.TorchFunctionMode):
    """Skips weight initialisation of meta tensors: the `torch.nn.init` functions and the random fills
    (`Tensor.normal_`, `Tensor.uniform_`) return their tensor untouched when it lives on the meta device.

    A meta tensor holds no values, so initialising it changes nothing a count reads (shapes), but each call
    still runs through PyTorch's reference decompositions and makes a build ~3x slower. A function mode
    (PyTorch's public `TorchFunctionMode`) is active only inside its `with` block and only in the thread
    that entered it, and it leaves any tensor not on the meta device to the real function."""

    _RANDOM_FILLS = (torch.Tensor.normal_, torch.Tensor.uniform_)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._RANDOM_FILLS or getattr(func, "__module__", None) == "torch.nn.init":
            target = kwargs.get("tensor", args[0] if args else None)
            if isinstance(target, torch.Tensor) and target.is_meta:
                return target
        return func(*args, **kwargs)


def measure(family: str, cfg, seq_len: int) -> ModelStats:
    """Parameters and training FLOPs per token at `seq_len` of a model config: the model is built on the
    meta device (no memory, no initialisation), so this is cheap at any size."""
    with torch.device("meta"), _SkipInitOnMeta():
        model = build_model_from_config(family, cfg)
    counts = model.param_counts()
    return ModelStats(int(counts.total), int(counts.non_embedding), float(model.flops_per_token(seq_len).training))


@functools.lru_cache(maxsize=8192)
def _model_stats(family: str, variant: str | None, frozen: tuple, seq_len: int, preset: str) -> ModelStats:
    return measure(family, get_config(family, preset, variant, **_thaw(frozen)), seq_len)


def stats_of(family: str, variant: str | None, overrides: dict, seq_len: int, preset: str = "tiny") -> ModelStats:
    """`measure` of the family's preset with a variant and overrides. Cached."""
    return _model_stats(family, variant, _freeze(overrides), int(seq_len), preset)


@dataclass(frozen=True)
class Size:
    """One model of a ladder."""

    name: str  # e.g. "d128x2" (width x depth), part of the run id
    width: int
    depth: int
    overrides: dict  # model-config overrides of the rule's preset
    stats: ModelStats


def make_size(rule: SizeRule, variant: str | None, width: int, depth: int, seq_len: int, arch: str) -> Size:
    ov = rule.shape(width, depth, arch)
    return Size(rule.size_name(width, depth), width, depth, ov, stats_of(rule.family, variant, ov, seq_len, rule.preset))


def reference_curve(rule: SizeRule, variant: str | None, seq_len: int, max_width: int, arch: str) -> list[Size]:
    """The recipe's sizes at its preferred depth, one per width up to `max_width`, ascending: the only
    shapes a ladder of that recipe uses (so its shape changes smoothly with size)."""
    out = [make_size(rule, variant, w, rule.preferred_depth(w, variant, arch), seq_len, arch)
           for w in rule.widths(arch) if w <= max_width]
    if len(out) < 2:
        raise ValueError(f"{rule.family}: fewer than two model widths up to max_width={max_width}")
    return out


def center_params(rule: SizeRule, variant: str | None, budget: float, seq_len: int, max_width: int = 2048,
                  arch: str = "paper", tokens_per_param: float | None = None) -> float:
    """N_c with budget = r N_c f(N_c) (r = tokens per parameter, the rule's unless given; f = training
    FLOPs per token), interpolated in log space along the reference curve; clamped to its ends."""
    curve = reference_curve(rule, variant, seq_len, max_width, arch)
    r = tokens_per_param or rule.center_tokens_per_param
    logn = np.log([s.stats.params for s in curve])
    logc = np.log([r * s.stats.params * s.stats.flops_per_token for s in curve])
    return float(np.exp(np.interp(math.log(budget), logc, logn)))


def _pick(target: float, curve: list[Size]) -> Size:
    """The size of the reference curve nearest `target` in log-parameters."""
    return min(curve, key=lambda s: abs(math.log(s.stats.params / target)))


def ladder_sizes(family: str, variant: str | None, budget: float, ladder: Ladder, seq_len: int | None = None) -> list[Size]:
    """The ladder of model sizes for one budget: `ladder.sizes` models spanning >= `ladder.span` x,
    log-spaced around the expected optimum (slid up to the smallest model when the optimum is smaller)."""
    rule = get_rule(family)
    L = int(seq_len or ladder.seq_len)
    curve = reference_curve(rule, variant, L, ladder.max_width, ladder.arch)
    lo, hi = curve[0].stats.params, curve[-1].stats.params
    if hi / lo < ladder.span:
        raise ValueError(f"{family}: widths up to {ladder.max_width} span only {hi / lo:.1f}x in parameters "
                         f"(ladder {ladder.name!r} needs {ladder.span}x)")
    center = center_params(rule, variant, budget, L, ladder.max_width, ladder.arch, ladder.center_tokens_for(family))
    first = center / math.sqrt(ladder.span)
    if center < lo:
        log.info("%s, budget %.3g: the expected optimum (%s params) lies below the ladder's window; it starts "
                 "at the smallest model (%s params)", family, budget, f"{center:,.0f}", f"{lo:,}")
    attempts: list[list[Size]] = []
    for widen in (1.0, 1.15, 1.3, 1.5, 1.75, 2.0):  # rounding to real shapes can shrink the span: widen, retry
        span = ladder.span * widen
        start = min(max(lo, first / math.sqrt(widen)), hi / span)
        targets = start * span ** np.linspace(0.0, 1.0, ladder.sizes)
        picked: list[Size] = []
        for t in targets:
            s = _pick(float(t), curve)
            if all(s.name != p.name for p in picked):
                picked.append(s)
        picked.sort(key=lambda s: s.stats.params)
        if len(picked) >= ladder.sizes and _span(picked) >= ladder.span:
            return picked
        attempts.append(picked)
    # No attempt reached the full span (a coarse size grid): the widest one that kept every size, if it
    # spans at least half the ladder's span (and 5x).
    full = [p for p in attempts if len(p) >= ladder.sizes]
    best = max(full, key=_span) if full else max(attempts, key=len)
    if len(best) >= ladder.sizes and _span(best) >= max(5.0, ladder.span / 2):
        return best
    raise ValueError(f"{family}: cannot build a ladder of {ladder.sizes} distinct sizes spanning >= "
                     f"{max(5.0, ladder.span / 2):g}x at budget {budget:.3g} (got {', '.join(s.name for s in best)})")


def _span(sizes: list[Size]) -> float:
    return sizes[-1].stats.params / sizes[0].stats.params
