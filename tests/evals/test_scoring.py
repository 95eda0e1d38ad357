"""Scoring: equals a plain forward's per-token log-probabilities; sliding windows count each position once."""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from dnahnet.evals.scoring import Scorer, score_sequences, sliding_windows
from dnahnet.nn.lm import LanguageModel, LMOutput
from dnahnet.registry import build_model
from dnahnet.tokenizer import decode, encode, reverse_complement


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("transformer", "tiny").eval()


def random_seqs(lengths, seed=0, alphabet="ACGT"):
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), size=n)) for n in lengths]


def naive_ll(model, seq: str) -> float:
    """sum_{t>=1} log p(x_t | x_<t) from one unpadded forward, accumulated in float64 one token at a time."""
    ids = encode(seq)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids[None]).logits[0].double(), dim=-1)  # (L, V)
    total = 0.0
    for t in range(1, len(ids)):
        total += float(logp[t - 1, ids[t]])
    return total


def test_score_equals_sum_of_per_token_logprobs(model):
    seqs = random_seqs([5, 17, 33, 2, 64], seed=1, alphabet="ACGTN")
    res = score_sequences(model, seqs, batch_size=2, device="cpu")  # batches mix lengths: padding is exercised
    expected = np.array([naive_ll(model, s) for s in seqs])
    np.testing.assert_allclose(res.sum_ll, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(res.n_scored, [len(s) - 1 for s in seqs])
    np.testing.assert_allclose(res.mean_ll, expected / (np.array([len(s) for s in seqs]) - 1), atol=1e-5)


def test_batching_and_order_do_not_change_scores(model):
    seqs = random_seqs([40, 7, 25, 40, 3], seed=2)
    one = Scorer(model, device="cpu", batch_size=1).score(seqs)
    many = Scorer(model, device="cpu", batch_size=8).score(seqs)
    np.testing.assert_allclose(one.sum_ll, many.sum_ll, atol=1e-5)
    # Token tensors and strings are the same input.
    ids = Scorer(model, device="cpu").score([encode(s) for s in seqs])
    np.testing.assert_allclose(ids.sum_ll, many.sum_ll, atol=1e-5)


def test_sliding_window_batched_with_a_sequence_that_fits(model):
    """A 30-nt sequence slides (windows of 16, stride 7: three windows) in the same batches as a 12-nt one
    that fits in one window. The short one scores as the full forward; the long one scores each position
    with its planned, truncated context (an independent forward per target), so it differs from the
    full forward: the windows really slide."""
    seqs = random_seqs([30, 12], seed=3)
    window, stride = 16, 7
    plan = sliding_windows(30, window, stride)
    assert len(plan) == 3 and sliding_windows(12, window, stride) == [(0, 12, 1)]
    full = Scorer(model, device="cpu").score(seqs)
    slid = Scorer(model, device="cpu", max_context=window, stride=stride, batch_size=2).score(seqs)
    np.testing.assert_array_equal(slid.n_scored, [29, 11])
    assert slid.sum_ll[1] == pytest.approx(full.sum_ll[1], abs=1e-4)
    ids = encode(seqs[0])
    expected = 0.0
    for s, e, f in plan:
        for t in range(s + f, e):  # target t sees exactly ids[s:t]
            with torch.no_grad():
                logits = model(ids[s:t][None]).logits[0, -1].double()
            expected += float(torch.log_softmax(logits, -1)[ids[t]])
    assert slid.sum_ll[0] == pytest.approx(expected, abs=1e-4)
    assert abs(slid.sum_ll[0] - full.sum_ll[0]) > 1e-3  # truncated context changes the score


def test_a_window_covering_the_sequence_equals_the_full_forward(model):
    seqs = random_seqs([30, 12], seed=3)
    full = Scorer(model, device="cpu").score(seqs)
    covering = Scorer(model, device="cpu", max_context=30, stride=7).score(seqs)
    np.testing.assert_allclose(covering.sum_ll, full.sum_ll, rtol=0, atol=1e-6)


@pytest.mark.parametrize("length,window,stride", [(2, 2, 1), (10, 4, 1), (10, 4, 3), (37, 16, 5), (33, 16, 15), (100, 10, 9)])
def test_sliding_windows_score_each_position_once(length, window, stride):
    plan = sliding_windows(length, window, stride)
    targets = [s + k for s, e, f in plan for k in range(f, e - s)]
    assert sorted(targets) == list(range(1, length)), "every position 1..L-1 exactly once"
    for i, (s, e, f) in enumerate(plan):
        assert 0 <= s and e - s == min(window, length) and e <= length
        if i > 0:  # later windows give every scored position at least window - stride of context
            assert f >= window - stride


def test_sliding_window_scores_use_the_planned_context(model):
    seq = random_seqs([41], seed=4)[0]
    window, stride = 16, 5
    got = Scorer(model, device="cpu", max_context=window, stride=stride).score([seq]).sum_ll[0]
    ids = encode(seq)
    expected = 0.0
    for s, e, f in sliding_windows(len(seq), window, stride):
        for t in range(s + f, e):  # target t sees exactly ids[s:t]
            with torch.no_grad():
                logits = model(ids[s:t][None]).logits[0, -1].double()  # predicts ids[t]
            expected += float(torch.log_softmax(logits, -1)[ids[t]])
    assert got == pytest.approx(expected, abs=1e-4)


@dataclass
class _KGramConfig:
    k: int = 3


class KGramLM(LanguageModel):
    """A model that only sees the last k nucleotides (a causal convolution): sliding windows with at
    least k of context must reproduce full-sequence scores exactly."""

    def __init__(self, k=3):
        super().__init__()
        self.config = _KGramConfig(k)
        self.embedding = nn.Embedding(8, 8)
        self.conv = nn.Conv1d(8, 16, kernel_size=k)
        self.lm_head = nn.Linear(16, 8)

    def forward(self, input_ids):
        x = self.embedding(input_ids).transpose(1, 2)  # (B, D, L)
        x = nn.functional.pad(x, (self.config.k - 1, 0))
        return LMOutput(logits=self.lm_head(torch.tanh(self.conv(x)).transpose(1, 2)))


def test_sliding_windows_exact_for_a_finite_memory_model():
    torch.manual_seed(0)
    m = KGramLM(k=3).eval()
    seqs = random_seqs([200, 57], seed=5)
    full = Scorer(m, device="cpu").score(seqs)
    slid = Scorer(m, device="cpu", max_context=20, stride=17, batch_size=3).score(seqs)  # context >= 3 = k
    np.testing.assert_allclose(slid.sum_ll, full.sum_ll, atol=1e-4)
    truncated = Scorer(m, device="cpu", max_context=20, stride=19).score(seqs)  # only 1 nt of context
    assert not np.allclose(truncated.sum_ll, full.sum_ll, atol=1e-3)


def test_longer_than_context_is_an_error_not_a_truncation(model):
    with pytest.raises(ValueError, match="longer than max_context"):
        Scorer(model, device="cpu", max_context=10).score(["ACGT" * 5])

    class Bounded(KGramLM):
        pass

    m = Bounded()
    m.config = dataclasses.make_dataclass("C", [("k", int, 3), ("max_seqlen", int, 16)])()
    with pytest.raises(ValueError, match="declared context"):
        Scorer(m, device="cpu").score(["ACGT" * 5])
    assert Scorer(m, device="cpu").score(["ACGT" * 4]).n_scored[0] == 15
    with pytest.raises(ValueError, match="stride"):
        Scorer(model, device="cpu", stride=4)
    with pytest.raises(ValueError, match="nothing to score"):
        Scorer(model, device="cpu").score(["A"])


def test_reverse_complement_average(model):
    seqs = random_seqs([20, 31], seed=6)
    rc = [decode(reverse_complement(encode(s))) for s in seqs]
    plain = Scorer(model, device="cpu").score(seqs + rc)
    avg = Scorer(model, device="cpu", rc_average=True).score(seqs)
    np.testing.assert_allclose(avg.sum_ll, 0.5 * (plain.sum_ll[:2] + plain.sum_ll[2:]), atol=1e-6)


def test_scoring_from_a_checkpoint_path(model, tmp_path):
    ckpt = {
        "hyper_parameters": {"family": "transformer", "model_config": dataclasses.asdict(model.config)},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    seqs = random_seqs([15, 22], seed=7)
    from_path = score_sequences(tmp_path / "last.ckpt", seqs, device="cpu")
    from_obj = score_sequences(model, seqs, device="cpu")
    np.testing.assert_allclose(from_path.sum_ll, from_obj.sum_ll, atol=1e-6)


@pytest.mark.gpu
def test_gpu_scores_match_cpu(model):
    seqs = random_seqs([50, 80], seed=8)
    cpu = Scorer(model, device="cpu").score(seqs)
    gpu = Scorer(copy.deepcopy(model), device="cuda").score(seqs)  # a copy: Scorer moves the model it gets
    np.testing.assert_allclose(gpu.sum_ll, cpu.sum_ll, atol=1e-3)


def test_all_windows_pairs_small_exhaustive():
    for length, window in itertools.product(range(2, 14), range(2, 8)):
        for stride in range(1, window):
            plan = sliding_windows(length, window, stride)
            targets = sorted(s + k for s, e, f in plan for k in range(f, e - s))
            assert targets == list(range(1, length))


def test_padding_is_harmless_for_dnahnet():
    """dnaHNet's chunkers see the <pad> tail of shorter sequences in a batch: real positions must not."""
    torch.manual_seed(0)
    m = build_model("dnahnet", "tiny").eval()
    seqs = random_seqs([20, 45], seed=9)
    alone = Scorer(m, device="cpu", batch_size=1).score(seqs)
    padded = Scorer(m, device="cpu", batch_size=3).score(seqs)
    np.testing.assert_allclose(padded.sum_ll, alone.sum_ll, atol=1e-4)
