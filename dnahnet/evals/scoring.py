"""Log-likelihood of DNA sequences under a language model (zero-shot scoring, as in the dnaHNet paper).

score(x) = sum_{t >= 1} log p(x_t | x_<t), natural log, with the mean taken over the same L - 1
positions. The first nucleotide has no context and is never scored (the models have no <bos>
token at training time, so p(x_0) is not defined); every sequence is scored the same way, so
differences between equal-length sequences (mutant - wild type, knockout - wild type) are fair.

Batches are padded on the right with <pad> and masked: the models are causal, so padding after a
sequence never changes the logits at its real positions.

Sequences longer than the context a model can use are an explicit choice, never silent truncation:
- ``max_context=None`` scores each sequence in one forward pass (and refuses a sequence longer than
  the context the model declares, if it declares one);
- ``max_context=W`` without ``stride`` refuses any sequence longer than W (clear error);
- ``max_context=W, stride=S`` scores longer sequences in sliding windows of W nucleotides whose
  starts advance by S (1 <= S < W; the last window is aligned to the end of the sequence). Every
  scored position is counted exactly once: the first window scores its positions 1..W-1, each
  later window only the positions no earlier window scored, so each of them sees at least W - S
  nucleotides of context.

Optional reverse-complement averaging scores x and revcomp(x) and averages the two (both strands
are scored with the same rule, so the averaged score stays fair between equal-length sequences).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from dnahnet.tokenizer import PAD_ID, encode, reverse_complement

log = logging.getLogger(__name__)

SequenceLike = str | torch.Tensor

_CONTEXT_ATTRS = ("max_seqlen", "max_seq_len", "max_context", "context_length", "max_position_embeddings")
_PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class SequenceScores:
    """Scores of N sequences (natural log)."""

    sum_ll: np.ndarray  # (N,) float64: sum of log p(x_t | x_<t) over the scored positions
    mean_ll: np.ndarray  # (N,) float64: sum_ll / n_scored
    n_scored: np.ndarray  # (N,) int64: scored positions per sequence (L - 1)


@dataclass(frozen=True)
class _Piece:
    """One forward-pass input: ids[start:end] of sequence `seq`, scoring local targets >= first_target."""

    seq: int  # index of the sequence (in the caller's list, doubled when averaging strands)
    start: int  # window start in the sequence
    end: int  # window end (exclusive)
    first_target: int  # first window-local position whose log-probability is counted (>= 1)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> cuda when available, else cpu; anything else as given (checked)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    return device


def model_context_length(model: nn.Module) -> int | None:
    """The longest input the model declares it can take (config attribute), or None when unbounded."""
    cfg = getattr(model, "config", None)
    for name in _CONTEXT_ATTRS:
        value = getattr(cfg, name, None) if cfg is not None else None
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_scoring_model(model: nn.Module | str | Path, device: str | torch.device | None = "auto") -> nn.Module:
    """A model object, or a checkpoint path / run directory (via `dnahnet.checkpoint.load_model`), in eval
    mode on `device`."""
    dev = resolve_device(device)
    if isinstance(model, (str, Path)):
        from dnahnet.checkpoint import load_model

        model = load_model(model, map_location="cpu")
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected an nn.Module or a checkpoint path, got {type(model).__name__}")
    return model.to(dev).eval()


def sliding_windows(length: int, max_context: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (start, end, first_target) covering targets 1..length-1 exactly once.

    `first_target` is window-local. A sequence that fits gives one window (0, length, 1).
    """
    if length < 2:
        raise ValueError(f"a sequence of length {length} has no scored position (the first nucleotide has no context)")
    if max_context < 2:
        raise ValueError(f"max_context={max_context}: a window needs at least 2 nucleotides")
    if length <= max_context:
        return [(0, length, 1)]
    if not 1 <= stride < max_context:
        raise ValueError(f"stride={stride} must satisfy 1 <= stride < max_context={max_context}")
    windows = [(0, max_context, 1)]
    scored_until = max_context  # targets < scored_until are done
    start = 0
    while scored_until < length:
        start = min(start + stride, length - max_context)
        end = start + max_context
        windows.append((start, end, scored_until - start))
        scored_until = end
    return windows


def _as_ids(seq: SequenceLike) -> torch.Tensor:
    if isinstance(seq, str):
        return encode(seq)
    if isinstance(seq, torch.Tensor):
        if seq.dim() != 1:
            raise ValueError(f"a sequence of ids must be 1-D, got shape {tuple(seq.shape)}")
        return seq.long().cpu()
    raise TypeError(f"expected a DNA string or a 1-D LongTensor of ids, got {type(seq).__name__}")


