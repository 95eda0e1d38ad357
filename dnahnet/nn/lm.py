"""The interface every model family implements (see CONTRIBUTING.md, "Language models")."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from dnahnet.flops import FlopsPerToken


@dataclass
class LMOutput:
    """What a forward pass returns."""

    logits: torch.Tensor  # (B, L, V) next-token logits
    aux_loss: torch.Tensor | None = None  # scalar added to the objective (dnaHNet: alpha * ratio losses)
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)  # scalars to log, e.g. "stage0/selection_rate"


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter
    non_embedding: int  # minus the token embedding and the LM head


class LanguageModel(nn.Module):
    """Base class of the model families: next-nucleotide LMs over token ids.

    Subclasses define `embedding` (nn.Embedding) and `lm_head` (nn.Linear) attributes, `forward`,
    `flops_per_token`, `init_cache` and `step`.
    """

    config = None  # the family's config dataclass, set by subclasses

    def forward(self, input_ids: torch.Tensor) -> LMOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def flops_per_token(self, seq_len: int) -> FlopsPerToken:  # pragma: no cover - abstract
        raise NotImplementedError

    def measured_flops_per_token(self, seq_len: int, metrics: dict[str, float]) -> FlopsPerToken:
        """FLOPs per token given what a run measured (dnaHNet: its selection rates). Default: analytic."""
        return self.flops_per_token(seq_len)

    def init_cache(self, batch_size: int, max_seqlen: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, cache) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def prefill(self, input_ids: torch.Tensor, cache) -> torch.Tensor:
        """Feed a prompt (B, P) into a fresh cache; return the logits (B, V) after its last position.

        The default steps through the prompt; families with a parallel prefill override it.
        """
        logits = None
        for t in range(input_ids.shape[1]):
            logits = self.step(input_ids[:, t], cache)
        return logits

    def lr_multipliers(self) -> dict[str, float]:
        """Parameter name -> learning-rate multiplier; absent names get 1.0."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay beyond the generic rule (norms, biases, embeddings)."""
        return {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}

    def weight_decay_names(self) -> set[str]:
        """Names of the parameters AdamW decays. The generic rule (Transformer++, StripedHyena 2): matrices
        only, i.e. no decay on anything with fewer than 2 dims (norms, biases, SSM scalars), on embeddings,
        nor on parameters marked `_no_weight_decay`. Families with a reference recipe override it."""
        exempt = self.no_weight_decay()
        embedding = {id(p) for m in self.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
        return {n for n, p in self.named_parameters() if p.ndim >= 2 and id(p) not in embedding and n not in exempt}

    def param_counts(self) -> ParamCounts:
        total = sum(p.numel() for p in self.parameters())
        embed = self.embedding.weight.numel() + sum(p.numel() for p in self.lm_head.parameters())
        return ParamCounts(total=total, non_embedding=total - embed)
