"""The one LightningModule that trains every model family.

Objective: next-nucleotide cross-entropy (nats) + the model's auxiliary loss (dnaHNet's ratio loss).
Logged: loss in nats and bits per nucleotide, perplexity, auxiliary metrics, cumulative tokens and training
FLOPs (analytic, from the model's FLOPs per token); through Lightning's callbacks (`configure_callbacks`),
the learning rate of each parameter group (`lr/<group>`, LearningRateMonitor) and throughput
(`train/device/items_per_sec` = nucleotides/s, `train/device/flops_per_sec`, MFU on known GPUs;
ThroughputMonitor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
import torchmetrics

from dnahnet import config as cfglib
from dnahnet.compiled import MaybeCompiled
from dnahnet.nn.lm import LMOutput
from dnahnet.registry import build_model_from_config, config_from_dict
from dnahnet.schedules import SCHEDULES, lr_factor

LN2 = math.log(2.0)
IGNORE_INDEX = -100


@dataclass
class TrainConfig:
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
    precision: str = "auto"  # Lightning precision; "auto" = bf16-mixed on GPU, 32-true on CPU
    val_every: int = 0  # validate every N steps (0 = only at the end)
    ckpt_every: int = 50  # save checkpoints/last.ckpt every N steps (resume point)
    log_every: int = 10  # log training metrics every N steps
    seed: int = 0  # seed for model init and data order
    accelerator: str = "auto"  # "cpu" | "gpu" | "auto"
    devices: int = 1  # devices per node
    num_nodes: int = 1  # nodes
    strategy: str = "auto"  # "auto" | "ddp" | "fsdp" | "fsdp2" (ModelParallelStrategy + fully_shard)
    compile: bool = False  # torch.compile the training forward (dnahnet/compiled.py; eager fallback, logged)
    loggers: tuple[str, ...] = ("csv",)  # where metrics go (dnahnet/tracking.py): csv (always) + tensorboard, wandb, mlflow
    mlflow_uri: str = ""  # MLflow tracking URI ("" = $MLFLOW_TRACKING_URI, else SQLite: SWEEP/ or RUN/mlflow.db)


@dataclass
class BatchLoss:
    """The next-nucleotide loss of one batch."""

    nll_sum: torch.Tensor  # scalar: summed negative log-likelihood over the scored positions (nats)
    nll: torch.Tensor  # scalar: nll_sum / n_tokens, the mean per scored nucleotide (nats)
    n_tokens: int  # scored positions (labels != IGNORE_INDEX)
    output: LMOutput  # the forward pass (aux_loss, metrics)


def param_groups(model, weight_decay: float, base_lr: float) -> list[dict]:
    """AdamW groups keyed by (decay?, lr multiplier), each with a `name` ("decay", "no_decay", "decay_x2",
    ...: the LearningRateMonitor's column `lr/<name>`). Which parameters decay is the model's recipe
    (`LanguageModel.weight_decay_names`); a plain module gets the generic rule: matrices only (no decay on
    norms, biases, embeddings)."""
    if hasattr(model, "weight_decay_names"):
        decayed = model.weight_decay_names()
    else:
        embedding_params = {
            id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()
        }
        decayed = {n for n, p in model.named_parameters() if p.ndim >= 2 and id(p) not in embedding_params}
    multipliers = model.lr_multipliers() if hasattr(model, "lr_multipliers") else {}
    groups: dict[tuple[bool, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = name in decayed
        mult = float(multipliers.get(name, 1.0))
        if (decay, mult) not in groups:
            label = ("decay" if decay else "no_decay") + ("" if mult == 1.0 else f"_x{mult:g}")
            if any(g["name"] == label for g in groups.values()):  # two multipliers equal to 6 digits
                label += f"_{mult!r}"
            groups[(decay, mult)] = {"params": [], "names": [], "name": label,
                                     "weight_decay": weight_decay if decay else 0.0, "lr": base_lr * mult,
                                     "lr_multiplier": mult}
        groups[(decay, mult)]["params"].append(p)
        groups[(decay, mult)]["names"].append(name)
    return list(groups.values())


class LitLM(L.LightningModule):
    """Trains any registered family: `LitLM("dnahnet", model_config_dict, train_config_dict, seq_len)`."""

    def __init__(self, family: str, model_config: dict, train_config: dict, seq_len: int):
        super().__init__()
        self.save_hyperparameters()
        self.family = family
        self.train_cfg = cfglib.from_dict(TrainConfig, train_config)
        if self.train_cfg.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {SCHEDULES}, got {self.train_cfg.schedule!r}")
        self.seq_len = seq_len
        self.model = build_model_from_config(family, config_from_dict(family, model_config))
        self.flops_per_token = self.model.flops_per_token(seq_len)
        # Cumulative counters, saved in checkpoints so a resumed run keeps counting.
        self.tokens_seen = 0
        self.flops_planned = 0.0  # tokens x analytic training FLOPs per token (target ratios)
        self.flops_actual = 0.0  # tokens x training FLOPs per token from measured quantities
        # Validation: summed NLL and scored-token count, reduced across ranks (each window is scored once:
        # dnahnet.data.module.EvalShardSampler). float64: a float32 count stops at 2^24 tokens.
        self.val_loss_sum = torchmetrics.SumMetric().set_dtype(torch.float64)
        self.val_token_count = torchmetrics.SumMetric().set_dtype(torch.float64)
        self.flops_per_batch = 0.0  # FLOPs of the last batch on this device (read by ThroughputMonitor)
        self.validated_step: int | None = None  # the global step of this process's latest validation
        self._forward = MaybeCompiled(self.model, self.train_cfg.compile, family)

    # ------------------------------------------------------------------ objective
    def _loss(self, batch) -> BatchLoss:
        out = self._forward(batch["input_ids"]) if self.training else self.model(batch["input_ids"])
        logits = out.logits.float()  # (B, L, V)
        labels = batch["labels"]  # (B, L)
        nll_sum = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        n_tokens = int((labels != IGNORE_INDEX).sum())
        return BatchLoss(nll_sum, nll_sum / max(1, n_tokens), n_tokens, out)

    def training_step(self, batch, batch_idx):
        batch_loss = self._loss(batch)
        nll, out = batch_loss.nll, batch_loss.output
        loss = nll if out.aux_loss is None else nll + out.aux_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss {loss.item()} at step {self.global_step}")
        world = self.trainer.world_size if self.trainer else 1
        step_tokens = batch_loss.n_tokens * world
        metrics = {k: float(v) for k, v in out.metrics.items()}
        measured = self.model.measured_flops_per_token(self.seq_len, metrics)
        self.tokens_seen += step_tokens
        self.flops_planned += step_tokens * self.flops_per_token.training
        self.flops_actual += step_tokens * measured.training
        self.flops_per_batch = batch["input_ids"].numel() * measured.training
        log = {
            "train/loss": nll.detach(),
            "train/bpn": nll.detach() / LN2,
            "train/ppl": torch.exp(nll.detach()),
            "tokens": float(self.tokens_seen),
            "flops": float(self.flops_actual),
            "flops_planned": float(self.flops_planned),
        }
        if out.aux_loss is not None:
            log["train/aux_loss"] = out.aux_loss.detach()
        log.update({f"train/{k}": v for k, v in out.metrics.items()})
        self.log_dict(log, on_step=True, on_epoch=False, prog_bar=False)
        self.log("loss", nll.detach(), prog_bar=True, on_step=True, on_epoch=False, logger=False)
        return loss

    def validation_step(self, batch, batch_idx):
        batch_loss = self._loss(batch)
        out = batch_loss.output
        self.val_loss_sum.update(batch_loss.nll_sum.detach())
        self.val_token_count.update(torch.tensor(float(batch_loss.n_tokens), device=batch_loss.nll_sum.device))
        metrics = {k: float(v) for k, v in out.metrics.items()}
        self.flops_per_batch = (batch["input_ids"].numel()
                                * self.model.measured_flops_per_token(self.seq_len, metrics).forward)
        for k, v in out.metrics.items():
            self.log(f"val/{k}", v, on_step=False, on_epoch=True, sync_dist=True)

    def on_validation_epoch_end(self):
        total, count = self.val_loss_sum.compute(), self.val_token_count.compute()
        self.val_loss_sum.reset()
        self.val_token_count.reset()
        loss = total / count.clamp_min(1)
        # Already reduced across ranks by the SumMetrics; sync_dist only silences Lightning's warning.
        self.log_dict({"val/loss": loss, "val/bpn": loss / LN2, "val/ppl": torch.exp(loss)}, prog_bar=True,
                      sync_dist=True)
        self.log_dict({"tokens": float(self.tokens_seen), "flops": float(self.flops_actual)}, sync_dist=True)
        self.validated_step = int(self.global_step)

    # ------------------------------------------------------------------ monitoring
    def configure_callbacks(self):
        """Learning rate per parameter group and throughput, logged by Lightning's own callbacks (next to
        this module's metrics, every `log_every` steps). Not without a logger: they would have nowhere to
        write (and LearningRateMonitor refuses to start)."""
        from lightning.pytorch.callbacks import LearningRateMonitor, ThroughputMonitor

        if not self.trainer.loggers:
            return []
        return [
            LearningRateMonitor(logging_interval="step"),
            # Rates over the last `log_every` batches (the window spans log_every + 1 updates); items are
            # nucleotide positions, FLOPs `flops_per_batch` (the model's count for the measured rates).
            ThroughputMonitor(batch_size_fn=lambda batch: batch["input_ids"].shape[0],
                              length_fn=lambda batch: batch["input_ids"].numel(),
                              window_size=max(2, self.train_cfg.log_every + 1)),
        ]

    # ------------------------------------------------------------------ parallelism
    def configure_model(self) -> None:
        """FSDP2 (`train.strategy="fsdp2"`: Lightning's ModelParallelStrategy, which sets `device_mesh`):
        `fully_shard` every residual Block, then the whole model, over the data-parallel mesh dimension.
        Lightning calls this hook again for `validate` after `fit`: sharding happens once."""
        mesh = self.device_mesh
        if mesh is None:
            return
        from torch.distributed.fsdp import FSDPModule, fully_shard

        from dnahnet.nn.block import Block

        if isinstance(self.model, FSDPModule):
            return
        dp_mesh = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names else mesh
        for module in self.model.modules():
            if isinstance(module, Block):
                fully_shard(module, mesh=dp_mesh)
        fully_shard(self.model, mesh=dp_mesh)

    # ------------------------------------------------------------------ optimisation
    def configure_optimizers(self):
        c = self.train_cfg
        groups = param_groups(self.model, c.weight_decay, c.lr)
        for g in groups:
            g.pop("names")
        optimizer = torch.optim.AdamW(groups, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps)
        warmup = int(round(c.warmup_fraction * c.max_steps))

        def factor(step: int) -> float:
            return lr_factor(c.schedule, step, c.max_steps, warmup, c.min_lr_ratio, c.decay_fraction)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        # "name": LearningRateMonitor logs each group's learning rate as lr/<group name>.
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint):
        checkpoint["counters"] = {
            "tokens_seen": self.tokens_seen, "flops_planned": self.flops_planned, "flops_actual": self.flops_actual,
        }

    def on_load_checkpoint(self, checkpoint):
        counters = checkpoint.get("counters", {})
        self.tokens_seen = int(counters.get("tokens_seen", 0))
        self.flops_planned = float(counters.get("flops_planned", 0.0))
        self.flops_actual = float(counters.get("flops_actual", 0.0))
