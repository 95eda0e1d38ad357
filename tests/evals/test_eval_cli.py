"""Shared CLI pieces: resumable score cache, atomic outputs, model selection."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from dnahnet.evals import cli
from dnahnet.evals.scoring import SequenceScores


class CountingScorer:
    """Scores a sequence by its GC count; records what it was asked and can fail after n calls."""

    def __init__(self, fail_after: int | None = None):
        self.seen: list[str] = []
        self.fail_after = fail_after

    def score(self, seqs):
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.seen += list(seqs)
        s = np.array([float(x.count("G") + x.count("C")) for x in seqs])
        return SequenceScores(sum_ll=s, mean_ll=s / 2, n_scored=np.full(len(seqs), 2))


def test_interrupted_scoring_resumes_where_it_stopped(tmp_path):
    items = [(f"k{i}", "ACGT"[: 1 + i % 4] * (i + 1)) for i in range(10)]
    first = CountingScorer(fail_after=4)
    cache = cli.ScoreCache(tmp_path, "x", {"model": "m", "n": 1})
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.score_with_cache(first, items, cache, desc="t", chunk=2)
    assert len(first.seen) == 4
    second = CountingScorer()
    cache = cli.ScoreCache(tmp_path, "x", {"model": "m", "n": 1})  # same fingerprint: 4 scores reused
    cli.score_with_cache(second, items, cache, desc="t", chunk=2)
    assert second.seen == [s for _, s in items[4:]]
    assert {k: v[0] for k, v in cache.scores.items()} == {k: float(s.count("G") + s.count("C")) for k, s in items}
    other = cli.ScoreCache(tmp_path, "x", {"model": "another", "n": 1})  # another run: starts afresh
    assert not other.scores
    other.finish()
    assert not (tmp_path / "x.partial.jsonl").exists()


def test_cache_survives_a_line_cut_by_a_crash(tmp_path):
    cache = cli.ScoreCache(tmp_path, "y", {"a": 1})
    cache.add(["a", "b"], [1.0, 2.0], [0.5, 1.0])
    with open(cache.path, "a") as fh:
        fh.write('{"key": "c", "sum_')  # half a line
    again = cli.ScoreCache(tmp_path, "y", {"a": 1})
    assert again.scores == {"a": (1.0, 0.5), "b": (2.0, 1.0)}


def test_atomic_writes_leave_no_temporary_files(tmp_path):
    cli.atomic_write_json(tmp_path / "s.json", {"x": np.float64(1.5), "n": np.int64(3), "rho": [float("nan")]})
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": 1.5, "n": 3, "rho": [None]}
    with pytest.raises(TypeError):
        cli.atomic_write_json(tmp_path / "t.json", {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_model_arguments():
    p = argparse.ArgumentParser()
    cli.add_model_args(p)
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "a", "--family", "transformer"])  # one or the other
    with pytest.raises(SystemExit):
        p.parse_args([])
    args = p.parse_args(["--family", "transformer", "--seed", "3", "--device", "cpu"])
    m1, desc = cli.model_from_args(args)
    m2, _ = cli.model_from_args(args)
    assert desc["trained"] is False and desc["seed"] == 3
    assert all((a == b).all() for a, b in zip(m1.state_dict().values(), m2.state_dict().values(), strict=True))  # seeded
    with pytest.raises(FileNotFoundError):
        cli.model_from_args(p.parse_args(["--checkpoint", "/nonexistent/run"]))
