"""FSDP2 sharding of any family (`train.strategy=fsdp2`, and `fsdp`, which maps to it): which modules form
a communication group and in which dtype each group's parameters are all-gathered.

Groups, innermost first:
- the Linear layers of each residual Block (the bulk of the parameters): all-gathered in `param_dtype`
  (bf16 under `bf16-mixed`: half the all-gather traffic and memory of fp32), gradients reduced in fp32;
- each Block's remaining parameters (norms, Mamba-2's A_log / dt_bias / D and its conv, Hyena filters):
  kept in their own dtype (fp32), since they set decay rates and step sizes whose bf16 rounding is a
  relative error of 2^-8 in an exponent;
- the root (embedding, LM head, dnaHNet's routers and W_res): kept fp32, as H-Net keeps the residual
  projection and the router's cosine in fp32.
Buffers (e.g. rotary `inv_freq`) are never cast by FSDP2's policy.
"""

from __future__ import annotations

import torch
from torch import nn


def _policies(param_dtype: torch.dtype | None):
    from torch.distributed.fsdp import MixedPrecisionPolicy

    keep = MixedPrecisionPolicy(param_dtype=None, reduce_dtype=torch.float32)
    low = keep if param_dtype is None else MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    return low, keep


def shard_fsdp2(model: nn.Module, mesh, param_dtype: torch.dtype | None = None) -> int:
    """`fully_shard` `model` over the data-parallel `mesh` in the groups above; returns the number of groups.
    `param_dtype`: the dtype Blocks' Linear weights are all-gathered in (None: their own)."""
    from torch.distributed.fsdp import fully_shard

    from dnahnet.nn.block import Block

    low, keep = _policies(param_dtype)
    groups = 0
    for block in [m for m in model.modules() if isinstance(m, Block)]:
        linears = [m for m in block.modules() if isinstance(m, nn.Linear)]
        if linears and param_dtype is not None:
            fully_shard(linears, mesh=mesh, mp_policy=low)
            groups += 1
        fully_shard(block, mesh=mesh, mp_policy=keep)
        groups += 1
    fully_shard(model, mesh=mesh, mp_policy=keep)
    return groups + 1


def param_dtype_for(precision: str) -> torch.dtype | None:
    """The all-gather dtype of Blocks' Linear weights under a Lightning precision flag (None: as stored)."""
    precision = str(precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    if precision.startswith("16"):
        return torch.float16
    return None
