"""Learning-rate schedules as multipliers of the peak rate, step -> factor (docs/FIDELITY.md, "Schedule")."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Linear warmup to 1, then cosine decay to `min_ratio` at `total` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_stable_decay(step: int, total: int, warmup: int, min_ratio: float, decay_fraction: float) -> float:
    """Linear warmup, constant plateau, then linear decay to `min_ratio` over the last `decay_fraction`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    decay_steps = max(1, int(round(decay_fraction * total)))
    decay_start = total - decay_steps
    if step < decay_start:
        return 1.0
    progress = min(1.0, (step - decay_start) / decay_steps)
    return 1.0 - (1 - min_ratio) * progress


SCHEDULES = ("cosine", "wsd")


def lr_factor(schedule: str, step: int, total: int, warmup: int, min_ratio: float, decay_fraction: float) -> float:
    if schedule == "cosine":
        return warmup_cosine(step, total, warmup, min_ratio)
    if schedule == "wsd":
        return warmup_stable_decay(step, total, warmup, min_ratio, decay_fraction)
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
