"""Experiment tracking: the Lightning loggers a run writes to (`train.loggers`), its tags and parameters.

    python -m dnahnet.train --out runs/x train.loggers=csv,tensorboard,wandb,mlflow
    python sweeps/isoflop.py ... --set train.loggers=csv,mlflow

- csv (always, first): `metrics.csv` in the run directory, which the sweeps and the analysis read. A resumed
  run keeps the rows logged before its checkpoint (`RunCSVLogger`).
- tensorboard: event files under `RUN/tensorboard/` (`tensorboard --logdir SWEEP/runs`).
- wandb: Weights & Biases under `RUN/wandb/`; offline when `WANDB_MODE=offline` or when its server cannot be
  reached (sync later with `wandb sync RUN/wandb/offline-run-*`). Project: `$WANDB_PROJECT`, else "dnahnet".
- mlflow: `train.mlflow_uri`, else `$MLFLOW_TRACKING_URI`, else a SQLite store, `mlflow.db`, in the sweep's
  directory for a sweep's (or study's) runs (one store per sweep: its runs side by side in one experiment) and
  in the run directory for a single run. Current MLflow opens it as is (`mlflow ui --backend-store-uri
  sqlite:///SWEEP/mlflow.db`, `MlflowClient("sqlite:///SWEEP/mlflow.db")`); its file store would need
  `MLFLOW_ALLOW_FILE_STORE=true` in every reader's environment.

Every tracker run is named after the run directory and tagged with family, variant, preset, parameters and
planned tokens; a sweep adds its name, the budget and the run id (`sweep_tags`), so its runs can be grouped
and compared in the tracker's UI. A resumed run logs its remaining steps as a new tracker run of the same name
(trackers keep parameters immutable, and a restarted run may change neutral settings such as devices).

The tracker packages are an optional extra (`pip install -e ".[tracking]"`); they are imported only here.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import logging
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from dnahnet import fileio

log = logging.getLogger("dnahnet.tracking")

TRACKERS = ("csv", "tensorboard", "wandb", "mlflow")
# The package each tracker needs (tensorboard's event writer comes with torch; its reader with tensorboard).
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
EXTRA = 'pip install -e ".[tracking]"'
METRICS_FILE = "metrics.csv"


def check_trackers(names) -> tuple[str, ...]:
    """The trackers of `train.loggers` (csv first, each once); ValueError naming an unknown one, or a missing
    package and the extra that installs it. Imports nothing (fast enough to run before any training)."""
    if isinstance(names, str):
        names = names.split(",")
    wanted = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in wanted if n not in TRACKERS]
    if unknown:
        raise ValueError(f"train.loggers: unknown tracker {unknown[0]!r}; choose from {', '.join(TRACKERS)}")
    ordered = ("csv", *dict.fromkeys(n for n in wanted if n != "csv"))
    for name in ordered[1:]:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise ValueError(f"train.loggers={name}: the {_PACKAGES[name]} package is not installed; install the "
                             f"tracking extra: {EXTRA}")
    return ordered


# ---------------------------------------------------------------------------------------------- tags
def run_tags(family: str, variant: str | None, preset: str, params: int, tokens: int, run_dir: Path,
             extra: dict | None = None) -> dict[str, str]:
    """What a tracker run is tagged with: the model, its size and data, where it lives; `extra` (a sweep's
    tags, `sweep_tags`) adds to and overrides these."""
    tags = {"family": family, "variant": variant or "", "preset": preset, "params": int(params),
            "tokens": int(tokens), "run_dir": str(Path(run_dir).resolve())}
    tags.update(extra or {})
    return {k: str(v) for k, v in tags.items()}


def sweep_tags(sweep: str, budget: float, run_id: str, sweep_dir: str | os.PathLike | None = None,
               **more: Any) -> dict[str, str]:
    """The tags a sweep adds to each of its runs (the planned params/tokens may be passed in `more`).
    `sweep_dir`: the sweep's directory, where its runs' default MLflow store lives (`mlflow_store`)."""
    tags = {"sweep": sweep, "budget": f"{float(budget):.4g}", "run_id": run_id}
    if sweep_dir is not None:
        tags["sweep_dir"] = str(Path(sweep_dir).resolve())
    return {**tags, **{k: str(v) for k, v in more.items()}}


MLFLOW_DB = "mlflow.db"


def mlflow_store(run_dir: str | os.PathLike, tags: dict[str, str] | None = None) -> str:
    """The default MLflow tracking URI of a run: SQLite in its sweep's directory (the `sweep_dir` tag), else
    in the run directory."""
    home = Path((tags or {}).get("sweep_dir") or run_dir).resolve()
    return f"sqlite:///{home / MLFLOW_DB}"


# ---------------------------------------------------------------------------------------------- csv
class RunCSVLogger(Logger):
    """`metrics.csv` in the run directory: one row per logging call, columns sorted, like Lightning's CSVLogger,
    except that a resumed run keeps the rows logged before its checkpoint (Lightning's deletes the file).
    Rows at or after `resume_step` are dropped: the resumed run logs those steps again; `resume_step=None`
    (a fresh start) starts a fresh file. Written through the public `Logger` interface only."""

    def __init__(self, run_dir: str | os.PathLike, resume_step: int | None = None):
        super().__init__()
        self._run_dir = Path(run_dir)
        self.path = self._run_dir / METRICS_FILE
        self._keys: list[str] = []
        self._pending: list[dict] = []
        self._resume_step = resume_step
        self._started = False  # the old file is trimmed at the first save, as Lightning's logger does

    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self._run_dir)

    @property
    def log_dir(self) -> str:
        return str(self._run_dir)

    def _start(self, resume_step: int | None) -> None:
        self._started = True
        if not self.path.is_file():
            return
        if resume_step is None:
            self.path.unlink()
            return
        with open(self.path, newline="") as fh:
            reader = csv.DictReader(fh)
            self._keys = sorted(reader.fieldnames or [])
            rows = [r for r in reader if r.get("step") not in (None, "") and float(r["step"]) < resume_step]
        self._rewrite(rows)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        """Nothing: the run's config.yaml holds them."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = {k: v.item() if hasattr(v, "item") else v for k, v in metrics.items()}
        row["step"] = step if step is not None else len(self._pending)
        self._pending.append(row)

    @rank_zero_only
    def save(self) -> None:
        if not self._pending:
            return
        if not self._started:
            self._start(self._resume_step)
        new_keys = set().union(*self._pending) - set(self._keys)
        if new_keys or not self.path.is_file():
            self._keys = sorted(set(self._keys) | new_keys)
            old = []
            if self.path.is_file():
                with open(self.path, newline="") as fh:
                    old = list(csv.DictReader(fh))
            self._rewrite(old + self._pending)
        else:
            with open(self.path, "a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self._keys).writerows(self._pending)
        self._pending = []

    def _rewrite(self, rows: list[dict]) -> None:
        buf = io.StringIO(newline="")
        writer = csv.DictWriter(buf, fieldnames=self._keys)
        writer.writeheader()
        writer.writerows(rows)
        fileio.atomic_write_text(self.path, buf.getvalue())

    @rank_zero_only
    def finalize(self, status: str) -> None:
        self.save()


# ---------------------------------------------------------------------------------------------- trackers
def _wandb_offline() -> bool:
    """W&B logs offline when asked ($WANDB_MODE=offline) or when its server cannot be reached."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "dryrun", "disabled"):
        return True
    if mode == "online":
        return False
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=2).close()
        return False
    except OSError:
        log.info("W&B: %s cannot be reached; logging offline (sync later with `wandb sync`)", url.hostname)
        return True


def _tensorboard(run_dir: Path, tags: dict[str, str]):
    from lightning.pytorch.loggers import TensorBoardLogger

    logger = TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="", default_hp_metric=False)
    if rank_zero_only.rank == 0:  # tags as a text summary: "tags" in the TEXT tab, one row per tag
        table = "| tag | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in tags.items())
        logger.experiment.add_text("tags", table, global_step=0)
    return logger


def _wandb(run_dir: Path, tags: dict[str, str]):
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    offline = _wandb_offline()
    if offline:
        log.info("W&B logs offline into %s (sync later: wandb sync %s)", run_dir / "wandb", run_dir / "wandb")
    label_keys = ("family", "variant", "preset", "budget", "sweep")
    return WandbLogger(
        save_dir=str(run_dir), name=Path(run_dir).name, project=os.environ.get("WANDB_PROJECT", "dnahnet"),
        offline=offline, group=tags.get("sweep"), config={"tags": tags},
        tags=[f"{k}={tags[k]}"[:64] for k in label_keys if tags.get(k)],
        settings=wandb.Settings(silent=True),  # no banner and summary table per run in a sweep's log
    )


_RUN_DIR_STORES: set[str] = set()  # the default stores (`mlflow_store`) given to MLflow in this process


def _mlflow(run_dir: Path, tags: dict[str, str], uri: str):
    from lightning.pytorch.loggers import MLFlowLogger

    given = os.environ.get("MLFLOW_TRACKING_URI", "")
    # mlflow.set_tracking_uri (Lightning calls it) exports the URI to this variable: a run directory's store
    # chosen here for an earlier run of the process is not the user's choice.
    uri = uri or ("" if given in _RUN_DIR_STORES else given)
    if not uri:
        # SQLite, not MLflow's file store: MLflow 3 keeps the file store in maintenance mode and refuses to
        # open it (a user's `mlflow ui`, a notebook's MlflowClient) without MLFLOW_ALLOW_FILE_STORE=true.
        Path(tags.get("sweep_dir") or run_dir).mkdir(parents=True, exist_ok=True)
        uri = mlflow_store(run_dir, tags)
        _RUN_DIR_STORES.add(uri)
    return MLFlowLogger(experiment_name=tags.get("sweep") or "dnahnet", run_name=Path(run_dir).name,
                        tracking_uri=uri, tags=dict(tags))


def build_loggers(train_cfg, run_dir: str | os.PathLike, resume_step: int | None = None,
                  tags: dict[str, str] | None = None, params: dict | None = None) -> list[Logger]:
    """The Lightning loggers of `train_cfg.loggers`: RunCSVLogger first, then each tracker, tagged with `tags`
    (`run_tags`). `params` (e.g. the data config) are logged besides the LightningModule's hyperparameters,
    which Lightning logs itself. Raises ValueError for an unknown tracker or a missing package."""
    run_dir = Path(run_dir)
    names = check_trackers(train_cfg.loggers)
    tags = dict(tags or {})
    loggers: list[Logger] = [RunCSVLogger(run_dir, resume_step)]
    for name in names[1:]:
        if name == "tensorboard":
            loggers.append(_tensorboard(run_dir, tags))
        elif name == "wandb":
            loggers.append(_wandb(run_dir, tags))
        elif name == "mlflow":
            loggers.append(_mlflow(run_dir, tags, getattr(train_cfg, "mlflow_uri", "")))
    if params:
        for logger in loggers[1:]:
            logger.log_hyperparams(params)
    return loggers


def finish(loggers) -> None:
    """End the tracker runs a training opened: a W&B run stays open until `wandb.finish()` (the next run of a
    sweep in the same process would otherwise log into it); the others close when Lightning finalizes. The
    default MLflow store (`mlflow_store`), which mlflow exported to $MLFLOW_TRACKING_URI, is taken back out of it."""
    for logger in loggers:
        logger.save()
    if os.environ.get("MLFLOW_TRACKING_URI") in _RUN_DIR_STORES:  # set by mlflow for this run only
        os.environ.pop("MLFLOW_TRACKING_URI")
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()
