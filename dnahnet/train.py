"""Train one model: the single-run CLI and the `train_run` function the sweeps call.

    python -m dnahnet.train --model transformer --preset tiny --out runs/tiny-tf \
        train.max_steps=300 data.seq_len=512 model.n_layers=4

Every run directory holds `config.yaml` (the resolved config), `metrics.csv` (Lightning's CSV log),
`checkpoints/last.ckpt` (the resume point) and, once finished, `result.json`. Rerunning the same command
resumes from the last checkpoint; a finished run is not retrained.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dnahnet import config as cfglib
from dnahnet.lit import LitLM, TrainConfig
from dnahnet.registry import get_config, get_family, list_families

log = logging.getLogger("dnahnet.train")


def _data_api():
    from dnahnet.data import DataConfig, GenomeDataModule

    return DataConfig, GenomeDataModule


@dataclass
class RunResult:
    status: str  # "ok" or "failed"
    val_loss: float  # nats per nucleotide on the fixed validation windows
    val_bpn: float  # bits per nucleotide
    tokens: int  # training tokens seen
    flops: float  # training FLOPs (from measured quantities, e.g. dnaHNet's selection rates)
    flops_planned: float  # training FLOPs from the analytic per-token count
    params: int
    params_non_embedding: int
    steps: int
    wall_s: float
    error: str = ""
    metrics: dict = field(default_factory=dict)  # final validation metrics


def resolved_config(family: str, preset: str, variant: str | None, model_cfg, train_cfg, data_cfg) -> dict:
    return {
        "family": family, "preset": preset, "variant": variant,
        "model": cfglib.to_dict(model_cfg), "train": cfglib.to_dict(train_cfg), "data": cfglib.to_dict(data_cfg),
    }


def _precision(train_cfg: TrainConfig) -> str:
    if train_cfg.precision != "auto":
        return train_cfg.precision
    use_gpu = train_cfg.accelerator in ("gpu", "cuda") or (train_cfg.accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if use_gpu else "32-true"


def _strategy(train_cfg: TrainConfig):
    name = train_cfg.strategy
    if name in ("auto", "ddp", "ddp_spawn"):
        return name
    if name == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        from dnahnet.nn.block import Block

        return FSDPStrategy(auto_wrap_policy={Block})
    if name == "fsdp2":
        from lightning.pytorch.strategies import ModelParallelStrategy

        return ModelParallelStrategy(data_parallel_size=train_cfg.devices * train_cfg.num_nodes, tensor_parallel_size=1)
    raise ValueError(f"train.strategy must be auto|ddp|fsdp|fsdp2, got {name!r}")


def _checkpoint_step(path: Path) -> int | None:
    """global_step of a checkpoint (a file, memory-mapped: cheap; or a distributed checkpoint directory's
    meta.pt); None when there is none or it is unreadable."""
    target = path / "meta.pt" if path.is_dir() else path
    if not target.is_file():
        return None
    try:
        return int(torch.load(target, map_location="cpu", mmap=True, weights_only=False).get("global_step", 0))
    except Exception:
        return None


def _resumable_csv_logger(run_dir: Path):
    """Lightning's CSVLogger, except that a resumed run keeps the metrics.csv rows it logged before its
    checkpoint (Lightning deletes the file when the log directory is not empty). Rows at or after the
    checkpoint's step are dropped: the resumed run logs those steps again."""
    import csv
    import io
    import os

    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.loggers.csv_logs import ExperimentWriter
    from lightning.pytorch.loggers.logger import rank_zero_experiment

    resume_step = _checkpoint_step(run_dir / "checkpoints" / "last.ckpt")

    class _Writer(ExperimentWriter):
        def _check_log_dir_exists(self) -> None:
            if not os.path.isfile(self.metrics_file_path):
                return
            if resume_step is None:  # a fresh start (or an unreadable checkpoint): start a fresh file
                os.remove(self.metrics_file_path)
                return
            with open(self.metrics_file_path, newline="") as fh:
                reader = csv.DictReader(fh)
                keys = list(reader.fieldnames or [])
                rows = [r for r in reader if r.get("step") not in (None, "") and float(r["step"]) < resume_step]
            self.metrics_keys = sorted(keys)
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=self.metrics_keys, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            cfglib.atomic_write_text(self.metrics_file_path, buf.getvalue())

    class _Logger(CSVLogger):
        @property
        @rank_zero_experiment
        def experiment(self):
            if self._experiment is None:
                self._fs.makedirs(self.root_dir, exist_ok=True)
                self._experiment = _Writer(log_dir=self.log_dir)
            return self._experiment

    return _Logger(save_dir=str(run_dir), name="", version="")


def build_trainer(train_cfg: TrainConfig, run_dir: Path, callbacks=(), progress: bool = True):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints", save_last=True, save_top_k=0,
        every_n_train_steps=max(1, train_cfg.ckpt_every), save_on_train_epoch_end=False,
    )
    return L.Trainer(
        accelerator=train_cfg.accelerator,
        devices=train_cfg.devices,
        num_nodes=train_cfg.num_nodes,
        strategy=_strategy(train_cfg),
        precision=_precision(train_cfg),
        max_steps=train_cfg.max_steps,
        max_epochs=-1,
        gradient_clip_val=train_cfg.grad_clip or None,
        # Validation every `val_every` steps, and always at the last step (the run's reported loss).
        val_check_interval=min(train_cfg.val_every or train_cfg.max_steps, train_cfg.max_steps),
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
        log_every_n_steps=train_cfg.log_every,
        logger=_resumable_csv_logger(run_dir),
        callbacks=[checkpoint, *callbacks],
        enable_progress_bar=progress,
        enable_model_summary=False,
        default_root_dir=str(run_dir),
    )


