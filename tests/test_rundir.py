"""dnahnet.rundir: which process is rank 0, and the checkpoint a run resumes from (what `dnahnet.train`
resumes from and what a sweep records as `resumed_from_step`: one rule for both)."""

from __future__ import annotations

import os

import pytest
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from dnahnet.rundir import RunRefused, is_rank_zero, resume_point


class _OpensAFile:
    """Unpickling this calls open(path, "w"): what a crafted checkpoint could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def rank(monkeypatch):
    """Sets this process's rank as a Trainer would (Lightning's `rank_zero_only.rank`)."""
    for key in ("NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)
    return lambda r: monkeypatch.setattr(rank_zero_only, "rank", r)


def test_rank_zero_is_lightnings_rank_zero_on_node_zero(rank, monkeypatch):
    rank(0)
    assert is_rank_zero()
    rank(1)
    assert not is_rank_zero()
    rank(0)  # the first process on node 1 of a multi-node run, before the Trainer sets its rank
    monkeypatch.setenv("NODE_RANK", "1")
    assert not is_rank_zero()
    monkeypatch.delenv("NODE_RANK")
    monkeypatch.setenv("GROUP_RANK", "2")  # torchelastic's name for the node
    assert not is_rank_zero()


def _save(path, step):
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step}, path)


def test_resume_point_takes_the_newest_readable_checkpoint(tmp_path, rank):
    """Lightning's names (`step=N.ckpt`, `last.ckpt` linking to the newest, `hpc_ckpt_*.ckpt`): the highest
    readable step wins, whatever the file is called."""
    rank(0)
    assert resume_point(tmp_path / "no-run-yet") is None
    ckpts = tmp_path / "checkpoints"
    _save(ckpts / "step=3.ckpt", 3)
    _save(ckpts / "step=6.ckpt", 6)
    os.symlink("step=6.ckpt", ckpts / "last.ckpt")
    point = resume_point(tmp_path)
    assert point.step == 6 and point.path.resolve() == (ckpts / "step=6.ckpt").resolve()
    _save(tmp_path / "hpc_ckpt_1.ckpt", 8)  # Lightning's save on a SLURM requeue signal
    assert resume_point(tmp_path).step == 8


def test_an_unreadable_checkpoint_is_moved_aside_by_rank_zero_only(tmp_path, rank):
    ckpts = tmp_path / "checkpoints"
    _save(ckpts / "step=3.ckpt", 3)
    (ckpts / "step=6.ckpt").write_bytes(b"PK\x03\x04 cut short")  # a kill mid-write
    os.symlink("step=6.ckpt", ckpts / "last.ckpt")
    before = sorted(p.name for p in ckpts.iterdir())

    rank(1)  # another rank of the run: skips it, touches nothing
    assert resume_point(tmp_path).step == 3
    assert sorted(p.name for p in ckpts.iterdir()) == before

    rank(0)
    assert resume_point(tmp_path).step == 3
    (aside,) = ckpts.glob("step=6.corrupt-*.ckpt")
    assert aside.read_bytes() == b"PK\x03\x04 cut short"
    assert not (ckpts / "last.ckpt").is_symlink() and not (ckpts / "step=6.ckpt").exists()

    aside.unlink()
    (ckpts / "step=3.ckpt").write_bytes(b"")  # every checkpoint unreadable: the run starts over
    assert resume_point(tmp_path) is None


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, rank):
    rank(0)
    marker = tmp_path / "ran"
    crafted = tmp_path / "checkpoints" / "last.ckpt"
    crafted.parent.mkdir()
    torch.save({"global_step": 5, "payload": _OpensAFile(marker)}, crafted)
    with pytest.raises(RunRefused, match="last.ckpt: refused"):
        resume_point(tmp_path)
    assert not marker.exists() and crafted.exists()  # not run, not moved aside


# ---------------------------------------------------------------------- run identity: one rule
def _resolved(family="transformer", **sections):
    from dnahnet import typed_config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import TrainConfig
    from dnahnet.registry import get_config
    from dnahnet.train import resolved_config

    model = get_config(family, "tiny", None)
    train, data = cfglib.replace(TrainConfig(), **sections.get("train", {})), \
        cfglib.replace(DataConfig(), **sections.get("data", {}))
    return resolved_config(family, "tiny", None, model, train, data)


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
    makes `config_differences` name it (sweeps use the same rule: `sweeps.runner.identity_differences`)."""
    import dataclasses

    from dnahnet import typed_config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import TrainConfig
    from dnahnet.rundir import config_differences
    from sweeps.runner import identity_differences

    cls = {"train": TrainConfig, "data": DataConfig}[section]
    base = _resolved()
    checked = 0
    for f in dataclasses.fields(cls):
        value = _changed(base[section][f.name])
        if value is None or value == base[section][f.name]:
            continue  # None-valued optional fields: their other values are paths or sizes tested elsewhere
        new = {**base, section: {**base[section], f.name: value}}
        diffs, sweep = config_differences(base, new), identity_differences(base, new)
        rule = cfglib.identity_rule(cls, f.name)
        if rule is True:
            assert any(d.startswith(f"{section}.{f.name}:") for d in diffs), f.name
            checked += 1
        elif rule is False:
            assert diffs == [], f.name
        else:  # a factor of the global batch
            assert diffs and diffs[0].startswith("global batch"), f.name
        assert sweep == diffs, f.name
    assert checked >= 8


def test_neutral_fields_are_only_those_that_do_not_change_what_a_run_computes():
    import dataclasses

    from dnahnet import typed_config as cfglib
    from dnahnet.data import DataConfig
    from dnahnet.lit import TrainConfig
    from dnahnet.registry import get_family

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
    import shutil

    from dnahnet.rundir import config_differences

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
