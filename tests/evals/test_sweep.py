"""dnahnet.evals.sweep: selection, bootstrap intervals, resumable evals.csv, error lines, the training-split
warning; and the acceptance path sweep -> exports -> evals.sweep -> analysis (slow)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from dnahnet import tokenizer
from dnahnet.evals import sweep as sw
from dnahnet.evals.essentiality import auroc
from dnahnet.evals.trainsplit import eval_genome_in_training, training_split_warning
from tests.helpers.eval_data import data_dir

DATA = data_dir()
HAVE_DATA = (DATA / "variant_effect" / "BLAT_ECOLX_Stiffler2015.csv").is_file()
needs_data = pytest.mark.skipif(not HAVE_DATA, reason=f"evaluation data not found in {DATA}")
TINY = ["--variants", "6", "--genes", "8", "--ess-window", "128", "--boundary-windows", "2",
        "--boundary-window-len", "128", "--bootstrap", "50", "--no-progress", "--data-dir", str(DATA)]


# ------------------------------------------------------------------------------------------------ statistics


def test_bootstrap_spearman_is_the_percentile_interval_of_resampled_spearmans():
    rng = np.random.default_rng(1)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    y[:5] = y[5]  # ties: average ranks
    lo, hi = sw.bootstrap_spearman(x, y, n_boot=200, seed=7)
    idx = np.random.default_rng(7).integers(0, 40, size=(200, 40))
    ref = np.array([spearmanr(x[i], y[i]).statistic for i in idx])  # brute force, scipy, float64
    assert lo == pytest.approx(np.quantile(ref, 0.025), abs=1e-12)
    assert hi == pytest.approx(np.quantile(ref, 0.975), abs=1e-12)
    assert lo < spearmanr(x, y).statistic < hi


def test_bootstrap_auroc_is_the_percentile_interval_of_resampled_aurocs():
    rng = np.random.default_rng(2)
    labels = (rng.random(30) < 0.3).astype(int)
    scores = labels + rng.normal(size=30)
    scores[:4] = scores[4]
    lo, hi = sw.bootstrap_auroc(scores, labels, n_boot=150, seed=3)
    idx = np.random.default_rng(3).integers(0, 30, size=(150, 30))
    ref = np.array([auroc(scores[i], labels[i]) for i in idx])  # the evaluation's own AUROC (Mann-Whitney)
    ref = ref[np.isfinite(ref)]
    assert lo == pytest.approx(np.quantile(ref, 0.025), abs=1e-12)
    assert hi == pytest.approx(np.quantile(ref, 0.975), abs=1e-12)


def test_best_run_per_budget_and_variant_is_the_lowest_val_loss():
    rng = np.random.default_rng(0)
    rows = [{"run_id": f"r{i}", "family": fam, "variant": var, "budget": b, "val_loss": rng.random(), "params": 1}
            for i, (fam, var, b) in enumerate((f, v, b) for f, v in (("dnahnet", "3,2"), ("dnahnet", "2,2"),
                                                                      ("transformer", "")) for b in (1e9, 2e9)
                                              for _ in range(3))]
    frame = pd.DataFrame(rows)
    best = sw.select_runs(frame, "best")
    expected = {}
    for r in rows:  # brute force
        key = (r["family"], r["variant"], r["budget"])
        if key not in expected or r["val_loss"] < expected[key]["val_loss"]:
            expected[key] = r
    assert sorted(best["run_id"]) == sorted(r["run_id"] for r in expected.values())
    assert len(sw.select_runs(frame, "all")) == len(rows)


# ------------------------------------------------------------------------------------------------ a fake sweep


def _export(folder: Path, family: str, seed: int, data: dict | None = None) -> None:
    """An exported untrained tiny model (dnahnet.export's format)."""
    from safetensors.torch import save_model

    from dnahnet import typed_config as cfglib
    from dnahnet.export import FORMAT, FORMAT_VERSION
    from dnahnet.registry import build_model_from_config, get_config

    torch.manual_seed(seed)
    model_cfg = get_config(family, "tiny", None)
    model = build_model_from_config(family, model_cfg)
    folder.mkdir(parents=True)
    save_model(model, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "format": FORMAT, "format_version": FORMAT_VERSION, "family": family, "variant": None, "preset": "tiny",
        "model_config": cfglib.to_dict(model_cfg),
        "tokenizer": {"id_to_token": list(tokenizer.ID_TO_TOKEN), "vocab_size": tokenizer.VOCAB_SIZE},
        "params": 1, "global_step": 0, "seq_len": 64, "data": data or {"holdout": ["NC_000913"]}}))


