"""The one configuration path (dnahnet/run_config.py): override parsing, config assembly, budget -> steps."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from dnahnet import run_config
from dnahnet import typed_config as cfglib
from dnahnet.data import DataConfig
from dnahnet.registry import get_family
from dnahnet.run_config import (
    TOLERANCE,
    Overrides,
    RunConfig,
    config_differences,
    identity_of,
    parse_overrides,
    resolve,
    steps_for_budget,
)
from dnahnet.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ parsing
def test_overrides_are_split_by_section_with_their_source():
    ov = parse_overrides(["train.lr=3e-4", "model.n_layers = 3", "data.seq_len=64", "train.lr=1e-3",
                          "model.layout=[m1, [T2], m1]"], "--set")
    assert ov.train == {"lr": "1e-3"}  # the later setting wins
    assert ov.model == {"n_layers": "3", "layout": "[m1, [T2], m1]"}  # values stay text until resolved
    assert ov.data == {"seq_len": "64"}
    assert ov.source == {"train.lr": "--set", "model.n_layers": "--set", "model.layout": "--set",
                         "data.seq_len": "--set"}
    assert parse_overrides(None) == Overrides()


def test_resolve_coerces_text_to_the_fields_types():
    ov = parse_overrides(["train.max_steps=1e3", "train.lr=3e-4", "train.compile=yes", "data.seq_len=64",
                          "data.inputs=a.fna,b.fna", "data.val_genomes=0.25", "model.n_layers=3",
                          "model.rotary_base=5e3"])
    run = resolve("transformer", "tiny", None, ov)
    assert run.train.max_steps == 1000 and isinstance(run.train.max_steps, int)
    assert run.train.lr == 3e-4 and run.train.compile is True
    assert run.data.seq_len == 64 and run.data.inputs == ["a.fna", "b.fna"] and run.data.val_genomes == 0.25
    assert run.model.n_layers == 3 and run.model.rotary_base == 5000.0


@pytest.mark.parametrize("items,message", [
    (["optim.lr=1"], r"--set: unknown section 'optim' in optim\.lr"),
    (["lr=1"], r"--set lr=1: write section\.KEY=VALUE"),
    (["train.lr"], r"--set: expected KEY=VALUE, got 'train\.lr'"),
])
def test_malformed_overrides_name_the_item_and_where_it_came_from(items, message):
    with pytest.raises(ValueError, match=message):
        parse_overrides(items, "--set")


@pytest.mark.parametrize("item,message", [
    ("train.nope=1", "unknown field 'nope' for TrainConfig"),
    ("model.width=8", "unknown field 'width' for TransformerConfig"),
    ("data.seq_len=long", "DataConfig.seq_len: expected an integer"),
    ("train.compile=maybe", "TrainConfig.compile: expected a boolean"),
])
def test_unknown_keys_and_bad_values_name_the_field(item, message):
    with pytest.raises(ValueError, match=message):
        resolve("transformer", "tiny", None, parse_overrides([item]))


def test_typed_overrides_name_where_a_bad_value_was_set(tmp_path):
    f = tmp_path / "best.yaml"
    f.write_text("train:\n  lr: 0.002\n  lr_scale: 2\nmodel:\n  n_layers: 3\ndata:\n  batch_size: 4\n")
    ov = run_config.read_override_file(f)
    parse_overrides(["train.beta1=0.8"], "--set", into=ov)
    typed = run_config.typed_overrides("transformer", "tiny", None, ov, skip=("train.lr_scale",))
    assert typed == {"train": {"lr": 0.002, "beta1": 0.8}, "model": {"n_layers": 3}, "data": {"batch_size": 4}}
    parse_overrides(["train.beta1=fast"], "--set", into=ov)
    with pytest.raises(ValueError, match=r"^--set: train\.beta1='fast'"):
        run_config.typed_overrides("transformer", "tiny", None, ov, skip=("train.lr_scale",))
    f.write_text("model:\n  n_layers: many\n")
    with pytest.raises(ValueError, match=rf"^{re.escape(str(f))}: model\.n_layers='many'"):
        run_config.typed_overrides("transformer", "tiny", None, run_config.read_override_file(f))


def test_override_files_are_checked(tmp_path):
    f = tmp_path / "o.yaml"
    for text, message in (("optim:\n  lr: 1\n", "unknown section 'optim'"), ("train: [1, 2]\n", "must be a mapping"),
                          ("- 1\n", "expected a mapping"), ("train: {lr: [\n", "not valid YAML")):
        f.write_text(text)
        with pytest.raises(ValueError, match=rf"^--overrides {re.escape(str(f))}: .*{re.escape(message)}"):
            run_config.read_override_file(f)
    with pytest.raises(ValueError, match="no such file"):
        run_config.read_override_file(tmp_path / "missing.yaml")


# ------------------------------------------------------------------------------------ assembly
def test_resolve_applies_preset_then_variant_then_overrides():
    """Against the configs built by hand from the family's preset factory and variant table."""
    fam = get_family("dnahnet")
    ov = parse_overrides(["model.alpha=0.05", "train.lr=2e-3", "train.max_steps=7", "data.seq_len=96"])
    run = resolve("dnahnet", "tiny", "3", ov)
    by_hand = dataclasses.replace(dataclasses.replace(fam.presets["tiny"](), **fam.variants["3"]), alpha=0.05)
    assert run.model == by_hand
    assert run.train == TrainConfig(lr=2e-3, max_steps=7)
    assert run.data == DataConfig(seq_len=96)
    assert (run.family, run.preset, run.variant) == ("dnahnet", "tiny", "3")


