"""Run planning: budgets -> steps/batch within 2%, overrides (file and --set), run ids, plan files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from dnahnet.run_config import Overrides, steps_for_budget
from sweeps import ladders as lad
from sweeps.plan import (
    budget_tag,
    format_table,
    load_overrides,
    make_run_id,
    plan_family,
    read_plan,
    write_plan,
)

REPO = Path(__file__).resolve().parents[2]
SMOKE = lad.get_ladder("cpu-smoke")


def test_run_ids_are_stable_and_readable():
    assert budget_tag(1e13) == "1e13" and budget_tag(2.5e13) == "2.5e13" and budget_tag(4e18) == "4e18"
    assert make_run_id("dnahnet", "3,2", 4e18, "d512x12") == "dnahnet-v3.2-C4e18-d512x12"
    assert make_run_id("transformer", None, 1e12, "d16x2") == "transformer-C1e12-d16x2"
    a = [s.run_id for s in plan_family("transformer", None, SMOKE)]
    b = [s.run_id for s in plan_family("transformer", None, SMOKE)]
    assert a == b and len(set(a)) == len(a)


@pytest.mark.parametrize("tokens", [1e4, 3.3e5, 7.77e6, 123456.0])
def test_rounding_stays_within_two_percent(tokens):
    for batch in (1, 3, 8, 64):
        for world in (1, 2):
            b = max(world, batch // world * world)
            if tokens / (b * 64) < 1:
                continue
            spent = steps_for_budget(tokens, 1.0, b, 64, world)  # 1 FLOP per token: the budget is the tokens
            steps, new_batch, err = spent.steps, spent.batch, spent.error
            assert new_batch % world == 0
            assert err == pytest.approx(abs(steps * new_batch * 64 - tokens) / tokens)
            if tokens / (b * 64) >= 25:  # enough steps: the guarantee holds
                assert err <= 0.02


def test_odd_budgets_still_land_within_two_percent():
    ladder = lad.custom_ladder([3.7e11, 1.234e12], base="cpu-smoke")
    for s in plan_family("transformer", None, ladder, devices=2):
        assert abs(s.flops / s.budget - 1) <= 0.02
        assert s.batch % 2 == 0 and s.batch_per_device * 2 == s.batch
        assert s.data["batch_size"] == s.batch_per_device and s.train["devices"] == 2


def test_override_file_and_set(tmp_path):
    f = tmp_path / "best.yaml"
    f.write_text("# from the tuner\ntrain:\n  lr_scale: 0.5\n  warmup_fraction: 0.05\nmodel:\n  rotary_base: 5000\n")
    ov = load_overrides(f, ["train.weight_decay=0.05", "train.lr_scale=0.25"])
    assert ov.train == {"lr_scale": "0.25", "warmup_fraction": 0.05, "weight_decay": "0.05"}  # --set wins
    base = {s.run_id: s for s in plan_family("transformer", None, SMOKE)}
    specs = plan_family("transformer", None, SMOKE, ov)
    for s in specs:
        assert s.lr == pytest.approx(base[s.run_id].lr * 0.25)  # the rule, scaled
        assert s.train["weight_decay"] == 0.05 and s.train["warmup_fraction"] == 0.05  # typed, not strings
        assert s.model["rotary_base"] == 5000.0
        train_cfg = s.run_config.train
        assert train_cfg.lr == s.lr and train_cfg.max_steps == s.steps


def test_tuner_style_overrides_fix_lr_and_batch(tmp_path):
    """sweeps/tune.py writes absolute train.lr and a per-device data.batch_size."""
    f = tmp_path / "best.yaml"
    f.write_text("train:\n  lr: 0.002\ndata:\n  batch_size: 4\n")
    for s in plan_family("transformer", None, SMOKE, load_overrides(f)):
        assert s.lr == 0.002
        assert 3 <= s.batch <= 5  # 4, moved (within 0.75x-1.33x) only if rounding needs it
        assert abs(s.flops / s.budget - 1) <= 0.02


def test_bad_overrides_name_their_source(tmp_path):
    f = tmp_path / "o.yaml"
    f.write_text("optim:\n  lr: 1\n")
    with pytest.raises(ValueError, match=r"o\.yaml.*unknown section 'optim'"):
        load_overrides(f)
    f.write_text("train: [1, 2]\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        load_overrides(f)
    with pytest.raises(ValueError, match="no such file"):
        load_overrides(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="max_steps cannot be overridden"):
        load_overrides(None, ["train.max_steps=10"])
    with pytest.raises(ValueError, match="use --seq-len"):
        load_overrides(None, ["data.seq_len=10"])
    with pytest.raises(ValueError, match="section.KEY=VALUE"):
        load_overrides(None, ["lr=1"])
    with pytest.raises(ValueError, match=r"--set: train\.nonsense"):
        plan_family("transformer", None, SMOKE, load_overrides(None, ["train.nonsense=1"]))
    f.write_text("train:\n  beta1: fast\n")
    with pytest.raises(ValueError, match=r"o\.yaml: train\.beta1"):
        plan_family("transformer", None, SMOKE, load_overrides(f))
    with pytest.raises(ValueError, match="lr_scale must be > 0"):
        plan_family("transformer", None, SMOKE, load_overrides(None, ["train.lr_scale=-1"]))


def test_plan_files_round_trip(tmp_path):
    specs = plan_family("transformer", None, SMOKE, Overrides())
    csv_path, json_path = write_plan(specs, tmp_path)
    table = pd.read_csv(csv_path)
    for col in ("family", "variant", "budget", "params", "tokens", "flops", "steps", "batch", "lr",
                "tokens_per_param", "seq_len", "run_id", "model_overrides"):
        assert col in table.columns
    assert len(table) == len(specs)
    assert json.loads(table.loc[0, "model_overrides"]) == specs[0].model
    back = read_plan(tmp_path)
    assert [b.to_json() for b in back] == [s.to_json() for s in specs]
    text = format_table(specs)
    assert specs[0].run_id in text and "flops/C" in text


def test_cli_dry_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "sweeps/isoflop.py", "--model", "transformer", "--budgets", "2e11,5e11", "--rules",
         "cpu-smoke", "--out", str(out), "--dry-run", "--set", "train.lr_scale=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_csv(out / "plan.csv")
    assert sorted(set(table["budget"])) == [2e11, 5e11]
    assert "transformer-C2e11-" in proc.stdout and "flops/C" in proc.stdout
    assert not (out / "runs").exists() and not (out / "results.csv").exists()  # nothing trained
    from sweeps.isoflop import main

    capsys.readouterr()
    assert main(["--model", "transformer", "--budgets", "1e12,x", "--out", str(out), "--dry-run"]) == 2
    assert "error: --budgets: 'x' is not a number" in capsys.readouterr().err
    assert main(["--model", "transformer", "--variant", "3,2", "--out", str(out), "--dry-run"]) == 2
    assert "has variants (none)" in capsys.readouterr().err


@pytest.mark.slow
def test_device_memory_budget_splits_the_per_device_batch():
    """--device-memory-gb: each run's per-device batch becomes micro-batch x accumulation (the same tokens
    per step, so the same FLOPs), with the planner's estimate within the budget."""
    free = plan_family("transformer", None, SMOKE)
    base = free[0]
    from dnahnet.registry import get_config
    from sweeps.memory import plan_micro_batch

    cfg = get_config(base.family, base.preset, base.variant, **base.model)
    full = plan_micro_batch(base.family, cfg, base.params, base.seq_len, base.batch_per_device, 1e3)
    # A budget for about half the per-device batch's activations.
    budget = full.estimate_gb * 0.6
    tight = plan_family("transformer", None, SMOKE, device_memory_gb=budget)
    spec = next(s for s in tight if s.run_id == base.run_id)
    assert spec.steps == base.steps and spec.batch == base.batch
    micro, accumulate = spec.data["batch_size"], spec.train["accumulate_grad_batches"]
    assert micro * accumulate == base.batch_per_device and accumulate > 1
    assert "accumulate_grad_batches" not in base.train  # unchanged without a budget


