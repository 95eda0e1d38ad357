"""The matched ~3.2M-parameter model of each family: one table for every benchmark (bench_inference,
bench_models, gpu_check), so their rows describe the same models.

    transformer   small  d 256, 4 layers, 4 heads                              3.22M
    stripedhyena  small  d 256, 4 layers SE-MR-LI-MHA                           3.24M
    dnahnet       mini   2-stage (3,2), widths 96/128/192, m4 / T1m4 / T3      3.34M
"""

from __future__ import annotations

MATCHED: dict[str, tuple[str, dict]] = {  # family -> (registry preset, overrides)
    "transformer": ("small", {}),
    "stripedhyena": ("small", {}),
    "dnahnet": ("mini", {}),
}


def matched_specs() -> list[str]:
    """`family:preset` strings (bench_inference's model specs)."""
    return [f"{family}:{preset}" for family, (preset, overrides) in MATCHED.items() if not overrides]
