"""analysis.markov: gram counts against a pure-Python count, every smoother against a pure-Python model,
normalisation, a sampled order-2 chain's entropy rate, the order search, the CSV and the CLI's errors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from analysis import markov
from analysis.markov import FloorRow, MarkovError, V


def _records(rng, lengths, p_n=0.02):
    """Random records over A C G T with a few N."""
    out = []
    for n in lengths:
        r = rng.integers(0, 4, size=n).astype(np.uint8)
        r[rng.random(n) < p_n] = 4
        out.append(r)
    return out


def _rc(r):
    return [[3, 2, 1, 0, 4][int(x)] for x in reversed(list(r))]


def _brute_counts(records, max_order, both_strands=True):
    """grams[j]: Counter of (j + 1)-tuples inside each record (and each reverse complement)."""
    seqs = [list(map(int, r)) for r in records]
    if both_strands:
        seqs += [_rc(r) for r in records]
    grams = [Counter() for _ in range(max_order + 1)]
    for s in seqs:
        for j in range(max_order + 1):
            for e in range(j, len(s)):
                grams[j][tuple(s[e - j : e + 1])] += 1
    return grams


def _code(gram):
    c = 0
    for x in gram:
        c = c * V + x
    return c


def test_numpy_counts_equal_brute_force_counts():
    rng = np.random.default_rng(0)
    records = _records(rng, [1, 3, 50, 200, 7])
    counts = markov.fit(records, max_order=4)
    brute = _brute_counts(records, 4)
    assert counts.tokens == 2 * sum(len(r) for r in records)
    for j in range(5):
        expected = {_code(g): c for g, c in brute[j].items()}
        got = dict(zip(counts.grams[j].codes.tolist(), counts.grams[j].counts.tolist(), strict=True))
        assert got == expected, j
    for j in range(4):  # continuation counts: distinct symbols seen before each (j + 1)-gram
        left = Counter(g[1:] for g in brute[j + 1])
        got = dict(zip(counts.continuation[j].codes.tolist(), counts.continuation[j].counts.tolist(), strict=True))
        assert got == {_code(g): c for g, c in left.items()}, j
    one = markov.fit(records, max_order=2, both_strands=False)
    assert dict(zip(one.grams[2].codes.tolist(), one.grams[2].counts.tolist(), strict=True)) == {
        _code(g): c for g, c in _brute_counts(records, 2, both_strands=False)[2].items()}


def _brute_prob(brute, j, ctx, w, smoothing, level="top"):
    """P(w | last j symbols of ctx) by the textbook recursions, from the pure-Python counts."""
    if j < 0:
        return 1.0 / V
    h = tuple(ctx[len(ctx) - j :]) if j else ()
    if smoothing == "add-1/2":
        c_h = sum(brute[j][h + (x,)] for x in range(V))
        return (brute[j][h + (w,)] + 0.5) / (c_h + V / 2)
    if smoothing == "witten-bell":
        c_h = sum(brute[j][h + (x,)] for x in range(V))
        lower = _brute_prob(brute, j - 1, ctx, w, smoothing)
        if c_h == 0:
            return lower
        t_h = sum(1 for x in range(V) if brute[j][h + (x,)])
        return (brute[j][h + (w,)] + t_h * lower) / (c_h + t_h)
    # Kneser-Ney: raw counts at the top level, continuation counts N1+(. g) below
    if level == "top":
        table = brute[j]
    else:
        table = Counter(g[1:] for g in brute[j + 1])
    vals = np.array(list(table.values()))
    n1, n2 = int((vals == 1).sum()), int((vals == 2).sum())
    d = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    lower = _brute_prob(brute, j - 1, ctx, w, smoothing, level="cont")
    c_h = sum(table[h + (x,)] for x in range(V))
    if c_h == 0:
        return lower
    t_h = sum(1 for x in range(V) if table[h + (x,)])
    return max(table[h + (w,)] - d, 0) / c_h + d * t_h / c_h * lower


@pytest.mark.parametrize("smoothing", markov.SMOOTHERS)
def test_log_probs_match_the_textbook_recursion_and_normalise(smoothing):
    rng = np.random.default_rng(1)
    records = _records(rng, [300, 120, 40], p_n=0.05)
    K = 3
    counts = markov.fit(records, K)
    brute = _brute_counts(records, K)
    windows = np.stack(_records(rng, [9] * 6, p_n=0.05))  # (6, 9): labels at 1..8, contexts 1..8 long
    lp = markov.log_probs(counts, windows, smoothing)  # (K + 1, 6, 8)
    for k in range(K + 1):
        for i in range(6):
            for t in range(8):
                ctx = list(map(int, windows[i, : t + 1]))
                j = min(k, t + 1)  # longest available context
                p = _brute_prob(brute, j, ctx, int(windows[i, t + 1]), smoothing)
                assert lp[k, i, t] == pytest.approx(math.log(p), abs=1e-12), (k, i, t)
    # every context (seen or not) gets a distribution: the labels' probabilities sum to 1 over the alphabet
    ctx = np.array([0, 1, 2, 3, 4, 0, 0, 1], dtype=np.uint8)
    windows = np.stack([np.r_[ctx, w] for w in range(V)]).astype(np.uint8)
    lp = markov.log_probs(counts, windows, smoothing)[:, :, -1]  # (K + 1, V)
    assert np.allclose(np.exp(lp).sum(axis=1), 1.0, atol=1e-12)


def _order2_table(rng):
    """A strongly order-2 chain over A C G T: next-symbol probabilities after each pair ab, (16, 4)."""
    return rng.dirichlet(np.full(4, 0.3), size=16)


def _sample(P, rng, n):
    """n symbols of the chain P (the first two uniform)."""
    s = np.empty(n, dtype=np.uint8)
    s[:2] = rng.integers(0, 4, 2)
    cum = P.cumsum(axis=1)
    u = rng.random(n)
    for i in range(2, n):
        s[i] = min(int(np.searchsorted(cum[4 * s[i - 2] + s[i - 1]], u[i])), 3)
    return s


def test_order2_chain_reaches_its_entropy_rate_and_higher_orders_do_not_beat_it():
    rng = np.random.default_rng(2)
    P = _order2_table(rng)
    train = _sample(P, rng, 200_000)
    windows = _sample(P, np.random.default_rng(4), 40 * 257).reshape(40, 257)
    counts = markov.fit([train], 5, both_strands=False)
    # the true chain's NLL on the same labels (those with >= 2 symbols of context, t >= 1)
    ctx = 4 * windows[:, :-2].astype(int) + windows[:, 1:-1]
    true_nll = -np.log(P[ctx, windows[:, 2:]]).mean()
    # the chain's entropy rate, from the stationary distribution of its pair chain
    T = np.zeros((16, 16))
    for ab in range(16):
        for c in range(4):
            T[ab, 4 * (ab % 4) + c] = P[ab, c]
    pi = np.linalg.matrix_power(T.T, 200) @ np.full(16, 1 / 16)
    entropy = float(-(pi[:, None] * P * np.log(P)).sum())
    assert true_nll == pytest.approx(entropy, abs=0.03)  # the validation sample is ~10k labels
    for s in markov.SMOOTHERS:
        loss = -markov.log_probs(counts, windows, s)[:, :, 1:].mean(axis=(1, 2))  # (6,) labels t >= 1
        assert loss[2] == pytest.approx(true_nll, abs=0.004), s  # the fitted order 2 is the chain
        assert loss[1] > loss[2] + 0.05 and loss[0] > loss[1], s  # the chain does depend on 2 symbols
        assert (loss[3:] > loss[2] - 0.002).all(), (s, loss)  # higher orders only add noise


def test_floor_sweep_stops_after_patience_orders_without_improvement():
    rng = np.random.default_rng(5)
    P = _order2_table(rng)
    train = _sample(P, rng, 60_000)
    windows = _sample(P, np.random.default_rng(6), 20 * 129).reshape(20, 129)
    rows = markov.floor_sweep([train], windows, max_order=12, patience=2, both_strands=False)
    ks = sorted({r.k for r in rows})
    best = markov.best_row(rows)
    assert ks == list(range(best.k + 3))  # the best order, then two orders that fail to improve on it
    order2 = min(r.val_loss for r in rows if r.k == 2)
    assert best.val_loss > order2 - 0.002 and best.k <= 4  # the chain's order, up to noise
    assert {r.smoothing for r in rows} == set(markov.SMOOTHERS)


def test_csv_round_trip_and_errors(tmp_path):
    rows = [FloorRow(0, "add-1/2", 1.3855), FloorRow(1, "kneser-ney", 1.37)]
    path = tmp_path / "markov.csv"
    markov.write_csv(path, rows)
    back = markov.read_csv(path)
    assert [(r.k, r.smoothing) for r in back] == [(0, "add-1/2"), (1, "kneser-ney")]
    assert markov.best_row(back).val_loss == pytest.approx(1.37)
    (tmp_path / "bad.csv").write_text("k,smoothing,val_loss\n1,x,nan\n")
    with pytest.raises(MarkovError, match="bad.csv:2"):
        markov.read_csv(tmp_path / "bad.csv")
    with pytest.raises(MarkovError, match="token id 6"):
        markov.fit([np.array([0, 6], dtype=np.uint8)], 1)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert markov.main(["--max-order", "40", "--out", str(tmp_path / "m.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --max-order")
    (tmp_path / "plan.csv").write_text("run_id\nx\n")
    assert markov.main(["--plan", str(tmp_path / "plan.csv"), "--out", str(tmp_path / "m.csv")]) == 2
    assert "data_overrides" in capsys.readouterr().err
    assert not (tmp_path / "m.csv").exists()


def test_analysis_reports_the_floor_and_hierarchy_usage(tmp_path):
    """The analysis finds markov.csv above the results (as analysis/reference/cpu keeps it); summary.md gets
    the "Markov floor" line and every frontier loss as nats below it (floor - L), the best run's hierarchy
    usage per budget where results.csv has it; a bad --markov file is one error line. (The figures' floor
    line and fits.json's floor: the reference analysis, tests/test_reference_sweeps.py.)"""
    from analysis.__main__ import main
    from analysis.approach2 import fit_approach2
    from analysis.collect import load_results
    from analysis.summary import floor_section
    from tests.helpers.synthetic_scaling import CHINCHILLA, synthetic_sweep

    sweep = tmp_path / "ref" / "hnet"
    sweep.mkdir(parents=True)
    runs = synthetic_sweep(CHINCHILLA, budgets=(1e18, 1e19), sizes=5, noise=0.0, family="hnet", variant="3,2")
    best = {c: runs[runs["budget"] == c]["val_loss"].idxmin() for c in (1e18, 1e19)}
    runs["usage_stage0"] = 0.05
    runs["usage_stage1"] = ""
    runs.loc[best[1e19], "usage_stage0"] = 0.0123  # the best run's value is the one reported
    runs.to_csv(sweep / "results.csv", index=False)
    floor_value = float(runs["val_loss"].max()) + 0.01
    markov.write_csv(tmp_path / "ref" / "markov.csv", [FloorRow(0, "add-1/2", floor_value + 0.5),
                                                        FloorRow(3, "kneser-ney", floor_value)])
    floor = markov.find_floor([sweep / "results.csv"])
    assert floor is not None and floor.source == str(tmp_path / "ref" / "markov.csv")
    collected = load_results([sweep / "results.csv"])
    a2 = {k: fit_approach2(k, collected.runs[collected.runs["key"] == k], n_boot=0) for k in collected.keys}
    lines = floor_section(collected, a2, floor)
    line = next(x for x in lines if x.startswith("Markov floor:"))
    assert f"{floor_value:.4f}" in line and "k = 3" in line and "kneser-ney" in line
    table = "\n".join(lines).split("## Frontier against the floor")[1].splitlines()
    rows = [r.split("|")[1:-1] for r in table if r.startswith("| 1e+1")]
    assert len(rows) == 2
    for row, o in zip(rows, a2["hnet/3,2"].optima, strict=True):
        assert float(row[4]) == pytest.approx(floor_value - o.loss, abs=1e-4)  # L_opt below floor
        assert float(row[5]) == pytest.approx(floor_value - float(row[3]), abs=1.5e-4)  # best run below floor
    assert [r[6].strip() for r in rows] == ["0.0500", "0.0123"] and "usage_stage1" not in "".join(table)
    (tmp_path / "bad.csv").write_text("k,loss\n")
    assert main(["--results", str(sweep / "results.csv"), "--out", str(tmp_path / "out"), "--markov",
                 str(tmp_path / "bad.csv")]) == 2


def test_extending_counts_to_higher_orders_equals_counting_them_at_once():
    records = _records(np.random.default_rng(7), [80, 30])
    low = markov.fit(records, 1)
    both = markov.fit(records, 3, previous=low)
    once = markov.fit(records, 3)
    for a, b in zip(both.grams + both.continuation, once.grams + once.continuation, strict=True):
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.counts, b.counts)
