"""GenomeDataModule: config, splits, loaders, fixed validation windows, resuming the stream."""

import lightning as L
import numpy as np
import pytest
import torch

from dnahnet.data.module import DataConfig, GenomeDataModule


def make_dm(corpus, tmp_path, **kw) -> GenomeDataModule:
    cfg = DataConfig(
        data_dir=str(corpus), store_dir=str(tmp_path / "store"), seq_len=63, batch_size=4, n_val_windows=12, **kw
    )
    dm = GenomeDataModule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def take(loader, n):
    out = []
    for batch in loader:
        out.append(batch)
        if len(out) == n:
            break
    return out


def test_defaults():
    cfg = DataConfig()
    assert cfg.seq_len == 8192 and cfg.holdout == ["NC_000913", "NC_007779"] and cfg.rc_augment and cfg.rc_prob == 0.5
    assert cfg.inputs is None and cfg.data_dir is None and cfg.store_dir is None
    with pytest.raises(ValueError, match="seq_len"):
        DataConfig(seq_len=0)
    with pytest.raises(ValueError, match="rc_prob"):
        DataConfig(rc_prob=1.5)


def test_splits_and_loaders(tiny_corpus, tmp_path):
    dm = make_dm(tiny_corpus, tmp_path)
    split = dm.split_of
    assert split["mg1655"] == "holdout"  # default holdout matches NC_000913.3
    assert sorted(split.values()) == ["holdout", "test", "train", "train", "train", "val"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 63)
    assert batch["input_ids"].dtype == torch.long
    train_ranges = [(dm.store.offsets[i], dm.store.offsets[i] + dm.store.lengths[i]) for i in dm.records("train")]
    starts, _, _ = dm.train_windows.windows(0)
    assert all(any(lo <= s < hi for lo, hi in train_ranges) for s in starts)  # train genomes only
    val = list(dm.val_dataloader())
    assert sum(b["input_ids"].shape[0] for b in val) == 12
    val_ids = set(dm.records("val").tolist())
    rec_of = np.searchsorted(dm.store.offsets, dm.fixed_windows("val").starts, side="right") - 1
    assert set(rec_of.tolist()) <= val_ids
    assert sum(b["input_ids"].shape[0] for b in dm.test_dataloader()) == 12


def test_fixed_validation_windows_identical_across_instances(tiny_corpus, tmp_path):
    a = make_dm(tiny_corpus, tmp_path, seed=1)
    b = make_dm(tiny_corpus, tmp_path / "other", seed=2)  # another store dir and training seed
    va, vb = list(a.val_dataloader()), list(b.val_dataloader())
    assert len(va) == len(vb) == 3
    for x, y in zip(va, vb, strict=True):
        assert torch.equal(x["input_ids"], y["input_ids"]) and torch.equal(x["labels"], y["labels"])
    # different training seeds do give different training streams
    assert not torch.equal(next(iter(a.train_dataloader()))["input_ids"], next(iter(b.train_dataloader()))["input_ids"])


def test_state_dict_continues_the_stream(tiny_corpus, tmp_path):
    reference = [b["input_ids"] for b in take(make_dm(tiny_corpus, tmp_path).train_dataloader(), 10)]
    first = make_dm(tiny_corpus, tmp_path)
    seen = [b["input_ids"] for b in take(first.train_dataloader(), 4)]
    state = first.state_dict()
    assert state["batches_drawn"] == 4
    resumed = make_dm(tiny_corpus, tmp_path)
    resumed.load_state_dict(state)
    after = [b["input_ids"] for b in take(resumed.train_dataloader(), 6)]
    assert all(torch.equal(x, y) for x, y in zip(seen + after, reference, strict=True))
    assert not any(torch.equal(x, y) for x in after for y in seen)  # nothing replayed
    assert resumed.state_dict()["batches_drawn"] == 10


def test_two_genome_corpus_has_no_test_split(tmp_path, write_fasta):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_fasta(tmp_path / "d" / f"{name}.fa", {f"{name}1": "".join(rng.choice(list("ACGT"), 2000))})
    dm = make_dm(tmp_path / "d", tmp_path)
    assert sorted(dm.split_of.values()) == ["train", "val"]
    assert dm.test_dataloader() == []
    assert len(list(dm.val_dataloader())) == 3


class _Recorder(L.LightningModule):
    """A tiny model that remembers the batches it trained on."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(8, 8)
        self.head = torch.nn.Linear(8, 8)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, _):
        self.seen.append(batch["input_ids"].clone())
        logits = self.head(self.emb(batch["input_ids"]))  # (B, L, V)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _trainer(tmp_path, max_steps, callbacks=()):
    return L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=str(tmp_path),
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
    )


def test_lightning_resume_from_checkpoint_continues_exactly(tiny_corpus, tmp_path):
    """A run checkpointed at step 4 and resumed to step 7 trains on exactly the batches of an
    uninterrupted 7-step run: nothing replayed, nothing skipped."""
    ckpt_dir = tmp_path / "ckpt"
    every4 = L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=4, save_top_k=-1)
    m1 = _Recorder()
    _trainer(tmp_path, 5, [every4]).fit(m1, datamodule=make_dm(tiny_corpus, tmp_path))
    ckpt = next(p for p in ckpt_dir.iterdir() if "step=4" in p.name)
    saved = torch.load(ckpt, weights_only=False)["GenomeDataModule"]
    assert saved["batches_drawn"] == 4

    m2 = _Recorder()
    _trainer(tmp_path, 7).fit(m2, datamodule=make_dm(tiny_corpus, tmp_path), ckpt_path=str(ckpt))
    assert len(m2.seen) == 3
    m_ref = _Recorder()
    _trainer(tmp_path, 7).fit(m_ref, datamodule=make_dm(tiny_corpus, tmp_path))
    assert all(torch.equal(x, y) for x, y in zip(m1.seen[:4] + m2.seen, m_ref.seen, strict=True))
    assert not any(torch.equal(x, y) for x in m2.seen for y in m1.seen[:4])  # no replay