def train_run(
    family: str,
    model_cfg,
    train_cfg: TrainConfig,
    data_cfg,
    run_dir: str | Path,
    preset: str = "custom",
    variant: str | None = None,
    callbacks=(),
    progress: bool = True,
    datamodule=None,
) -> RunResult:
    """Train (or resume, or skip when finished) one run into `run_dir` and return its result."""
    import lightning as L

    run_dir = Path(run_dir)
    result_path = run_dir / "result.json"
    if result_path.exists():
        log.info("%s already finished; skipping", run_dir)
        return RunResult(**json.loads(result_path.read_text()))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfglib.write_yaml(run_dir / "config.yaml", resolved_config(family, preset, variant, model_cfg, train_cfg, data_cfg))
    start = time.perf_counter()
    L.seed_everything(train_cfg.seed, workers=True, verbose=False)
    _, GenomeDataModule = _data_api()
    dm = datamodule or GenomeDataModule(data_cfg)
    lit = LitLM(family, cfglib.to_dict(model_cfg), cfglib.to_dict(train_cfg), seq_len=data_cfg.seq_len)
    trainer = build_trainer(train_cfg, run_dir, callbacks=callbacks, progress=progress)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("resuming %s from %s", run_dir, last)
    trainer.fit(lit, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
    val = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    if "val/loss" not in val:  # e.g. resumed from a checkpoint taken after the last validation
        val = trainer.validate(lit, datamodule=dm, verbose=False)[0]
    counts = lit.model.param_counts()
    result = RunResult(
        status="ok",
        val_loss=float(val["val/loss"]),
        val_bpn=float(val["val/bpn"]),
        tokens=int(lit.tokens_seen),
        flops=float(lit.flops_actual),
        flops_planned=float(lit.flops_planned),
        params=counts.total,
        params_non_embedding=counts.non_embedding,
        steps=int(trainer.global_step),
        wall_s=time.perf_counter() - start,
        metrics={k: float(v) for k, v in val.items()},
    )
    if trainer.is_global_zero:
        cfglib.atomic_write_text(result_path, json.dumps(result.__dict__, indent=2))
    return result


# ---------------------------------------------------------------------- CLI
def _split_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    out = {"model": {}, "train": {}, "data": {}}
    for key, value in cfglib.parse_assignments(items).items():
        section, _, name = key.partition(".")
        if section not in out or not name:
            raise ValueError(f"override {key!r} must start with model., train. or data. (e.g. train.lr=1e-3)")
        out[section][name] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dnahnet.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="transformer", help=f"model family: {', '.join(list_families())}")
    parser.add_argument("--preset", default="tiny", help="named size preset of the family")
    parser.add_argument("--variant", default=None, help="family variant (dnaHNet hierarchy, e.g. 3,2)")
    parser.add_argument("--config", default=None, help="a resolved config.yaml to rerun (overrides still apply)")
    parser.add_argument("--out", required=True, help="run directory (config, metrics.csv, checkpoints)")
    parser.add_argument("--data-dir", default=None, help="data directory (else $DNAHNET_DATA_DIR, ../shared/data)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; use 1 on a shared or busy machine)")
    parser.add_argument("overrides", nargs="*", help="model.KEY=VALUE, train.KEY=VALUE, data.KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    DataConfig, _ = _data_api()
    try:
        overrides = _split_overrides(args.overrides)
        if args.config:
            import yaml

            base = yaml.safe_load(Path(args.config).read_text())
            family, preset, variant = base["family"], base.get("preset", "custom"), base.get("variant")
            model_cfg = cfglib.replace(
                cfglib.from_dict(get_family(family).config_cls, base["model"]), **overrides["model"]
            )
            train_cfg = cfglib.replace(cfglib.from_dict(TrainConfig, base["train"]), **overrides["train"])
            data_cfg = cfglib.replace(cfglib.from_dict(DataConfig, base["data"]), **overrides["data"])
        else:
            family, preset, variant = args.model, args.preset, args.variant
            model_cfg = get_config(family, preset, variant, **overrides["model"])
            train_cfg = cfglib.replace(TrainConfig(), **overrides["train"])
            data_cfg = cfglib.replace(DataConfig(), **overrides["data"])
        if args.data_dir:
            data_cfg = cfglib.replace(data_cfg, data_dir=args.data_dir)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = train_run(family, model_cfg, train_cfg, data_cfg, args.out, preset=preset, variant=variant,
                       progress=not args.no_progress)
    print(
        f"{family} ({preset}{'/' + variant if variant else ''}): val loss {result.val_loss:.4f} nats/nt = "
        f"{result.val_bpn:.4f} bits/nt after {result.tokens:,} tokens, {result.flops:.3g} FLOPs, "
        f"{result.params:,} params, {result.wall_s:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
