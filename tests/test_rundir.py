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