def test_a_dry_run_with_other_budgets_keeps_the_sweeps_plan(tmp_path, capsys):
    """A dry run into a sweep directory whose plan differs (other budgets) refuses, naming plan.csv, and
    leaves plan.csv and plan.json as they were; the same plan dry-runs again."""
    from sweeps.isoflop import main

    out = tmp_path / "sweep"
    base = ["--model", "transformer", "--rules", "cpu-smoke", "--out", str(out), "--dry-run"]
    assert main([*base, "--budgets", "2e11,5e11"]) == 0
    before = {name: (out / name).read_bytes() for name in ("plan.csv", "plan.json")}
    capsys.readouterr()
    assert main([*base, "--budgets", "1e12"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and str(out / "plan.csv") in err and "another --out" in err, err
    assert {name: (out / name).read_bytes() for name in before} == before
    assert main([*base, "--budgets", "2e11,5e11"]) == 0  # the same plan: shown again
    assert main([*base[:-2], str(tmp_path / "other"), "--dry-run", "--budgets", "1e12"]) == 0


def test_seed_replicas_change_only_the_seeds_and_keep_the_validation_windows():
    from sweeps.plan import with_seed_replicas

    specs = plan_family("transformer", None, SMOKE)
    budgets = sorted({s.budget for s in specs})
    out = with_seed_replicas(specs, 3, [budgets[0]])
    replicas = [s for s in out if s.seed > 0]
    originals = {s.run_id: s for s in specs}
    assert out[: len(specs)] == specs  # the ladder's runs first, unchanged
    assert len(replicas) == 2 * sum(s.budget == budgets[0] for s in specs)
    for r in replicas:
        base = originals[r.run_id.rsplit("-s", 1)[0]]
        assert r.run_id == f"{base.run_id}-s{r.seed}" and r.budget == budgets[0]
        assert r.train["seed"] == base.train.get("seed", 0) + r.seed and r.data["seed"] == base.data.get("seed", 0) + r.seed
        assert r.data.get("split_seed") == base.data.get("split_seed")  # the same validation windows
        same = {k: v for k, v in r.to_json().items() if k not in ("run_id", "seed", "train", "data")}
        assert same == {k: v for k, v in base.to_json().items() if k not in ("run_id", "seed", "train", "data")}
        assert {k: v for k, v in r.train.items() if k != "seed"} == {k: v for k, v in base.train.items() if k != "seed"}
    assert with_seed_replicas(specs, 1) == specs
    assert len(with_seed_replicas(specs, 2)) == 2 * len(specs)  # every budget without --seed-budgets
    with pytest.raises(ValueError, match="--seed-budgets: 3e12 not among"):
        with_seed_replicas(specs, 2, [3e12])


def test_cli_seeds_plan_replicas_and_refuse_bad_values(tmp_path, capsys):
    from sweeps.isoflop import main

    out = tmp_path / "sweep"
    assert main(["--model", "transformer", "--ladder", "cpu-smoke", "--seeds", "2", "--seed-budgets", "2.5e10",
                 "--out", str(out), "--dry-run"]) == 0
    table = pd.read_csv(out / "plan.csv")
    replicas = table[table["seed"] == 1]
    assert len(replicas) == (table["budget"] == 2.5e10).sum() / 2 and set(replicas["budget"]) == {2.5e10}
    assert all(r.endswith("-s1") for r in replicas["run_id"])
    capsys.readouterr()
    assert main(["--model", "transformer", "--ladder", "cpu-smoke", "--seeds", "0", "--out", str(tmp_path / "b"),
                 "--dry-run"]) == 2
    assert "error: --seeds must be >= 1" in capsys.readouterr().err
    assert main(["--model", "transformer", "--ladder", "cpu-smoke", "--seed-budgets", "2.5e10", "--out",
                 str(tmp_path / "c"), "--dry-run"]) == 2
    assert "error: --seed-budgets needs --seeds 2" in capsys.readouterr().err


def test_lr_sweep_plans_one_size_with_each_rate_and_multiplier_set():
    from sweeps import lr_sweep

    parse = lambda text: lr_sweep.plan(lr_sweep.build_parser().parse_args(text.split()))
    specs = parse("--model dnahnet --ladder cpu-smoke --budget 5e10 --lrs 1e-3,4e-3 --lr-multipliers 2,1.5,1 "
                  "--lr-multipliers 1,1,1 --out unused")
    ladder_specs = plan_family("dnahnet", "3,2", lad.custom_ladder([5e10], base="cpu-smoke"))
    middle = ladder_specs[len(ladder_specs) // 2]
    assert [(s.lr, s.model["lr_multipliers"]) for s in specs] == [
        (1e-3, [2.0, 1.5, 1.0]), (4e-3, [2.0, 1.5, 1.0]), (1e-3, [1.0, 1.0, 1.0]), (4e-3, [1.0, 1.0, 1.0])]
    for s in specs:
        assert s.train["lr"] == s.lr and s.run_id.startswith(middle.run_id + "-lr")
        assert (s.size, s.steps, s.batch, s.data) == (middle.size, middle.steps, middle.batch, middle.data)
        assert {k: v for k, v in s.model.items() if k != "lr_multipliers"} == middle.model
    assert len({s.run_id for s in specs}) == 4
    with pytest.raises(ValueError, match="transformer has no per-stage"):
        parse("--model transformer --ladder cpu-smoke --budget 5e10 --lrs 1e-3 --lr-multipliers 1,1 --out u")
    with pytest.raises(ValueError, match="--size 'd999x9'"):
        parse("--model transformer --ladder cpu-smoke --budget 5e10 --lrs 1e-3 --size d999x9 --out u")
    with pytest.raises(ValueError, match="--lrs: 'x'"):
        parse("--model transformer --ladder cpu-smoke --budget 5e10 --lrs x --out u")
