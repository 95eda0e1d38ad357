"""`TrainConfig`: how a run trains (optimizer, schedule, length, precision, parallelism, trackers).

Torch-free, like the rest of a run's configuration (`dnahnet.run_config.RunConfig`), so that planning a
sweep, checking a rerun or reading a config.yaml does not import the training stack. Fields marked
`NEUTRAL` do not change what a run computes (a rerun may change them); `GLOBAL_BATCH` fields may move
as long as the global batch they multiply does not (`dnahnet.run_config.config_differences`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dnahnet.typed_config import GLOBAL_BATCH, NEUTRAL


@dataclass
class TrainConfig:
    """How a run trains; `train.KEY=VALUE` on any command line."""

    lr: float = 1e-3  # peak learning rate (per-group multipliers apply on top)
    min_lr_ratio: float = 0.1  # final learning rate / peak
    schedule: str = "cosine"  # "cosine" (warmup + cosine) or "wsd" (warmup-stable-decay)
    warmup_fraction: float = 0.1  # fraction of max_steps spent in linear warmup
    decay_fraction: float = 0.2  # WSD only: fraction of max_steps spent decaying
    weight_decay: float = 0.1  # AdamW weight decay (none on norms, biases, embeddings)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.95  # AdamW beta2
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float = 1.0  # gradient-norm clipping (0 = off)
    max_steps: int = 200  # optimizer steps (the schedule's length)
    precision: str = field(default="auto", metadata=NEUTRAL)  # Lightning precision; "auto" = bf16-mixed on GPU, 32-true on CPU
    val_every: int = field(default=0, metadata=NEUTRAL)  # validate every N steps (0 = only at the end)
    ckpt_every: int = field(default=50, metadata=NEUTRAL)  # save checkpoints/last.ckpt every N steps (resume point)
    log_every: int = field(default=10, metadata=NEUTRAL)  # log training metrics every N steps
    seed: int = 0  # seed for model init and data order
    accelerator: str = field(default="auto", metadata=NEUTRAL)  # "cpu" | "gpu" | "auto"
    devices: int = field(default=1, metadata=GLOBAL_BATCH)  # devices per node
    num_nodes: int = field(default=1, metadata=GLOBAL_BATCH)  # nodes
    strategy: str = field(default="auto", metadata=NEUTRAL)  # "auto" | "ddp" | "fsdp" | "fsdp2" (ModelParallelStrategy + fully_shard)
    accumulate_grad_batches: int = field(default=1, metadata=GLOBAL_BATCH)  # micro-batches per optimizer step (Lightning's name): global batch = data.batch_size x devices x num_nodes x this
    activation_checkpointing: bool = field(default=False, metadata=NEUTRAL)  # recompute each residual block in backward (torch.utils.checkpoint, non-reentrant): activation memory of one block instead of all, ~1/3 more compute, same gradients
    compile: bool = field(default=False, metadata=NEUTRAL)  # torch.compile the training forward (dnahnet/compiled.py; eager fallback, logged)
    loggers: tuple[str, ...] = field(default=("csv",), metadata=NEUTRAL)  # where metrics go (dnahnet/tracking.py): csv (always) + tensorboard, wandb, mlflow
    mlflow_uri: str = field(default="", metadata=NEUTRAL)  # MLflow tracking URI ("" = $MLFLOW_TRACKING_URI, else SQLite: SWEEP/ or RUN/mlflow.db)
