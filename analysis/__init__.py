"""Scaling-law analysis of isoFLOP sweeps: `python -m analysis --results results.csv --out DIR`.

collect   load and validate sweep `results.csv` files
approach2 isoFLOP parabolas per budget, power laws N_opt, D_opt, L_opt ~ C^k, bootstrap CIs
approach3 parametric L(N, D) = E + A/N^alpha + B/D^beta (Huber, L-BFGS from a grid), bootstrap CIs
compare   frontier loss at matched compute, loss / perplexity exponents, multipliers extrapolated from the fits
measured  training noise (seed-to-seed scatter of replicas) and measured compute multipliers (best runs, no fit)
lr_sweep  the learning-rate sweep (lr_sweep.csv): figure and table
figures   isoFLOP profiles, frontier, optimal allocation, Approach 3 residuals (PNG + PDF)
summary   summary.md and fits.json
"""

from analysis.approach2 import Approach2Result, BudgetOptimum, PowerLaw, fit_approach2
from analysis.approach3 import Approach3Result, InitGrid, ParametricLaw, fit_approach3
from analysis.collect import Collected, ResultsError, load_results
from analysis.compare import Comparison, compare

__all__ = [
    "Approach2Result", "Approach3Result", "BudgetOptimum", "Collected", "Comparison", "InitGrid",
    "ParametricLaw", "PowerLaw", "ResultsError", "compare", "fit_approach2", "fit_approach3",
    "load_results",
]