def fake_sweep(root: Path, family: str = "transformer", n: int = 3, exported: int | None = None,
               data: dict | None = None) -> Path:
    rows = []
    for i in range(n):
        run_id = f"{family}-C1e9-s{i}"
        run_dir = root / "runs" / run_id
        if exported is None or i < exported:
            _export(run_dir / "export", family, i, data)
        rows.append({"run_id": run_id, "family": family, "variant": "", "budget": 1e9 * (1 + i // 2), "size": f"s{i}",
                     "params": 1000 + i, "tokens": 10, "flops": 1e9, "val_loss": 1.3 - 0.01 * i, "status": "ok",
                     "run_dir": str(run_dir)})
    pd.DataFrame(rows).to_csv(root / "results.csv", index=False)
    return root


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("case", ["no_dir", "no_results", "no_exports", "bad_option", "short_window", "bad_select"])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, case):
    sweep = tmp_path / "sweep"
    args = [str(sweep), "--data-dir", str(tmp_path)]
    if case == "no_results":
        sweep.mkdir()
    if case == "no_exports":
        sweep.mkdir()
        fake_sweep(sweep, n=2, exported=0)
    if case == "bad_option":
        args += ["--variants", "-3"]
    if case == "short_window":
        sweep.mkdir()
        args += ["--ess-window", "10"]
    if case == "bad_select":
        args += ["--select", "worst"]
    assert sw.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error:") or "error:" in err[-1], err
    assert "Traceback" not in "\n".join(err)
    expected = {"no_dir": "no such sweep directory", "no_results": "results.csv", "no_exports": "no finished run with an export",
                "bad_option": "--variants", "short_window": "--ess-window", "bad_select": "--select"}[case]
    assert expected in err[-1]
    assert not (sweep / "evals.csv").exists()


# ------------------------------------------------------------------------------------------------ resumability


@needs_data
def test_a_rerun_scores_only_what_is_missing(tmp_path, monkeypatch, capsys):
    sweep = fake_sweep(tmp_path / "sweep", n=3, exported=2)  # the third run has no export: skipped, logged
    calls = []
    real = sw.evaluate_run

    def counting(folder, *a, **k):
        calls.append(Path(folder).parent.name)
        return real(folder, *a, **k)

    monkeypatch.setattr(sw, "evaluate_run", counting)
    assert sw.main([str(sweep), *TINY]) == 0
    assert sorted(calls) == ["transformer-C1e9-s0", "transformer-C1e9-s1"]
    table = pd.read_csv(sweep / "evals.csv")
    assert list(table.columns[:9]) == list(sw.RUN_COLUMNS)
    assert len(table) == 2 and table["n_variants"].eq(6).all() and table["n_genes"].eq(8).all()
    assert ((table["spearman_lo"] <= table["spearman"]) & (table["spearman"] <= table["spearman_hi"])).all()
    assert ((table["auroc_lo"] <= table["auroc"]) & (table["auroc"] <= table["auroc_hi"])).all()
    # The per-run detail tables give the same statistics (independent recomputation).
    sid = table["settings_id"].iloc[0]
    for r in table.itertuples():
        genes = pd.read_csv(sweep / "evals" / r.run_id / sid / "essentiality" / "genes.csv")
        assert r.auroc == pytest.approx(auroc(-genes["delta_ll"], genes["essential"]))
        variants = pd.read_csv(sweep / "evals" / r.run_id / sid / "variant_effect" / "variants.csv")
        assert r.spearman == pytest.approx(spearmanr(variants["delta_ll"], variants["fitness"]).statistic, abs=1e-6)
    settings = json.loads((sweep / "evals.json").read_text())
    assert settings[sid]["variants"] == 6 and settings[sid]["ess_window"] == 128

    calls.clear()
    assert sw.main([str(sweep), *TINY]) == 0  # nothing new
    assert calls == []
    pd.read_csv(sweep / "evals.csv").iloc[[1]].to_csv(sweep / "evals.csv", index=False)  # a lost row
    assert sw.main([str(sweep), *TINY]) == 0
    assert calls == ["transformer-C1e9-s0"]
    assert sw.main([str(sweep), *TINY[:-2], "--data-dir", str(DATA), "--select", "best"]) == 0
    assert calls == ["transformer-C1e9-s0"]  # the best runs (s0 at 1e9, s1 at... ) are already scored


