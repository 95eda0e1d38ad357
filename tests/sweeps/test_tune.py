"""The Optuna tuner (sweeps/tune.py, sweeps/optuna_study.py): equal-compute trials, resume, pruning, failures,
shared studies, and the best-configuration file.

Trials train the tiny Transformer on a small random-DNA corpus at 64 nt, a few dozen steps each.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from dnahnet import typed_config as cfglib
from dnahnet.lit import TrainConfig
from dnahnet.model import chunking_stages, stage_multipliers
from dnahnet.registry import build_model_from_config, get_config
from sweeps import optuna_study, tune
from sweeps.ladders import measure

ROOT = Path(__file__).resolve().parents[2]

SEQ_LEN = 64
EVALS = 4
FPT = 708096.0  # tiny Transformer, training FLOPs per token at 64 nt (checked in test_flops_per_token)
BUDGET = 8 * 8 * SEQ_LEN * FPT  # 8 steps at batch 8, 16 at batch 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    """A data directory of 4 random 6-kb genomes (train 2 / val 1 / test 1) and a store directory."""
    root = tmp_path_factory.mktemp("tune_corpus")
    rng = np.random.default_rng(0)
    (root / "data" / "genomes").mkdir(parents=True)
    for g in range(4):
        seq = "".join(rng.choice(list("ACGT"), size=6000))
        lines = "\n".join(seq[i : i + 60] for i in range(0, len(seq), 60))
        (root / "data" / "genomes" / f"g{g}.fna").write_text(f">G{g} random genome {g}\n{lines}\n")
    return {"data": root / "data", "store": root / "store"}


def cli_args(corpus, out: Path, trials: int, *options: str, settings: tuple[str, ...] = ()) -> list[str]:
    return [
        "--model", "transformer", "--preset", "tiny", "--budget", repr(BUDGET), "--trials", str(trials),
        "--out", str(out), "--data-dir", str(corpus["data"]), "--seq-len", str(SEQ_LEN), "--evals", str(EVALS),
        "--batch-sizes", "4", "8", "--lr", "3e-3", "2e-2", "--warmup", "0.0", "0.1", "--no-progress",
        *options, "--", "data.n_val_windows=4", f"data.store_dir={corpus['store']}", *settings,
    ]


def load(out: Path) -> optuna.Study:
    (name,) = optuna.get_all_study_names(storage=f"sqlite:///{out / 'study.db'}")
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'study.db'}")


# ----------------------------------------------------------------------------------- unit checks
def test_flops_per_token_and_plan_steps():
    cfg = get_config("transformer", "tiny")
    assert measure("transformer", cfg, SEQ_LEN).flops_per_token == FPT
    assert build_model_from_config("transformer", cfg).flops_per_token(SEQ_LEN).training == FPT  # real build
    # steps = budget / (FLOPs/token x tokens/step), a multiple of the validations; (steps, global batch)
    assert optuna_study.plan_steps(BUDGET, FPT, 8, SEQ_LEN, EVALS) == (8, 8)
    assert optuna_study.plan_steps(BUDGET, FPT, 4, SEQ_LEN, EVALS) == (16, 4)
    # 12.8 steps at batch 5: 12 would spend 6% less than the budget, 16 25% more; the planner's rule moves
    # the batch instead (to 4: 16 steps, exact).
    assert optuna_study.plan_steps(BUDGET, FPT, 5, SEQ_LEN, EVALS) == (16, 4)
    assert optuna_study.plan_steps(1e12, 1e6, 1, 1000, 3) == (999, 1)  # 1000 -> nearest multiple of 3 (0.1% off)
    with pytest.raises(ValueError, match="--budget"):
        optuna_study.plan_steps(BUDGET, FPT, 8, SEQ_LEN, evals=9)


@pytest.mark.parametrize("world", [1, 2])
def test_plan_steps_spends_the_budget_within_two_percent(world):
    """Every trial spends the same compute: |planned / budget - 1| <= 2% (the planner's guarantee), with
    steps a multiple of the validations and the batch a multiple of the world size."""
    checked = 0
    for budget_steps in np.geomspace(EVALS, 400, 60):
        for batch in range(world, 33, world):
            budget = budget_steps * 8 * SEQ_LEN * FPT
            try:
                steps, new_batch = optuna_study.plan_steps(budget, FPT, batch, SEQ_LEN, EVALS, world)
            except ValueError as exc:  # too few steps for this batch, or no batch nearby lands within 2%
                assert "--budget" in str(exc)
                continue
            checked += 1
            assert steps % EVALS == 0 and new_batch % world == 0 and 0.75 * batch - world <= new_batch <= 4 * batch / 3
            assert abs(steps * new_batch * SEQ_LEN * FPT / budget - 1) <= 0.02, (budget_steps, batch, steps, new_batch)
    assert checked > 500


def test_dnahnet_multipliers_reach_the_model():
    assert stage_multipliers(2.0, 0.5, 2) == [2.0, 1.5, 1.0]  # the paper's (2.0, 1.5, 1.0)
    assert stage_multipliers(4.0, 0.5, 3) == [4.0, 2.5, 1.75, 1.0]
    assert stage_multipliers(1.0, 0.3, 2) == [1.0, 1.0, 1.0]
    for variant, stages in (("3,2", 2), ("3", 1), (None, 2)):
        base = get_config("dnahnet", "tiny", variant)
        assert chunking_stages(base) == stages
        params = {"lr": 1e-3, "warmup_fraction": 0.05, "weight_decay": 0.1, "batch_size": 8, "alpha": 0.01,
                  "lr_outer": 3.0, "lr_decay": 0.5}
        over = optuna_study.overrides_from_params(params, "dnahnet", base)
        assert over["model"]["lr_multipliers"] == ([3.0, 2.0, 1.0] if stages == 2 else [3.0, 1.0])
        cfg = cfglib.replace(base, **over["model"])
        with torch.device("meta"):
            model = build_model_from_config("dnahnet", cfg)
        assert model.config.alpha == 0.01
        assert set(model.lr_multipliers().values()) <= set(over["model"]["lr_multipliers"])
        assert max(model.lr_multipliers().values()) == 3.0  # the outermost stage (and embeddings)


def _suggest_as_stored_studies_drew(trial: optuna.Trial, space: optuna_study.SearchSpace, family: str, stages: int):
    """The tuner's draws as studies stored before families registered their search dimensions made them
    (written out by hand): names, ranges, log scales and order of the `suggest_*` calls."""
    trial.suggest_float("lr", *space.lr, log=True)
    trial.suggest_float("warmup_fraction", *space.warmup_fraction)
    trial.suggest_float("weight_decay", *space.weight_decay)
    trial.suggest_categorical("batch_size", list(space.batch_size))
    if family == "dnahnet":
        trial.suggest_float("alpha", *space.alpha, log=True)
        trial.suggest_float("lr_outer", *space.lr_outer, log=True)
        if stages >= 2:
            trial.suggest_float("lr_decay", *space.lr_decay)
    return dict(trial.params)


@pytest.mark.parametrize("family, variant, stages", [("dnahnet", "3,2", 2), ("dnahnet", "3", 1),
                                                     ("transformer", None, 0)])
def test_seeded_draws_and_overrides_are_those_of_stored_studies(family, variant, stages):
    """Seeded TPE draws the same trials (names, distributions, order) as the tuner before the families' search
    dimensions were registered data, and a trial's values give the same overrides."""
    space = optuna_study.SearchSpace(alpha=(0.005, 0.04))  # a command-line range replaces the default

    def trials(suggest) -> list[optuna.trial.FrozenTrial]:
        study = optuna.create_study(sampler=optuna_study.TrialSeededTPESampler(seed=3, n_startup_trials=2))
        study.optimize(lambda t: suggest(t)["lr"], n_trials=4)  # past the startup: TPE's own draws too
        return study.trials

    base = get_config(family, "tiny", variant)
    now = trials(lambda t: optuna_study.suggest(t, space, family, base))
    before = trials(lambda t: _suggest_as_stored_studies_drew(t, space, family, stages))
    assert [t.params for t in now] == [t.params for t in before]
    assert [t.distributions for t in now] == [t.distributions for t in before]
    for t in now:
        over = optuna_study.overrides_from_params(t.params, family, base)
        if family == "dnahnet":
            assert 0.005 <= t.params["alpha"] <= 0.04 and ("lr_decay" in t.params) == (stages == 2)
            assert over["model"] == {"alpha": t.params["alpha"], "lr_multipliers": stage_multipliers(
                t.params["lr_outer"], t.params.get("lr_decay", 1.0), stages)}
        else:
            assert over["model"] == {}


def test_trial_seeded_sampler_is_reproducible_and_distinct():
    def draws(n: int, seed: int) -> list[dict]:
        study = optuna.create_study(sampler=optuna_study.TrialSeededTPESampler(seed=seed, n_startup_trials=10))
        study.optimize(lambda t: optuna_study.suggest(t, optuna_study.SearchSpace(), "dnahnet", get_config("dnahnet"))["lr"], n_trials=n)
        return [t.params for t in study.trials]

    first, again = draws(3, seed=0), draws(3, seed=0)
    assert first == again  # reproducible
    assert len({p["lr"] for p in first}) == 3  # distinct trials
    assert draws(1, seed=1)[0] != first[0]
    # a fresh process continuing a study draws what one uninterrupted process would have drawn
    study = optuna.create_study(sampler=optuna_study.TrialSeededTPESampler(seed=0, n_startup_trials=10))
    study.optimize(lambda t: optuna_study.suggest(t, optuna_study.SearchSpace(), "dnahnet", get_config("dnahnet"))["lr"], n_trials=2)
    study.sampler = optuna_study.TrialSeededTPESampler(seed=0, n_startup_trials=10)
    study.optimize(lambda t: optuna_study.suggest(t, optuna_study.SearchSpace(), "dnahnet", get_config("dnahnet"))["lr"], n_trials=1)
    assert study.trials[2].params == first[2]


def test_cli_errors_name_the_argument(corpus, tmp_path, capsys):
    assert tune.main(cli_args(corpus, tmp_path / "a", 1, "--budget", "1e6")) == 2
    assert "--budget" in capsys.readouterr().err
    assert tune.main(cli_args(corpus, tmp_path / "b", 1, settings=("train.max_steps=5",))) == 2
    assert "train.max_steps" in capsys.readouterr().err
    assert tune.main(cli_args(corpus, tmp_path / "c", 1, "--batch-sizes", "0")) == 2
    assert "--batch-sizes" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written before the error


# ----------------------------------------------------------------------------------- one study, resumed
@pytest.fixture(scope="module")
def resumed_study(corpus, tmp_path_factory):
    """Run 2 trials; enqueue an absurd learning rate and rerun with --trials 3; rerun once more."""
    out = tmp_path_factory.mktemp("tune") / "study"
    snapshots = {}
    assert tune.main(cli_args(corpus, out, 2)) == 0
    snapshots["first"] = [t.state for t in load(out).trials]
    # lr = 1e-7 (far below the searched range) cannot learn in the budget: the pruner must stop it
    load(out).enqueue_trial({"lr": 1e-7, "warmup_fraction": 0.0, "weight_decay": 0.1, "batch_size": 4})
    assert tune.main(cli_args(corpus, out, 3)) == 0
    snapshots["second"] = [t.state for t in load(out).trials]
    assert tune.main(cli_args(corpus, out, 3)) == 0  # the study is full: nothing more to run
    return out, snapshots


def test_rerun_continues_the_study(resumed_study):
    out, snapshots = resumed_study
    # the pruner waits for 2 finished trials, so both complete
    assert snapshots["first"] == [TrialState.COMPLETE] * 2
    assert len(snapshots["second"]) == 3 and snapshots["second"][:2] == snapshots["first"]
    study = load(out)
    assert [t.number for t in study.trials] == [0, 1, 2]  # the third run added nothing


def test_every_trial_spends_the_budget(resumed_study):
    out, _ = resumed_study
    for t in load(out).trials:
        if t.state != TrialState.COMPLETE:
            continue
        result = json.loads((out / "trials" / f"trial_{t.number}" / "result.json").read_text())
        batch = t.params["batch_size"]
        assert result["steps"] == {4: 16, 8: 8}[batch]
        assert result["tokens"] == result["steps"] * batch * SEQ_LEN  # counted by the training loop
        assert math.isclose(result["flops_planned"], BUDGET, rel_tol=1e-9)
        assert math.isclose(t.value, result["val_loss"])
        # validations 1..3 (of 4) are reported at their index; the last one is the trial's value
        assert sorted(t.intermediate_values) == [1, 2, 3]
        metrics = (out / "trials" / f"trial_{t.number}" / "metrics.csv").read_text().splitlines()
        header = metrics[0].split(",")
        vals = [float(r.split(",")[header.index("val/loss")]) for r in metrics[1:]
                if r.split(",")[header.index("val/loss")]]
        assert np.allclose(vals[:3], [t.intermediate_values[k] for k in (1, 2, 3)], rtol=1e-6)


def test_absurd_learning_rate_is_pruned(resumed_study):
    out, _ = resumed_study
    study = load(out)
    bad = study.trials[2]
    assert bad.params["lr"] == 1e-7
    assert bad.state == TrialState.PRUNED
    assert 2 <= max(bad.intermediate_values) < EVALS  # from --prune-from 2 on, before the end
    good = [t for t in study.trials if t.state == TrialState.COMPLETE]
    step = max(bad.intermediate_values)
    median = float(np.median([t.intermediate_values[step] for t in good]))
    assert bad.intermediate_values[step] > median  # the median rule, recomputed
    assert not (out / "trials" / "trial_2" / "result.json").exists()
    assert not (out / "trials" / "trial_2" / "checkpoints").exists()  # a pruned run is not kept for resuming


def test_outputs(resumed_study):
    out, _ = resumed_study
    study = load(out)
    best = study.best_trial
    text = (out / "best_overrides.yaml").read_text()
    assert f"trial {best.number}" in text
    data = yaml.safe_load(text)
    assert data["train"] == {k: best.params[k] for k in ("lr", "warmup_fraction", "weight_decay")}
    assert data["data"] == {"batch_size": best.params["batch_size"]}
    # the overrides apply to the configs as the tuner applied them
    cfglib.replace(cfglib.from_dict(TrainConfig, {}), **data["train"])
    csv = (out / "trials.csv").read_text().splitlines()
    assert len(csv) == 1 + 3 and csv[0].startswith("number,state,value")
    for name in ("history.png", "intermediate.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_isoflop_accepts_best_overrides(resumed_study, tmp_path):
    isoflop = ROOT / "sweeps" / "isoflop.py"
    out, _ = resumed_study
    plan_dir = tmp_path / "plan"
    proc = subprocess.run(
        [sys.executable, str(isoflop), "--model", "transformer", "--ladder", "cpu-smoke", "--out", str(plan_dir),
         "--overrides", str(out / "best_overrides.yaml"), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (plan_dir / "plan.csv").is_file()
    best = yaml.safe_load((out / "best_overrides.yaml").read_text())
    runs = json.loads((plan_dir / "plan.json").read_text())["runs"]
    assert runs
    for run in runs:  # every planned run carries the tuned values
        assert run["train"]["lr"] == best["train"]["lr"]
        assert run["train"]["warmup_fraction"] == best["train"]["warmup_fraction"]
        assert run["train"]["weight_decay"] == best["train"]["weight_decay"]
        assert run["data"]["batch_size"] == best["data"]["batch_size"]


# ----------------------------------------------------------------------------------- failures
def two_step_spec(corpus) -> optuna_study.TuneSpec:
    """A study of short trials (two validations, batch 8) on the test corpus."""
    return optuna_study.TuneSpec("transformer", "tiny", None, BUDGET / 2, evals=2,
                           space=optuna_study.SearchSpace(batch_size=(8,), lr=(3e-3, 2e-2)),
                           base={"model": {}, "train": {}, "data": {
                               "seq_len": SEQ_LEN, "n_val_windows": 2, "data_dir": str(corpus["data"]),
                               "store_dir": str(corpus["store"])}})


def test_a_diverged_trial_fails_and_the_study_goes_on(corpus, tmp_path):
    """The training loop raises FloatingPointError on a NaN loss; here trial 1's run diverges."""
    spec = two_step_spec(corpus)
    calls = []

    def train_fn(*args, **kwargs):
        calls.append(Path(args[1]).name)
        if len(calls) == 2:
            raise FloatingPointError("non-finite training loss nan at step 3")
        return optuna_study.train_run(*args, **kwargs)

    study = optuna_study.open_study(spec, f"sqlite:///{tmp_path / 'study.db'}", "nan", pruner="none")
    optuna_study.optimize(study, optuna_study.make_objective(spec, tmp_path, progress=False, train_fn=train_fn), n_trials=3)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert "FloatingPointError" in study.trials[1].user_attrs["error"]
    assert calls == ["trial_0", "trial_1", "trial_2"]
    assert len(optuna_study.finished_trials(study)) == 3  # the failure counts toward --trials
    with pytest.raises(ValueError, match="budget"):  # the same study for another budget is refused
        optuna_study.open_study(optuna_study.TuneSpec(**{**spec.__dict__, "budget": BUDGET}),
                          f"sqlite:///{tmp_path / 'study.db'}", "nan")


def test_an_interrupted_trial_is_queued_again_in_its_run_directory(corpus, tmp_path):
    spec = two_step_spec(corpus)
    study = optuna_study.open_study(spec, f"sqlite:///{tmp_path / 'study.db'}", "ctrl-c", pruner="none")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        optuna_study.optimize(study, optuna_study.make_objective(spec, tmp_path, progress=False, train_fn=interrupted), 1)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert len(optuna_study.finished_trials(study)) == 0
    dirs = []

    def record(*args, **kwargs):
        dirs.append(Path(args[1]).name)
        return optuna_study.train_run(*args, **kwargs)

    optuna_study.optimize(study, optuna_study.make_objective(spec, tmp_path, progress=False, train_fn=record), 1)
    first, retry = study.trials
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert dirs == ["trial_0"] and (tmp_path / "trials" / "trial_0" / "result.json").exists()


# ----------------------------------------------------------------------------------- two workers
@pytest.mark.slow
def test_two_workers_share_one_study(corpus, tmp_path):
    out = tmp_path / "shared"
    cmd = [sys.executable, str(ROOT / "sweeps" / "tune.py"), *cli_args(corpus, out, 4, "--pruner", "none")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    for w, log in zip(workers, logs, strict=True):
        assert w.returncode == 0, log[-3000:]
    study = load(out)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert 4 <= len(done) <= 5  # each worker stops once the study holds 4; one may be mid-trial then
    assert len({t.number for t in done}) == len(done)
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both workers ran trials
    assert len({json.dumps(t.params, sort_keys=True) for t in done}) == len(done)  # distinct configurations
    for t in done:
        assert (out / "trials" / f"trial_{t.number}" / "result.json").exists()


@pytest.mark.slow
def test_a_dead_workers_trial_is_retried_and_resumes_its_run(corpus, tmp_path, caplog):
    out = tmp_path / "crash"
    # 96 steps at batch 4 with a checkpoint every 8: long enough that the worker is killed mid-trial
    # even on an idle machine (with 24 steps it could finish before the first stable checkpoint).
    budget = 96 * 4 * SEQ_LEN * FPT
    args = cli_args(corpus, out, 1, "--batch-sizes", "4", "--budget", repr(budget), "--heartbeat", "1",
                    "--pruner", "none", settings=("train.ckpt_every=8",))
    worker = subprocess.Popen([sys.executable, str(ROOT / "sweeps" / "tune.py"), *args], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    ckpt = out / "trials" / "trial_0" / "checkpoints" / "last.ckpt"
    deadline, sizes = time.monotonic() + 300, []
    try:
        while len(sizes) < 3 or sizes[-1] != sizes[-3] or not sizes[-1]:  # written, and not being written
            assert worker.poll() is None, "the worker ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            sizes.append(ckpt.stat().st_size if ckpt.exists() else 0)
            time.sleep(0.05)
    finally:
        worker.kill()  # the worker dies mid-trial, as on a preempted node
        worker.wait()
    assert not (out / "trials" / "trial_0" / "result.json").exists()
    time.sleep(4)  # more than 3 missed heartbeats: the trial is stale
    with caplog.at_level(logging.INFO, logger="dnahnet.train"):
        assert tune.main(args) == 0
    study = load(out)
    dead, retry = study.trials
    assert dead.state == TrialState.FAIL and "error" not in dead.user_attrs  # not counted as a trial
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.system_attrs["failed_trial"] == 0
    assert "resuming" in caplog.text and "trial_0" in caplog.text  # from the dead trial's checkpoint
    result = json.loads((out / "trials" / "trial_0" / "result.json").read_text())
    assert result["steps"] == 96 and result["tokens"] == 96 * 4 * SEQ_LEN  # counters survived the crash
    assert not (out / "trials" / "trial_1").exists()


def test_stripedhyena_trials_build_their_mr_decay_over_the_trials_context():
    spec = optuna_study.TuneSpec("stripedhyena", "tiny", None, 1e9, base={"model": {}, "train": {}, "data": {"seq_len": 96}})
    run = spec.configs()
    assert run.model.l_train == run.data.seq_len == run.seq_len == 96
    explicit = optuna_study.TuneSpec("stripedhyena", "tiny", None, 1e9,
                               base={"model": {"l_train": 500}, "train": {}, "data": {"seq_len": 96}})
    assert explicit.configs().model.l_train == 500



def test_the_logged_batch_is_the_trained_one_when_the_budget_moves_it(corpus, tmp_path, caplog):
    """A budget of 8 steps x 7 windows with --batch-sizes 8: the planner moves the batch to 7 to spend it;
    the trial's log line, best_overrides.yaml and the run's config all say 7 (the sampler's 8 is named as
    the suggestion)."""
    import logging

    budget = 8 * 7 * SEQ_LEN * FPT
    args = cli_args(corpus, tmp_path / "tune", 1)
    args[args.index("--budget") + 1] = repr(budget)
    i = args.index("--batch-sizes")
    args[i + 1 : i + 3] = ["8"]
    with caplog.at_level(logging.INFO, logger="sweeps.optuna_study"):
        assert tune.main(args) == 0
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("trial 0:")]
    assert "'batch_size': 7" in line and "suggested 8" in line, line
    assert yaml.safe_load((tmp_path / "tune" / "best_overrides.yaml").read_text())["data"] == {"batch_size": 7}
    config = yaml.safe_load((tmp_path / "tune" / "trials" / "trial_0" / "config.yaml").read_text())
    assert config["data"]["batch_size"] == 7


# ----------------------------------------------------------------------------------- signals
def test_sigterm_between_trials_stops_the_study_before_the_next_trial(corpus, tmp_path, monkeypatch, capsys):
    """The SIGTERM lands as trial 0's run returns (the moment issue 25's probe hit: the old handler raised
    inside a SQLAlchemy GC callback, the exception was lost and trial 1 ran). The handler only sets a flag;
    the tuner reads it before trial 1 starts: exit 143, one trial, a message saying where and how to go on."""
    import signal

    from dnahnet.train import RunResult

    calls = []

    def one_run_then_sigterm(run, run_dir, **kwargs):
        calls.append(Path(run_dir).name)
        os.kill(os.getpid(), signal.SIGTERM)  # delivered now, in this (the main) thread
        return RunResult("ok", 1.3, 1.9, 1000, 1e9, 1e9, 100, 50, run.train.max_steps, 1.0)

    monkeypatch.setattr(optuna_study, "train_run", one_run_then_sigterm)
    before = signal.getsignal(signal.SIGTERM)
    code = tune.main(cli_args(corpus, tmp_path / "study", 3))
    err = capsys.readouterr().err
    assert code == 143, err[-2000:]
    assert calls == ["trial_0"]  # trial 1 never started
    assert "stopped by SIGTERM between trials" in err and "rerun the same command to continue" in err
    assert "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before  # the tuner's handler is gone with the command
    study = load(tmp_path / "study")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]


def test_sigterm_inside_a_trial_stops_at_a_step_and_the_rerun_trains_it_again(corpus, tmp_path, capsys):
    """SIGTERM at step 2 of trial 0: training stops at the step boundary, the trial is queued again, and the
    rerun trains it in the same run directory (no second trial directory)."""
    import signal

    from lightning.pytorch.callbacks import Callback

    class SigtermAtStep2(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    spec = two_step_spec(corpus)
    study = optuna_study.open_study(spec, f"sqlite:///{tmp_path / 'study.db'}", "sigterm", pruner="none")
    dirs = []

    def train_fn(*args, callbacks=(), **kwargs):
        dirs.append(Path(args[1]).name)
        extra = [SigtermAtStep2()] if len(dirs) == 1 else []
        return optuna_study.train_run(*args, callbacks=[*callbacks, *extra], **kwargs)

    with optuna_study.STOP.installed(), pytest.raises(optuna_study.TuneStopped, match="SIGTERM at step 2"):
        optuna_study.optimize(study, optuna_study.make_objective(spec, tmp_path, progress=False, train_fn=train_fn), 1)
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert not (tmp_path / "trials" / "trial_0" / "result.json").exists()
    with optuna_study.STOP.installed():
        optuna_study.optimize(study, optuna_study.make_objective(spec, tmp_path, progress=False, train_fn=train_fn), 1)
    assert dirs == ["trial_0", "trial_0"] and study.trials[1].state == TrialState.COMPLETE
    assert (tmp_path / "trials" / "trial_0" / "result.json").exists()


def test_a_study_is_reopened_under_the_one_identity_rule_of_runs_and_sweeps(corpus, tmp_path):
    """The tuner refuses what a single run or a sweep refuses, naming the key: a changed data setting and
    other genomes under the data directory; the same genomes under another path are the same study."""
    import shutil

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    spec = two_step_spec(corpus)
    optuna_study.open_study(spec, storage, "same", pruner="none")
    with_base = lambda data: optuna_study.TuneSpec(**{**spec.__dict__, "base": {**spec.base, "data": {**spec.base["data"], **data}}})
    with pytest.raises(ValueError, match=r"data\.rc_prob"):
        optuna_study.open_study(with_base({"rc_prob": 0.0}), storage, "same")
    moved = tmp_path / "moved"
    shutil.copytree(corpus["data"], moved)
    optuna_study.open_study(with_base({"data_dir": str(moved)}), storage, "same")  # paths may differ between workers
    genome = moved / "genomes" / "g0.fna"
    genome.write_text(genome.read_text().replace("A", "C", 50))
    with pytest.raises(ValueError, match="data_key"):
        optuna_study.open_study(with_base({"data_dir": str(moved)}), storage, "same")
    # A study stored before `run` existed is compared by its fixed settings as given.
    legacy = {k: v for k, v in spec.identity().items() if k != "run"}
    assert optuna_study.identity_differences(legacy, spec.identity()) == []
    assert optuna_study.identity_differences(legacy, with_base({"rc_prob": 0.0}).identity())
