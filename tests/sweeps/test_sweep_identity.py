"""A rerun of a finished sweep with a setting that changes what its runs compute is refused (exit 2, one
`error:` line naming the key, results.csv untouched), whatever the setting: the identity rule is the single-run
one (`dnahnet.run_config.config_differences`), not a list of the keys a sweep happens to know."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sweeps import isoflop
from tests.helpers.synthetic_corpus import markov_corpus


def sweep_args(root: Path, data: Path, *extra: str) -> list[str]:
    return ["--model", "transformer", "--budgets", "4e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
            "--out", str(root / "sweep"), "--data-dir", str(data), "--no-progress",
            "--set", f"data.store_dir={root / 'store'}", "--set", "data.n_val_windows=4",
            "--set", "train.accelerator=cpu", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A sweep directory whose one run (the smallest of a cpu-smoke budget) is finished and recorded."""
    root = tmp_path_factory.mktemp("identity")
    data = markov_corpus(root / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    args = sweep_args(root, data)
    first = isoflop.plan_from_args(isoflop.build_parser().parse_args(args))[0].run_id
    assert isoflop.main([*args, "--only", first]) == 0
    return root, data, first


@pytest.mark.parametrize(("change", "key"), [
    (["--set", "data.rc_prob=0.0"], "data.rc_prob"),
    (["--set", "data.val_genomes=2"], "data.val_genomes"),
    (["--set", "data.holdout=[]"], "data.holdout"),
    (["--set", "train.eps=1e-6"], "train.eps"),
    ("other genomes", "data_key"),
])
def test_a_rerun_that_changes_what_runs_compute_is_refused(finished, change, key, capsys):
    root, data, first = finished
    if change == "other genomes":
        other = root / "other-data"
        if not other.exists():
            markov_corpus(other, 4, 20_000, 1, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
        args = sweep_args(root, other, "--only", first)
    else:
        args = sweep_args(root, data, "--only", first, *change)
    before = (root / "sweep" / "results.csv").read_bytes()
    capsys.readouterr()
    assert isoflop.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and key in err and "Traceback" not in err, err
    assert (root / "sweep" / "results.csv").read_bytes() == before
    assert isoflop.main([*args, "--dry-run"]) == 2  # nor planned over the finished run


@pytest.mark.parametrize("change", [["--set", "train.log_every=3", "--set", "data.num_workers=1"], "same genomes elsewhere"])
def test_a_rerun_that_changes_nothing_computed_reports_the_recorded_runs(finished, change, capsys):
    root, data, first = finished
    if change == "same genomes elsewhere":
        copy = root / "data-copy"
        if not copy.exists():
            shutil.copytree(data, copy)
        args = sweep_args(root, copy, "--only", first)
    else:
        args = sweep_args(root, data, "--only", first, *change)
    before = (root / "sweep" / "results.csv").read_bytes()
    capsys.readouterr()
    assert isoflop.main(args) == 0
    assert "error:" not in capsys.readouterr().err
    assert (root / "sweep" / "results.csv").read_bytes() == before
