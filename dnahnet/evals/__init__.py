"""Zero-shot evaluations, as in the dnaHNet paper (Shah et al. 2026, arXiv 2602.10603).

- `scoring`: sum / mean log-likelihood of sequences under any model (batched, sliding windows, RC average).
- `mutations`: mutation strings, residue numbering, amino-acid -> codon mapping.
- `genes`: genomes and GFF3/GenBank annotations, gene windows, the stop cassette.
- `variant_effect`: Spearman of delta LL against DMS fitness (CLI ``python -m dnahnet.evals.variant_effect``).
- `essentiality`: AUROC of the knockout effect against essential-gene labels (CLI
  ``python -m dnahnet.evals.essentiality``).
- `boundaries`: where dnaHNet's chunkers put boundaries, per region class and codon position (CLI
  ``python -m dnahnet.evals.boundaries``).
"""

from dnahnet.evals.scoring import Scorer, SequenceScores, score_sequences, sliding_windows

__all__ = [
    "Scorer", "SequenceScores", "score_sequences", "sliding_windows",
    "spearman", "auroc", "evaluate_assays", "prepare_assay", "evaluate_essentiality", "boundary_fractions",
]


def __getattr__(name):  # the evaluation modules import torchmetrics/matplotlib: load them on first use
    if name in ("spearman", "evaluate_assays", "prepare_assay"):
        from dnahnet.evals import variant_effect

        return getattr(variant_effect, name)
    if name in ("auroc", "evaluate_essentiality"):
        from dnahnet.evals import essentiality

        return getattr(essentiality, name)
    if name == "boundary_fractions":
        from dnahnet.evals import boundaries

        return getattr(boundaries, name)
    raise AttributeError(name)