def test_the_context_bound_field_follows_the_runs_context_unless_given():
    sh2 = get_family("stripedhyena").presets["tiny"]()
    assert sh2.l_train != 96  # else the test could not tell binding from the preset
    assert resolve("stripedhyena", overrides=parse_overrides(["data.seq_len=96"])).model.l_train == 96
    explicit = resolve("stripedhyena", overrides=parse_overrides(["data.seq_len=96", "model.l_train=500"]))
    assert explicit.model.l_train == 500
    assert get_family("transformer").context_field is None  # no bound field: nothing changes
    assert resolve("transformer", overrides=parse_overrides(["data.seq_len=96"])).model == \
        get_family("transformer").presets["tiny"]()


def test_a_resolved_config_file_rebuilds_the_same_configs(tmp_path):
    run = resolve("stripedhyena", "tiny", None, parse_overrides(["data.seq_len=96", "model.d_model=32",
                                                                  "train.lr=4e-3", "data.batch_size=3"]))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"family": run.family, "preset": run.preset, "variant": run.variant,
                                    "model": cfglib.to_dict(run.model), "train": cfglib.to_dict(run.train),
                                    "data": cfglib.to_dict(run.data)}))
    assert run_config.resolve_file(path) == run
    again = run_config.resolve_file(path, parse_overrides(["train.lr=1e-3", "data.seq_len=64"]))
    assert again.train.lr == 1e-3 and again.model.d_model == 32
    assert again.model.l_train == 64  # the bound field follows the new context
    for text, message in (("", "empty"), ("- 1\n", "a YAML list"), ("model: {}\n", "no 'family' entry"),
                          ("family: transformer\nmodel: [1]\n", "'model' must be a mapping")):
        path.write_text(text)
        with pytest.raises(ValueError, match=f"--config {re.escape(str(path))}: {re.escape(message)}"):
            run_config.resolve_file(path)
    with pytest.raises(ValueError, match="is a directory"):
        run_config.resolve_file(tmp_path)


def test_a_run_config_round_trips_through_its_config_yaml_and_knows_its_context_and_batch(tmp_path):
    """`RunConfig.to_dict` is what a run directory's config.yaml holds; `from_dict` rebuilds the same run
    (data_key is read from the genomes, not set). The context is data.seq_len, the global batch the product
    of the GLOBAL_BATCH fields."""
    run = resolve("dnahnet", "tiny", "2,2", parse_overrides(["data.seq_len=48", "data.batch_size=3",
                                                             "train.devices=2", "train.accumulate_grad_batches=4",
                                                             "model.alpha=0.05"]))
    written = yaml.safe_load(yaml.safe_dump(run.to_dict()))
    assert RunConfig.from_dict(written) == run and written["variant"] == "2,2"
    assert run.seq_len == 48 and run.global_batch == 3 * 2 * 4
    assert run.differences(RunConfig.from_dict(written)) == [] and run.identity() == identity_of(written)
    other = RunConfig.from_dict(written, parse_overrides(["model.alpha=0.1"]))
    assert run.differences(other) == ["model.alpha: 0.05 -> 0.1"]
    assert run.differences(other.to_dict()) == run.differences(other)