@needs_data
def test_other_settings_are_scored_as_new_rows(tmp_path):
    sweep = fake_sweep(tmp_path / "sweep", n=1)
    assert sw.main([str(sweep), *TINY]) == 0
    other = [*TINY]
    other[other.index("--variants") + 1] = "7"
    assert sw.main([str(sweep), *other]) == 0
    table = pd.read_csv(sweep / "evals.csv")
    assert len(table) == 2 and table["settings_id"].nunique() == 2 and sorted(table["n_variants"]) == [6, 7]


# ------------------------------------------------------------------------------------------------ training split


def _k12_corpus(root: Path) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in ("e.coli-K12", "other-a", "other-b"):
        seq = "".join("ACGT"[i] for i in rng.integers(0, 4, 3000))
        (root / f"{name}.fasta").write_text(f">{name}_chr\n{seq}\n")
    return root


def test_the_training_split_check_follows_the_runs_holdout_and_split(tmp_path):
    data = _k12_corpus(tmp_path / "data")
    base = {"data_dir": str(data), "val_genomes": 0, "test_genomes": 0}
    assert eval_genome_in_training({**base, "holdout": []}) == ["e.coli-K12"]
    assert eval_genome_in_training({**base, "holdout": ["e.coli-K12"]}) == []
    # With one validation genome the split decides: K-12 trains unless the seeded permutation made it val.
    from dnahnet.data.splits import SplitConfig, assign_splits

    for seed in range(4):
        cfg = {**base, "holdout": [], "val_genomes": 1, "split_seed": seed}
        split = assign_splits({g: [] for g in ("e.coli-K12", "other-a", "other-b")}, SplitConfig(1, 0, (), seed))
        assert eval_genome_in_training(cfg) == (["e.coli-K12"] if split["e.coli-K12"] == "train" else [])


def test_single_checkpoint_clis_warn_once_when_k12_was_trained_on(tmp_path, capsys):
    from dnahnet.evals.cli import warn_if_trained_on_eval_genome

    data = _k12_corpus(tmp_path / "data")
    folder = tmp_path / "export"
    _export(folder, "transformer", 0, {"data_dir": str(data), "holdout": [], "val_genomes": 0, "test_genomes": 0})
    assert training_split_warning(folder) is not None
    warn_if_trained_on_eval_genome(folder)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning:") and "e.coli-K12" in err[0] and "training split" in err[0]
    held = tmp_path / "held"
    _export(held, "transformer", 0, {"data_dir": str(data), "holdout": ["e.coli-K12"], "val_genomes": 0,
                                     "test_genomes": 0})
    assert warn_if_trained_on_eval_genome(held) is None
    assert capsys.readouterr().err == ""


@needs_data
def test_the_sweep_warns_once_and_records_the_runs(tmp_path, capsys):
    data = _k12_corpus(tmp_path / "data")
    sweep = fake_sweep(tmp_path / "sweep", n=2,
                       data={"data_dir": str(data), "holdout": [], "val_genomes": 0, "test_genomes": 0})
    assert sw.main([str(sweep), *TINY]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "E. coli K-12" in warnings[0]
    table = pd.read_csv(sweep / "evals.csv", keep_default_na=False)
    assert (table["eval_genome_in_training"] == "e.coli-K12").all()


# ------------------------------------------------------------------------------------------------ end to end


def _val_loss_of_export(folder: Path, spec) -> float:
    """Mean next-nucleotide NLL of an exported model on the run's fixed validation windows (float64 sum)."""
    import dnahnet
    from dnahnet.data import GenomeDataModule

    model = dnahnet.from_pretrained(folder)
    dm = GenomeDataModule(spec.run_config.data)
    dm.setup()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = model(batch["input_ids"]).logits.double()
            total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(),
                                                             reduction="sum"))
            count += batch["labels"].numel()
    return total / count


