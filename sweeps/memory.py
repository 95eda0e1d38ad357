"""Per-device micro-batches that fit a memory budget (`--device-memory-gb`): the sweep planner's memory rule.

Training memory of one device, bf16-mixed (fp32 weights, autocast activations), AdamW:

    memory = 16 bytes x params                         fp32 weights, fp32 gradients, two fp32 Adam moments
           + micro_batch x seq_len x bytes_per_token    activations saved for backward
           x 1.25                                        allocator fragmentation and transient buffers

`bytes_per_token` is measured, not guessed per family: one forward of the model at a short probe length
under bf16 autocast on the CPU, summing the bytes of every distinct tensor autograd saves for backward
(`torch.autograd.graph.saved_tensors_hooks`), divided by the tokens. It covers every family the same way
(attention saves O(L) with SDPA's fused kernels, Mamba-2's chunked scan its chunk intermediates, dnaHNet's
inner stages at their shorter lengths: the probe holds boundaries at the target ratios). With activation
checkpointing each Block saves only its input, measured the same way, plus one Block's activations
recomputed in backward (the uncheckpointed bytes / the number of Blocks).

The planner takes the largest micro-batch dividing the per-device batch that fits, first without, then with
checkpointing; the rest is gradient accumulation (`train.accumulate_grad_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dnahnet.nn.block import Block, set_activation_checkpointing
from dnahnet.registry import build_model_from_config

OPTIMIZER_BYTES_PER_PARAM = 16  # fp32 weight + gradient + Adam exp_avg + exp_avg_sq
FRAGMENTATION = 1.25  # headroom over the estimate: allocator blocks, temporaries of the largest op
PROBE_LEN = 512  # tokens per probe sequence: past dnaHNet's chunking, short enough for a CPU forward


@dataclass
class MemoryPlan:
    micro_batch: int  # windows per device per forward/backward (data.batch_size)
    accumulate: int  # micro-batches per optimizer step (train.accumulate_grad_batches)
    checkpointing: bool  # train.activation_checkpointing
    estimate_gb: float  # estimated peak memory of one device (GiB)
    bytes_per_token: float  # activation bytes per token at this checkpointing setting


def saved_bytes_per_token(model: torch.nn.Module, seq_len: int = PROBE_LEN, checkpointing: bool = False) -> float:
    """Bytes autograd saves for backward per token, one bf16-autocast forward of a batch of 1 on the CPU."""
    was_training = model.training
    model.train()
    set_activation_checkpointing(model, checkpointing)
    seen: dict[tuple[int, int], int] = {}

    def pack(t: torch.Tensor):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        seen[key] = t.untyped_storage().nbytes()
        return t

    ids = torch.randint(0, 4, (1, seq_len), generator=torch.Generator().manual_seed(0))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
                torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids)
    finally:
        set_activation_checkpointing(model, False)
        model.train(was_training)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for (ptr, _), n in seen.items() if ptr not in params) / seq_len


def plan_micro_batch(family: str, model_cfg, params: int, seq_len: int, per_device_batch: int, memory_gb: float,
                     model: torch.nn.Module | None = None) -> MemoryPlan:
    """The micro-batch, accumulation and checkpointing for `per_device_batch` windows of `seq_len` per step
    within `memory_gb`; a ValueError when not even one window fits with checkpointing."""
    model = model or build_model_from_config(family, model_cfg)
    if hasattr(model, "set_fixed_boundaries") and getattr(model_cfg, "ratios", None):
        model.set_fixed_boundaries([max(1, round(r)) for r in model_cfg.ratios])
    n_blocks = max(1, sum(isinstance(m, Block) for m in model.modules()))
    full = saved_bytes_per_token(model)
    ckpt = saved_bytes_per_token(model, checkpointing=True) + full / n_blocks
    fixed = OPTIMIZER_BYTES_PER_PARAM * params
    budget = memory_gb * 2**30
    for checkpointing, per_token in ((False, full), (True, ckpt)):
        for micro in sorted((d for d in range(1, per_device_batch + 1) if per_device_batch % d == 0), reverse=True):
            need = (fixed + micro * seq_len * per_token) * FRAGMENTATION
            if need <= budget:
                return MemoryPlan(micro, per_device_batch // micro, checkpointing, need / 2**30, per_token)
    need = (fixed + seq_len * ckpt) * FRAGMENTATION / 2**30
    raise ValueError(f"{family}: one window of {seq_len} needs ~{need:.1f} GiB with activation checkpointing, "
                     f"more than --device-memory-gb {memory_gb:g}; use more devices (FSDP) or a shorter context")