def test_a_preset_is_a_name_its_settings_are_the_identity():
    """A sweep names its sizes, a rerun from a config.yaml is preset "custom": what the preset set is compared
    field by field, so the name alone changes nothing, and a changed field is named whatever the preset."""
    run = resolve("transformer", "tiny")
    renamed = dataclasses.replace(run, preset="custom")
    assert run.differences(renamed) == []
    assert [d.split(":")[0] for d in run.differences(resolve("transformer", "small"))] != []


def test_train_writes_the_configs_configure_resolves(tmp_path):
    """`python -m dnahnet.train` (one tiny step) records in config.yaml what `resolve` builds."""
    from dnahnet.train import main
    from tests.helpers.synthetic_corpus import markov_corpus

    data = markov_corpus(tmp_path / "data", 4, 6000, 0, "g{g}.fasta", "G{g} synthetic genome {g}")
    overrides = ["data.seq_len=32", "data.n_val_windows=2", "data.batch_size=2", f"data.store_dir={tmp_path / 's'}",
                 "train.max_steps=1", "train.accelerator=cpu", "model.d_model=16", "model.n_heads=2"]
    out = tmp_path / "run"
    assert main(["--model", "stripedhyena", "--out", str(out), "--data-dir", str(data), "--no-progress",
                 *overrides]) == 0
    run = resolve("stripedhyena", "tiny", None, parse_overrides([*overrides, f"data.data_dir={data}"]))
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written == run.to_dict()
    assert written["model"]["l_train"] == 32


# ------------------------------------------------------------------------------------ run identity: one rule
def _resolved(family="transformer", **sections) -> dict:
    """The resolved config (a config.yaml's contents) of a tiny `family` run with `sections`' settings."""
    overrides = Overrides(train=dict(sections.get("train", {})), data=dict(sections.get("data", {})))
    return resolve(family, "tiny", None, overrides).to_dict()


