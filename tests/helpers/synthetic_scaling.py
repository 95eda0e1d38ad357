"""Synthetic isoFLOP sweeps drawn from a known L(N, D) = E + A/N^alpha + B/D^beta (test helper)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def loss(self, n, d):
        return self.E + self.A / np.asarray(n, float) ** self.alpha + self.B / np.asarray(d, float) ** self.beta

    @property
    def a(self) -> float:
        return self.beta / (self.alpha + self.beta)

    def n_opt(self, compute):
        """Closed-form compute-optimal size under C = 6 N D (Hoffmann et al. 2022, eq. 4)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1 / (self.alpha + self.beta))
        return g * (np.asarray(compute, float) / 6) ** self.a


CHINCHILLA = Law(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
EPOCH = Law(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
BUDGETS = tuple(np.logspace(18, 21, 7))  # 1e18 .. 1e21, half a decade apart


def synthetic_sweep(law: Law, budgets=BUDGETS, sizes: int = 9, half_width: float = 0.6,
                    noise: float = 0.0, seed: int = 0, family: str = "synth", variant: str = "",
                    offset: float = 0.0) -> pd.DataFrame:
    """A results.csv table: per budget C, `sizes` models log-uniform over +-half_width decades around
    the analytic optimum (shifted by `offset` decades), D = C / (6 N), loss times exp(noise * z)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        for u in np.linspace(-half_width, half_width, sizes) + offset:
            n = float(law.n_opt(c)) * 10**u
            d = c / (6 * n)
            loss = float(law.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))
            rows.append({
                "family": family, "variant": variant, "budget": c, "params": n,
                "params_non_embedding": 0.98 * n, "tokens": d, "flops": c, "val_loss": loss,
                "val_bpn": loss / np.log(2), "status": "ok", "wall_s": 1.0,
                "run_dir": f"runs/{family}/{variant}/{c:.3e}/{n:.4e}",
            })
    return pd.DataFrame(rows)


def as_runs(table: pd.DataFrame) -> pd.DataFrame:
    """The columns the fits read (what analysis.collect adds)."""
    return table.assign(N=table["params"], D=table["tokens"], C=table["budget"], L=table["val_loss"])