@pytest.mark.slow
@needs_data
def test_sweep_exports_evals_and_figures_end_to_end(tmp_path):
    from analysis.__main__ import main as analysis_main
    from sweeps import isoflop
    from sweeps.plan import read_plan
    from sweeps.runner import read_results
    from tests.helpers.synthetic_corpus import markov_corpus

    data = markov_corpus(tmp_path / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    sweeps = {}
    for family in ("transformer", "dnahnet"):
        out = tmp_path / family
        assert isoflop.main(["--model", family, "--budgets", "2e9", "--rules", "cpu-smoke", "--sizes", "3",
                             "--seq-len", "64", "--out", str(out), "--data-dir", str(data), "--no-progress",
                             "--set", f"data.store_dir={tmp_path / 'store'}", "--set", "data.n_val_windows=8",
                             "--set", "train.accelerator=cpu"]) == 0
        sweeps[family] = out
        rows = read_results(out / "results.csv")
        assert rows and all(r["status"] == "ok" for r in rows)
        specs = {s.run_id: s for s in read_plan(out)}
        for r in rows:
            folder = out / "runs" / r["run_id"] / "export"
            assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
            # The export holds the final weights: it scores the loss the run reported.
            assert _val_loss_of_export(folder, specs[r["run_id"]]) == pytest.approx(float(r["val_loss"]), abs=2e-4)

    args = [str(sweeps["transformer"]), str(sweeps["dnahnet"]), "--variants", "20", "--genes", "20",
            "--ess-window", "128", "--boundary-windows", "4", "--boundary-window-len", "256", "--bootstrap", "100",
            "--no-progress", "--data-dir", str(DATA)]
    assert sw.main(args) == 0
    for family, out in sweeps.items():
        table = pd.read_csv(out / "evals.csv")
        assert len(table) == 3 and table["spearman"].notna().all() and table["auroc"].notna().all()
        has_boundaries = table["stage1_codon1"].notna().all() and table["stage2_coding"].notna().all()
        assert has_boundaries == (family == "dnahnet")
    before = {f: (out / "evals.csv").read_text() for f, out in sweeps.items()}
    assert sw.main(args) == 0  # a rerun scores nothing new
    assert {f: (out / "evals.csv").read_text() for f, out in sweeps.items()} == before

    rc = analysis_main(["--results", str(sweeps["transformer"] / "results.csv"),
                        str(sweeps["dnahnet"] / "results.csv"), "--out", str(tmp_path / "analysis"),
                        "--bootstrap", "0", "--quiet"])
    assert rc in (0, 2)  # 2: one budget, no power law; the figures and tables are still written
    figures = tmp_path / "analysis" / "figures"
    assert (figures / "zeroshot.png").is_file() and (figures / "boundaries.png").is_file()
    summary = (tmp_path / "analysis" / "summary.md").read_text()
    assert "Zero-shot evaluations" in summary and "Boundary statistics" in summary
    with open(sweeps["dnahnet"] / "evals.csv") as fh:
        rows = list(csv.DictReader(fh))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert best["run_id"] in summary and f"{float(best['auroc']):.3f}" in summary
    assert not math.isnan(float(best["stage1_codon3"]))


def test_every_evaluation_setting_has_its_flag_and_reaches_the_settings():
    """Each EvalSettings field (what changes a score) is one flag of the command, and the parsed flags build
    the settings the scores are recorded under."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(sw.EvalSettings)]
    assert list(sw.SETTING_FLAGS) == names
    args = sw.build_parser().parse_args(["SWEEP", "--variants", "7", "--ve-flank", "3", "--genes", "5",
                                         "--ess-window", "64", "--boundary-windows", "2", "--boundary-window-len",
                                         "96", "--promoter-span", "10", "--context", "128", "--rc-average",
                                         "--bootstrap", "0", "--seed", "4"])
    settings = sw.EvalSettings(**{name: getattr(args, name) for name in names})
    assert settings == sw.EvalSettings(7, 3, 5, 64, 2, 96, 10, 128, True, 0, 4)
    assert sw.build_parser().parse_args(["SWEEP"]).genes == sw.EvalSettings().genes