def _changed(value):
    """Another valid value of a field's type (for every TrainConfig / DataConfig field)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, (list, tuple)):
        return [*value, "x"] if value else ["x"]
    if value is None:
        return None
    return {"cosine": "wsd", "auto": "cpu"}.get(value, value + "x")


@pytest.mark.parametrize("section", ["train", "data"])
def test_every_field_not_marked_neutral_is_part_of_a_runs_identity(section):
    """A field added to TrainConfig or DataConfig is identity unless its metadata says otherwise: changing it
    makes `config_differences` name it, and `RunConfig.identity` differ."""
    cls = {"train": TrainConfig, "data": DataConfig}[section]
    base = _resolved()
    checked = 0
    for f in dataclasses.fields(cls):
        value = _changed(base[section][f.name])
        if value is None or value == base[section][f.name]:
            continue  # None-valued optional fields: their other values are paths or sizes tested elsewhere
        new = {**base, section: {**base[section], f.name: value}}
        diffs = config_differences(base, new)
        identities = identity_of(base), identity_of(new)
        rule = cfglib.identity_rule(cls, f.name)
        if rule is True:
            assert any(d.startswith(f"{section}.{f.name}:") for d in diffs), f.name
            checked += 1
        elif rule is False:
            assert diffs == [], f.name
        else:  # a factor of the global batch
            assert diffs and diffs[0].startswith("global batch"), f.name
        assert (identities[0] == identities[1]) == (diffs == []), f.name
    assert checked >= 8


def test_neutral_fields_are_only_those_that_do_not_change_what_a_run_computes():
    neutral = {f"{s}.{f.name}" for s, cls in (("train", TrainConfig), ("data", DataConfig),
                                              ("model", get_family("dnahnet").config_cls))
               for f in dataclasses.fields(cls) if cfglib.identity_rule(cls, f.name) is not True}
    assert neutral == {
        "train.precision", "train.val_every", "train.ckpt_every", "train.log_every", "train.accelerator",
        "train.devices", "train.num_nodes", "train.strategy", "train.accumulate_grad_batches",
        "train.activation_checkpointing", "train.compile", "train.loggers", "train.mlflow_uri",
        "data.data_dir", "data.inputs", "data.store_dir", "data.batch_size", "data.eval_batch_size",
        "data.num_workers", "model.mamba_backend", "model.attn_backend",
    }


def test_the_genomes_read_are_part_of_the_identity_not_their_path(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "g1.fasta").write_text(">r1\nACGTACGTAA\n")
    (tmp_path / "a" / "g2.fasta").write_text(">r2\nTTGCA\n")
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "g1.fasta").write_text(">r1\nACGTACGTAC\n")  # one nucleotide differs
    (tmp_path / "b" / "g2.fasta").write_text(">r2\nTTGCA\n")
    a, copy, b = (_resolved(data={"data_dir": str(tmp_path / d)}) for d in ("a", "copy", "b"))
    assert a["data_key"] is not None
    assert config_differences(a, copy) == []
    assert [d.split(":")[0] for d in config_differences(a, b)] == ["data_key"]
    gone = _resolved(data={"data_dir": str(tmp_path / "moved-away")})  # planned there, the folder since moved
    assert gone["data_key"] is None and config_differences(gone, copy) == []
    legacy = {k: v for k, v in a.items() if k != "data_key"}  # a config.yaml from before data_key: paths count
    assert [d.split(":")[0] for d in config_differences(legacy, copy)] == ["data.data_dir"]


# ------------------------------------------------------------------------------------ budget -> steps
def _flops_per_token(family: str, width: int) -> float:
    from sweeps.ladders import get_rule, stats_of

    rule = get_rule(family)
    return stats_of(family, rule.default_variant, rule.shape(width, 4, "cpu"), 64, rule.preset).flops_per_token


@pytest.mark.parametrize("family,width", [("transformer", 16), ("transformer", 96), ("stripedhyena", 48),
                                          ("dnahnet", 32)])
def test_budget_rule_spends_the_budget_within_tolerance(family, width):
    """Closed form: steps = round(budget / (FLOPs/token x batch x L)) when that lands within 1%; otherwise
    the batch is the one (0.75x-1.33x, a multiple of the world size) that lands closest, found here by
    trying every one. Either way steps x batch x L x FLOPs/token lies within 2% of the budget."""
    fpt, L = _flops_per_token(family, width), 64
    checked = moved = 0
    for steps_wanted in (100, 137.4, 333.3, 1000.6, 2501.5):
        for batch in (8, 12, 16, 30):
            for world, multiple in ((1, 1), (2, 1), (1, 4)):
                budget = steps_wanted * batch * L * fpt
                spent = steps_for_budget(budget, fpt, batch, L, world, step_multiple=multiple)
                planned = spent.steps * spent.batch * L * fpt
                assert spent.error == pytest.approx(abs(planned / budget - 1))
                assert abs(planned / budget - 1) <= TOLERANCE
                assert spent.steps % multiple == 0 and spent.batch % world == 0
                exact = multiple * round(budget / (fpt * batch * L * multiple))
                if abs(exact * batch * L * fpt / budget - 1) <= 0.01:
                    assert (spent.steps, spent.batch) == (exact, batch)
                else:
                    moved += 1
                    tries = {b: multiple * max(1, round(budget / (fpt * b * L * multiple)))
                             for b in range(world, 2 * batch, world) if 0.75 * batch - world < b <= batch * 4 / 3}
                    best = min(abs(s * b * L * fpt / budget - 1) for b, s in tries.items())
                    assert spent.error == pytest.approx(best, abs=1e-12)
                    assert math.isclose(spent.steps * spent.batch * L * fpt, planned)
                checked += 1
    assert checked == 60 and moved > 0


def test_too_short_a_budget_misses_and_says_by_how_much():
    """1.3 steps of batch 8 = 10.4 windows: of batches 6..10, one step of 10 comes closest (0.4 / 10.4 off),
    beyond the tolerance: callers refuse it (the planner drops or errors, the tuner asks for more budget)."""
    spent = steps_for_budget(1.3 * 8 * 64 * 1e6, 1e6, 8, 64)
    assert (spent.steps, spent.batch) == (1, 10)
    assert spent.error == pytest.approx(0.4 / 10.4) and spent.error > TOLERANCE
