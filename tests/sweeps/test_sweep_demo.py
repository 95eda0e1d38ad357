"""The demo's sweep part: a sweep per buildable family, then `python -m analysis` on the results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sweeps import ladders as lad
from sweeps.demo import run_demo
from sweeps.plan import load_overrides
from sweeps.runner import read_results
from tests.helpers.synthetic_corpus import markov_corpus


def make_corpus(root: Path, genomes: int = 4, length: int = 20_000, seed: int = 2) -> Path:
    """Synthetic Markov genomes (the successor nucleotide with probability 0.7), one FASTA each."""
    return markov_corpus(root, genomes, length, seed, file_name="d{g}.fasta", header="D{g} synthetic {g}")


def test_an_unknown_family_is_an_error_not_a_skip(tmp_path):
    with pytest.raises(ValueError, match="unknown family no-such-family"):
        run_demo(tmp_path / "demo", ["transformer", "no-such-family"])
    assert not (tmp_path / "demo").exists()  # refused before anything ran


@pytest.mark.slow
def test_demo_sweeps_then_analyses(tmp_path):
    data = make_corpus(tmp_path / "data")
    ladder = lad.custom_ladder([3e9, 6e9], base="cpu-smoke", seq_len=64, sizes=3)
    overrides = load_overrides(None, [f"data.store_dir={tmp_path / 'store'}", "data.n_val_windows=8",
                                      "train.accelerator=cpu"])
    out = run_demo(tmp_path / "demo", ["transformer"], str(data), ladder, progress=False,
                   overrides=overrides, analysis_args=["--bootstrap", "0", "--quiet"])
    assert set(out["results"]) == {"transformer"}
    rows = read_results(out["results"]["transformer"])
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    fits = json.loads((tmp_path / "demo" / "analysis" / "fits.json").read_text())
    (key,) = [k for k in fits if k != "comparisons"]
    assert key.startswith("transformer")
    assert fits[key]["runs"] == {"ok": 6, "failed": 0}
    a2 = fits[key]["approach2"]
    # Exit 0 when the power laws were fitted; 2 only when they could not be (toy budgets whose parabolas
    # have no minimum), and then the reason is recorded. Any other code is a crash.
    assert out["analysis"] == (2 if a2["skipped"] else 0), (out["analysis"], a2["skipped"])
    # The per-budget optima are computed from these runs: recheck them against results.csv.
    assert sorted(o["budget"] for o in a2["optima"]) == sorted(ladder.budgets)
    for o in a2["optima"]:
        runs = [r for r in rows if math.isclose(float(r["budget"]), o["budget"], rel_tol=1e-9)]
        assert o["n_runs"] == len(runs) == 3
        x = np.log10([float(r["params"]) for r in runs])
        y = np.array([float(r["val_loss"]) for r in runs])
        if o["parabola"] is not None:  # three runs: the parabola passes through each; its vertex is N_opt
            c2, c1, c0 = o["parabola"]
            np.testing.assert_allclose(c2 * x**2 + c1 * x + c0, y, rtol=1e-6, atol=1e-9)
            assert c2 > 0 and math.isclose(math.log10(o["params"]), -c1 / (2 * c2), rel_tol=1e-6)
            if not o["flagged"]:
                assert x.min() <= math.log10(o["params"]) <= x.max()
        else:  # no convex parabola: the best run stands in
            best = int(np.argmin(y))
            assert math.isclose(o["params"], float(runs[best]["params"]), rel_tol=1e-9)
            assert math.isclose(o["loss"], y[best], rel_tol=1e-9)
    summary = (tmp_path / "demo" / "analysis" / "summary.md").read_text()
    assert "transformer" in summary
