"""The one LightningModule that trains every model family.

Objective: next-nucleotide cross-entropy (nats) + the model's auxiliary loss (dnaHNet's ratio loss).
Logged: loss in nats and bits per nucleotide, perplexity, auxiliary metrics, cumulative tokens and training
FLOPs (analytic, from the model's FLOPs per token); through Lightning's callbacks (`configure_callbacks`),
the learning rate of each parameter group (`lr/<group>`, LearningRateMonitor) and throughput
(`train/device/items_per_sec` = nucleotides/s, `train/device/flops_per_sec`, MFU on known GPUs;
ThroughputMonitor).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from lightning.pytorch.trainer.states import TrainerFn

from dnahnet import typed_config as cfglib
from dnahnet.compiled import MaybeCompiled
from dnahnet.hierarchy_usage import ablated_nll_sums, usage_stages
from dnahnet.hierarchy_usage import column as usage_column
from dnahnet.nn.block import set_activation_checkpointing
from dnahnet.nn.lm import LMOutput
from dnahnet.registry import build_model_from_config
from dnahnet.run_config import RunConfig
from dnahnet.schedules import lr_factor
from dnahnet.train_config import TrainConfig

log = logging.getLogger(__name__)

LN2 = math.log(2.0)
IGNORE_INDEX = -100


@dataclass
class ValWindows:
    """The latest validation, window by window, over all ranks (`dnahnet.window_losses` writes it)."""

    losses: np.ndarray  # (n,) float64: each window's mean NLL, nats per nucleotide, in window order
    tokens: np.ndarray  # (n,) int64: scored tokens per window
    mean: float  # token-weighted mean: the validation loss


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
    """Trains any registered family: `LitLM(run)`, `run` a `dnahnet.run_config.RunConfig`."""

    def __init__(self, run: RunConfig):
        super().__init__()
        self.run = run  # the run's configuration: model, training and data settings (its context: run.seq_len)
        # What a checkpoint records (`dnahnet.checkpoint` rebuilds the model from family and model_config; the
        # trackers log these as the run's parameters): plain values, so checkpoints load with weights_only=True.
        self.save_hyperparameters({"family": run.family, "model_config": cfglib.to_dict(run.model),
                                   "train_config": cfglib.to_dict(run.train), "seq_len": run.seq_len})
        self.model = build_model_from_config(run.family, run.model)
        self.flops_per_token = self.model.flops_per_token(run.seq_len)
        # Cumulative counters, saved in checkpoints so a resumed run keeps counting.
        self.tokens_seen = 0
        self.flops_planned = 0.0  # tokens x analytic training FLOPs per token (target ratios)
        self.flops_actual = 0.0  # tokens x training FLOPs per token from measured quantities
        # Validation: summed NLL and scored-token count, reduced across ranks (each window is scored once:
        # dnahnet.data.module.EvalShardSampler). float64: a float32 count stops at 2^24 tokens.
        self.val_loss_sum = torchmetrics.SumMetric().set_dtype(torch.float64)
        self.val_token_count = torchmetrics.SumMetric().set_dtype(torch.float64)
        # Hierarchy usage (dnahnet/hierarchy_usage.py), measured at the final validation only (it costs one
        # forward per chunking stage): summed NLL with each stage's inner output zeroed, reduced like the loss.
        self.usage_stages = usage_stages(self.model)
        self.val_ablated_sum = torch.nn.ModuleDict(
            {str(s): torchmetrics.SumMetric().set_dtype(torch.float64) for s in self.usage_stages})
        self._measure_usage = False
        # Per-window losses of the latest validation (`val_windows.csv`): each rank's (window index, summed NLL,
        # tokens), gathered over the ranks at the epoch's end into `window_losses` (window order, every window).
        self._windows: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.window_losses: ValWindows | None = None
        self.flops_per_batch = 0.0  # FLOPs of the last batch on this device (read by ThroughputMonitor)
        self.validated_step: int | None = None  # the global step of this process's latest validation
        self._forward = MaybeCompiled(self.model, self.train_cfg.compile, run.family)
        if self.train_cfg.activation_checkpointing:
            set_activation_checkpointing(self.model)
        # Training steps since the last host sync: (scored tokens, metrics) on the device, and the world size.
        self._pending: list[tuple[torch.Tensor, dict[str, torch.Tensor], int]] = []
        self._nonfinite: torch.Tensor | None = None  # device bool: a non-finite loss since the last check
        self._last_measured_training = self.flops_per_token.training  # FLOPs/token for ThroughputMonitor

    @property
    def family(self) -> str:
        return self.run.family

    @property
    def train_cfg(self) -> TrainConfig:
        return self.run.train

    @property
    def seq_len(self) -> int:
        return self.run.seq_len

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

    def _train_loss(self, batch):
        """Training's forward and loss without a host sync: the scored-token count stays on the device."""
        out = self._forward(batch["input_ids"])
        logits = out.logits.float()  # (B, L, V)
        labels = batch["labels"]  # (B, L)
        nll_sum = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        n_tokens = (labels != IGNORE_INDEX).sum()  # device scalar
        return nll_sum / n_tokens.clamp_min(1), n_tokens, out

    def training_step(self, batch, batch_idx):
        nll, n_tokens, out = self._train_loss(batch)
        loss = nll if out.aux_loss is None else nll + out.aux_loss
        # Host syncs only every `log_every` steps (and at the last step): each micro-batch's scored tokens and
        # metrics stay on the device until `_sync_counters`, and a non-finite loss is remembered on the device
        # until `_check_finite`, which all ranks run at the same steps (no rank waits for one that stopped).
        bad = ~torch.isfinite(loss.detach())
        self._nonfinite = bad if self._nonfinite is None else self._nonfinite | bad
        trainer = self._attached_trainer()
        world = trainer.world_size if trainer is not None else 1
        self._pending.append((n_tokens.detach(), {k: v.detach() for k, v in out.metrics.items()}, world))
        self.flops_per_batch = batch["input_ids"].numel() * self._last_measured_training
        if not self._sync_due():
            # Lightning writes a step's metrics only every `log_every` steps: logging them at the other steps
            # costs its result collection ~30 device moves per step for nothing (~4% of a CPU dnaHNet run).
            return loss
        self._check_finite()
        self._sync_counters()
        log = {"tokens": float(self.tokens_seen), "flops": float(self.flops_actual),
               "flops_planned": float(self.flops_planned)}
        self.log_dict(log, on_step=True, on_epoch=False, prog_bar=False)
        self.log("loss", nll.detach(), prog_bar=True, on_step=True, on_epoch=False, logger=False)
        log = {"train/loss": nll.detach(), "train/bpn": nll.detach() / LN2, "train/ppl": torch.exp(nll.detach())}
        if out.aux_loss is not None:
            log["train/aux_loss"] = out.aux_loss.detach()
        log.update({f"train/{k}": v for k, v in out.metrics.items()})
        self.log_dict(log, on_step=True, on_epoch=False, prog_bar=False)  # tensors: read only when written
        return loss

    def _attached_trainer(self):
        """The Trainer, or None when this module is used on its own (Lightning raises on `self.trainer`)."""
        try:
            return self.trainer
        except RuntimeError:
            return None

    def _sync_due(self) -> bool:
        """Whether this step's metrics are written (Lightning logs every `log_every` optimizer steps) or it is
        the run's last: the steps at which the counters and the finiteness flag are read back."""
        trainer = self._attached_trainer()
        if trainer is None:  # called directly (tests): every step syncs
            return True
        # Lightning's rule for writing a step's metrics (its logger connector's `should_update_logs`): the
        # optimizer steps taken, this one included, a multiple of log_every_n_steps. (Not its "or a stop was
        # requested": `should_stop` may be set on one rank only, and `_check_finite` is collective.)
        due = (trainer.global_step + 1) % max(1, trainer.log_every_n_steps) == 0
        return due or trainer.global_step + 1 >= trainer.max_steps > 0

    def _check_finite(self) -> None:
        """Raise FloatingPointError on every rank when any rank saw a non-finite loss since the last check."""
        if self._nonfinite is None:
            return
        flag = self._nonfinite.to(torch.int32)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        self._nonfinite = None
        if bool(flag):
            raise FloatingPointError(f"non-finite training loss at or before step {self.global_step}"
                                     " (on at least one rank)")

    def _sync_counters(self) -> None:
        """Move the pending micro-batches' token counts and metrics to the host (two transfers) and add them
        to the exact cumulative counters, step by step as if each had been read at its own step."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        counts = torch.stack([n for n, _, _ in pending]).tolist()
        keys = sorted(pending[0][1])
        values = torch.stack([torch.stack([m[k].float() for k in keys]) for _, m, _ in pending]).tolist() \
            if keys else [[] for _ in pending]
        for n, row, (_, _, world) in zip(counts, values, pending, strict=True):
            step_tokens = int(n) * world
            measured = self.model.measured_flops_per_token(self.seq_len, dict(zip(keys, row, strict=True)))
            self.tokens_seen += step_tokens
            self.flops_planned += step_tokens * self.flops_per_token.training
            self.flops_actual += step_tokens * measured.training
            self._last_measured_training = measured.training

    def on_train_end(self):
        self._sync_counters()

    def on_validation_epoch_start(self):
        self._windows = []
        # The final validation: the weights a run reports (fit's last step, or `validate` after it).
        final = self.trainer.state.fn != TrainerFn.FITTING or self.global_step >= self.train_cfg.max_steps
        self._measure_usage = bool(self.usage_stages) and final and not self.trainer.sanity_checking

    def validation_step(self, batch, batch_idx):
        batch_loss = self._loss(batch)
        out = batch_loss.output
        self.val_loss_sum.update(batch_loss.nll_sum.detach())
        self.val_token_count.update(torch.tensor(float(batch_loss.n_tokens), device=batch_loss.nll_sum.device))
        self._record_windows(batch, out)
        if self._measure_usage:
            for s, v in ablated_nll_sums(self.model, batch["input_ids"], batch["labels"]).items():
                self.val_ablated_sum[str(s)].update(v.detach())
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
        self._sync_counters()
        if self._measure_usage:
            usage = {}
            for s in self.usage_stages:
                metric = self.val_ablated_sum[str(s)]
                usage[f"val/{usage_column(s)}"] = metric.compute() / count.clamp_min(1) - loss
                metric.reset()
            self.log_dict(usage, sync_dist=True)
        self._gather_windows(float(loss))
        self.log_dict({"tokens": float(self.tokens_seen), "flops": float(self.flops_actual)}, sync_dist=True)
        self.validated_step = int(self.global_step)

    # ------------------------------------------------------------------ per-window losses
    def _record_windows(self, batch, out) -> None:
        """Each window's summed NLL and scored tokens, keyed by its global index (the eval datasets put it in
        `batch["window"]`; -1 marks a padding item of `EvalShardSampler`). Without that key the windows
        are numbered in loader order, which is their global order in a single process only."""
        labels = batch["labels"]  # (B, L)
        nll = F.cross_entropy(out.logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
                              reduction="none")  # (B, L)
        index = batch.get("window")
        if index is None:
            if self.trainer.world_size > 1:
                return
            start = sum(len(w[0]) for w in self._windows)
            index = torch.arange(start, start + labels.shape[0], device=labels.device)  # (B,)
        self._windows.append((index.detach().long(), nll.detach().double().sum(-1), (labels != IGNORE_INDEX).sum(-1)))

    def _gather_windows(self, loss: float) -> None:
        """`window_losses` from every rank's windows: all_gather of equal-length tensors (each rank's padded with
        index -1 to the longest), padding dropped, sorted by window index; None when incomplete or duplicated."""
        if not self._windows or self.trainer.sanity_checking:
            self.window_losses = None
            return
        index, nll, tokens = (torch.cat(t) for t in zip(*self._windows, strict=True))  # (n,) each
        self._windows = []
        world = self.trainer.world_size
        if world > 1:
            n = torch.tensor([len(index)], device=index.device)
            longest = int(self.all_gather(n).max())
            pad = longest - len(index)
            index = F.pad(index, (0, pad), value=-1)
            nll, tokens = F.pad(nll, (0, pad)), F.pad(tokens, (0, pad))
            index, nll, tokens = (self.all_gather(t).reshape(-1) for t in (index, nll, tokens))  # (world * longest,)
        keep = index >= 0
        index, nll, tokens = index[keep].cpu(), nll[keep].cpu(), tokens[keep].cpu()
        order = torch.argsort(index)
        index, nll, tokens = index[order], nll[order], tokens[order]
        if not torch.equal(index, torch.arange(len(index))):
            log.warning("validation windows gathered over %d rank(s) are not each window once (%d windows); "
                        "no per-window losses", world, len(index))
            self.window_losses = None
            return
        self.window_losses = ValWindows(
            (nll / tokens.clamp_min(1)).numpy(), tokens.numpy(), float(nll.sum() / tokens.sum().clamp_min(1)))
        if abs(self.window_losses.mean - loss) > 1e-5:  # the same windows and weights give the logged loss
            log.warning("per-window losses average %.6f, validation logged %.6f", self.window_losses.mean, loss)

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
        """FSDP2 (`train.strategy="fsdp2"` or `"fsdp"`: Lightning's ModelParallelStrategy, which sets
        `device_mesh`): `fully_shard` each residual Block's matrices (bf16 all-gathers under bf16-mixed), each
        Block, then the whole model, over the data-parallel mesh dimension (dnahnet/sharding.py).
        Lightning calls this hook again for `validate` after `fit`: sharding happens once."""
        mesh = self.device_mesh
        if mesh is None:
            return
        from torch.distributed.fsdp import FSDPModule

        from dnahnet.sharding import param_dtype_for, shard_fsdp2

        if isinstance(self.model, FSDPModule):
            return
        dp_mesh = mesh["data_parallel"] if mesh.mesh_dim_names and "data_parallel" in mesh.mesh_dim_names else mesh
        # Mixed precision of the all-gathers (bf16 Block matrices, fp32 reductions, fp32 W_res/router/SSM
        # parameters): dnahnet.sharding.
        shard_fsdp2(self.model, dp_mesh, param_dtype_for(self.trainer.precision))

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
        # Every rank builds the checkpoint (dump_checkpoint), so the collective check is safe here: a loss
        # that became non-finite since the last logged step must not be saved as the resume point.
        self._check_finite()
        self._sync_counters()
        checkpoint["counters"] = {
            "tokens_seen": self.tokens_seen, "flops_planned": self.flops_planned, "flops_actual": self.flops_actual,
        }

    def on_load_checkpoint(self, checkpoint):
        counters = checkpoint.get("counters", {})
        self._pending = []
        self.tokens_seen = int(counters.get("tokens_seen", 0))
        self.flops_planned = float(counters.get("flops_planned", 0.0))
        self.flops_actual = float(counters.get("flops_actual", 0.0))
