"""Window sampling: shapes, record boundaries, length weighting, RC, determinism, ranks, workers."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dnahnet import tokenizer as tok
from dnahnet.data.ingest import prepare_store
from dnahnet.data.store import DataError
from dnahnet.data.windows import FixedWindows, TrainWindows

SEQ_LEN = 31  # windows of 32


@pytest.fixture
def homopolymer_store(tmp_path, write_fasta):
    """Records whose tokens differ: all-A (500), all-C (300), all-G (20, too short), all-T (400)."""
    write_fasta(tmp_path / "g1.fa", {"polyA": "A" * 500, "polyC": "C" * 300})
    write_fasta(tmp_path / "g2.fa", {"polyG": "G" * 20, "polyT": "T" * 400})
    return prepare_store(["g1.fa", "g2.fa"], base_dir=tmp_path, store_dir=tmp_path / "homo", progress=False)


@pytest.fixture
def random_store(tmp_path, write_fasta):
    rng = np.random.default_rng(9)
    recs = {f"rec{i}": "".join(rng.choice(list("ACGT"), size=n)) for i, n in enumerate([700, 64, 1000, 333])}
    write_fasta(tmp_path / "r.fa", recs)
    return prepare_store(["r.fa"], base_dir=tmp_path, store_dir=tmp_path / "rand", progress=False)


def all_records(store):
    return np.arange(len(store))


def test_batch_format_and_shift(random_store):
    ds = TrainWindows(random_store, all_records(random_store), SEQ_LEN, batch_size=16, seed=0)
    batch = ds.batch(0)
    assert set(batch) == {"input_ids", "labels"}
    for t in batch.values():
        assert t.shape == (16, SEQ_LEN) and t.dtype == torch.long and t.is_contiguous()
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    starts, flip, w = ds.windows(0)
    flat = np.fromfile(random_store.path / "tokens.bin", dtype=np.uint8)
    for s, row in zip(starts, w, strict=True):  # rc_prob=0: the windows are the store's bytes
        assert np.array_equal(row, flat[s : s + SEQ_LEN + 1])
    assert torch.equal(batch["input_ids"], torch.from_numpy(w[:, :-1]).long())


def test_windows_never_straddle_records(homopolymer_store):
    store = homopolymer_store
    ds = TrainWindows(store, all_records(store), SEQ_LEN, batch_size=64, seed=1)
    seen = set()
    for b in range(200):
        starts, _, w = ds.windows(b)
        assert (w == w[:, :1]).all(), "a window mixes two records"
        rec = ds.index.record_of(starts)
        end = store.offsets[rec] + store.lengths[rec]
        assert (starts + SEQ_LEN + 1 <= end).all()
        seen |= set(np.unique(w[:, 0]).tolist())
    assert seen == {tok.A_ID, tok.C_ID, tok.T_ID}  # the 20-nt poly-G record is skipped


def test_records_are_weighted_by_length_and_starts_cover_each_record(homopolymer_store):
    store = homopolymer_store
    ds = TrainWindows(store, all_records(store), SEQ_LEN, batch_size=64, seed=2)
    draws = [ds.windows(b) for b in range(200)]
    first = np.concatenate([w[:, 0] for _, _, w in draws])
    starts = np.concatenate([s for s, _, _ in draws])
    n_starts = {tok.A_ID: 500 - 31, tok.C_ID: 300 - 31, tok.T_ID: 400 - 31}  # valid starts per record
    total = sum(n_starts.values())
    for token, n in n_starts.items():  # 12,800 draws: 3 sigma is about 0.013
        assert abs((first == token).mean() - n / total) < 0.02
    a = store.records[store.record_index("polyA")]
    a_starts = starts[first == tok.A_ID]
    assert a_starts.min() == a.offset and a_starts.max() == a.offset + a.length - 32


def test_reverse_complement_augmentation(homopolymer_store, random_store):
    ds = TrainWindows(homopolymer_store, all_records(homopolymer_store), SEQ_LEN, 64, seed=3, rc_prob=1.0)
    _, flip, w = ds.windows(0)
    assert flip.all()
    assert set(np.unique(w[:, 0]).tolist()) <= {tok.T_ID, tok.G_ID, tok.A_ID}  # A->T, C->G, T->A
    ds = TrainWindows(random_store, all_records(random_store), SEQ_LEN, 256, seed=3, rc_prob=0.5)
    starts, flip, w = ds.windows(0)
    assert 0.35 < flip.mean() < 0.65
    flat = np.fromfile(random_store.path / "tokens.bin", dtype=np.uint8)
    for s, f, row in zip(starts, flip, w, strict=True):
        ref = torch.from_numpy(flat[s : s + SEQ_LEN + 1].astype(np.int64))
        ref = tok.reverse_complement(ref) if f else ref
        assert np.array_equal(row, ref.numpy())


def test_determinism_from_the_seed(random_store):
    idx = all_records(random_store)
    a = TrainWindows(random_store, idx, SEQ_LEN, 8, seed=7, rc_prob=0.5)
    b = TrainWindows(random_store, idx, SEQ_LEN, 8, seed=7, rc_prob=0.5)
    c = TrainWindows(random_store, idx, SEQ_LEN, 8, seed=8, rc_prob=0.5)
    for k in range(5):
        assert all(torch.equal(a.batch(k)[key], b.batch(k)[key]) for key in ("input_ids", "labels"))
        assert not torch.equal(a.batch(k)["input_ids"], c.batch(k)["input_ids"])
    assert not torch.equal(a.batch(0)["input_ids"], a.batch(1)["input_ids"])


def test_ranks_and_workers_draw_different_windows(random_store):
    idx = all_records(random_store)
    ds = TrainWindows(random_store, idx, SEQ_LEN, 8, seed=0)
    starts = {(rank, b): tuple(ds.windows(b, rank)[0]) for rank in range(4) for b in range(8)}
    assert len(set(starts.values())) == len(starts)  # every (rank, batch) differs

    # Two dataloader workers: the stream equals the single-process stream (so workers draw
    # disjoint batches, and the order does not depend on the worker count).
    ref = [ds.batch(b)["input_ids"] for b in range(6)]
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    got = []
    for batch in loader:
        got.append(batch["input_ids"])
        if len(got) == 6:
            break
    assert all(torch.equal(x, y) for x, y in zip(got, ref, strict=True))
    ranked = TrainWindows(random_store, idx, SEQ_LEN, 8, seed=0, rank=1)
    assert torch.equal(next(iter(ranked))["input_ids"], ds.batch(0, rank=1)["input_ids"])


def test_start_batch_continues_the_stream(random_store):
    ds = TrainWindows(random_store, all_records(random_store), SEQ_LEN, 4, seed=0)
    it = iter(ds)
    first = [next(it)["input_ids"] for _ in range(5)]
    ds.start_batch = 3
    resumed = iter(ds)
    assert torch.equal(next(resumed)["input_ids"], first[3])
    assert torch.equal(next(resumed)["input_ids"], first[4])


def test_fixed_windows(random_store):
    idx = np.array([0, 2, 3])  # rec1 (64 nt) excluded
    a = FixedWindows(random_store, idx, SEQ_LEN, n_windows=20, seed=0)
    b = FixedWindows(random_store, idx, SEQ_LEN, n_windows=20, seed=0)
    assert len(a) == 20 and np.array_equal(a.starts, b.starts)
    assert np.all(np.diff(a.starts) >= SEQ_LEN + 1)  # sorted and non-overlapping
    allowed = [(random_store.offsets[i], random_store.offsets[i] + random_store.lengths[i]) for i in idx]
    for s in a.starts:
        assert any(lo <= s and s + SEQ_LEN + 1 <= hi for lo, hi in allowed)
    item = a[0]
    assert item["input_ids"].shape == (SEQ_LEN,) and torch.equal(item["input_ids"][1:], item["labels"][:-1])
    batch = next(iter(DataLoader(a, batch_size=8)))
    assert batch["input_ids"].shape == (8, SEQ_LEN)
    assert not np.array_equal(FixedWindows(random_store, idx, SEQ_LEN, 20, seed=1).starts, a.starts)
    # more than fit: every tile is used once (700 // 32 + 1000 // 32 + 333 // 32 = 21 + 31 + 10)
    every = FixedWindows(random_store, idx, SEQ_LEN, n_windows=1000, seed=0)
    assert len(every) == 62 and np.all(np.diff(every.starts) >= SEQ_LEN + 1)


def test_no_record_long_enough(random_store):
    with pytest.raises(DataError, match="no record is at least 2001 nt"):
        TrainWindows(random_store, all_records(random_store), 2000, 4)


def _draw_on_rank(rank: int, world: int, init_file: str, store_path: str, out_dir: str) -> None:
    """Child process: join a gloo group, draw 3 batches with the rank taken from torch.distributed."""
    from dnahnet.data.store import TokenStore

    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        store = TokenStore(store_path)
        ds = TrainWindows(store, np.arange(len(store)), SEQ_LEN, 8, seed=0)
        it = iter(ds)
        got = torch.stack([next(it)["input_ids"] for _ in range(3)])
        torch.save(got, f"{out_dir}/rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_ranks_from_torch_distributed(random_store, tmp_path):
    torch.multiprocessing.spawn(
        _draw_on_rank, args=(2, str(tmp_path / "init"), str(random_store.path), str(tmp_path)), nprocs=2, join=True
    )
    ds = TrainWindows(random_store, all_records(random_store), SEQ_LEN, 8, seed=0)
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.equal(got, torch.stack([ds.batch(b, rank)["input_ids"] for b in range(3)]))
    assert not torch.equal(torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt"))