class Scorer:
    """Scores sequences under one model with fixed options; see the module docstring for the rules.

    >>> scorer = Scorer(build_model("transformer", "tiny"), batch_size=16)
    >>> scores = scorer.score(["ACGTACGT", "TTTTACGA"])   # SequenceScores
    """

    def __init__(
        self,
        model: nn.Module | str | Path,
        *,
        device: str | torch.device | None = "auto",
        batch_size: int = 8,
        max_context: int | None = None,
        stride: int | None = None,
        rc_average: bool = False,
        precision: str = "fp32",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be >= 1")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision={precision!r}; choose one of {', '.join(_PRECISIONS)}")
        if stride is not None and max_context is None:
            raise ValueError("stride is given without max_context: sliding windows need a window length")
        if max_context is not None and stride is not None and not 1 <= stride < max_context:
            raise ValueError(f"stride={stride} must satisfy 1 <= stride < max_context={max_context}")
        self.model = load_scoring_model(model, device)
        self.device = next(self.model.parameters()).device
        self.batch_size = batch_size
        declared = model_context_length(self.model)
        if max_context is not None and declared is not None and max_context > declared:
            raise ValueError(f"max_context={max_context} exceeds the model's declared context {declared}")
        self.declared_context = declared
        self.max_context = max_context
        self.stride = stride
        self.rc_average = rc_average
        self.precision = precision

    def describe(self) -> dict:
        """The options that change scores (written to summaries, used as a resume fingerprint)."""
        return {
            "max_context": self.max_context, "stride": self.stride, "rc_average": self.rc_average,
            "precision": self.precision, "first_position_scored": False,
        }

    def _pieces(self, ids: list[torch.Tensor]) -> list[_Piece]:
        pieces = []
        for i, x in enumerate(ids):
            n = int(x.numel())
            limit = self.max_context if self.max_context is not None else self.declared_context
            if n < 2:
                raise ValueError(f"sequence {i} has length {n}: nothing to score (the first nucleotide has no context)")
            if limit is not None and n > limit and self.stride is None:
                who = "max_context" if self.max_context is not None else "the model's declared context"
                raise ValueError(
                    f"sequence {i} has {n} nt, longer than {who} ({limit}); pass stride= (--stride) to score it "
                    "in sliding windows, or a shorter window: sequences are never truncated silently"
                )
            if limit is None or n <= limit:
                pieces.append(_Piece(i, 0, n, 1))
            else:
                pieces.extend(_Piece(i, s, e, f) for s, e, f in sliding_windows(n, limit, self.stride))
        return pieces

    @torch.inference_mode()
    def _token_logprobs(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L-1) float32 log p(x_t | x_<t) for t = 1..L-1."""
        dtype = _PRECISIONS[self.precision]
        ctx = (
            torch.autocast(device_type=self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        )
        with ctx:
            logits = self.model(batch).logits  # (B, L, V)
        logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (B, L-1, V)
        return logp.gather(-1, batch[:, 1:, None]).squeeze(-1)  # (B, L-1)

    def score(self, seqs: Sequence[SequenceLike], progress: bool = False, desc: str = "scoring") -> SequenceScores:
        """Sum and mean log-likelihood of each sequence (see the module docstring)."""
        ids = [_as_ids(s) for s in seqs]
        n_seq = len(ids)
        if self.rc_average:
            ids = ids + [reverse_complement(x) for x in ids]
        pieces = self._pieces(ids)
        # Longest first: batches of similar lengths waste little padding.
        order = sorted(range(len(pieces)), key=lambda k: pieces[k].end - pieces[k].start, reverse=True)
        sums = np.zeros(len(ids), dtype=np.float64)
        counts = np.zeros(len(ids), dtype=np.int64)
        batches = [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]
        for batch_idx in tqdm(batches, desc=desc, disable=not progress, leave=False):
            chunk = [pieces[k] for k in batch_idx]
            width = max(p.end - p.start for p in chunk)
            batch = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
            mask = torch.zeros((len(chunk), width - 1), dtype=torch.bool)
            for row, p in enumerate(chunk):
                batch[row, : p.end - p.start] = ids[p.seq][p.start : p.end]
                mask[row, p.first_target - 1 : p.end - p.start - 1] = True  # target t sits at column t-1
            logp = self._token_logprobs(batch.to(self.device)).double().cpu()  # (B, W-1)
            logp = torch.where(mask, logp, torch.zeros((), dtype=logp.dtype))
            per_row = logp.sum(dim=1).numpy()
            for row, p in enumerate(chunk):
                sums[p.seq] += per_row[row]
                counts[p.seq] += int(mask[row].sum())
        expected = np.array([x.numel() - 1 for x in ids])
        if not np.array_equal(counts, expected):  # every position once: a broken window plan must not pass
            raise RuntimeError("internal error: scored positions do not cover each sequence exactly once")
        if self.rc_average:
            sums = 0.5 * (sums[:n_seq] + sums[n_seq:])
            counts = counts[:n_seq]
        return SequenceScores(sum_ll=sums, mean_ll=sums / counts, n_scored=counts)


def score_sequences(model: nn.Module | str | Path, seqs: Sequence[SequenceLike], *, progress: bool = False,
                    **options) -> SequenceScores:
    """One-shot form of `Scorer(model, **options).score(seqs)`: a model object or a checkpoint path; `options`
    are Scorer's keywords (device, batch_size, max_context, stride, rc_average, precision)."""
    return Scorer(model, **options).score(seqs, progress=progress)
