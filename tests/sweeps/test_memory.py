"""sweeps/memory.py: the measured activation bytes per token scale with the batch as assumed, checkpointing
saves less, and the planner's micro-batches fit the budget (the largest divisor that does)."""

import pytest
import torch

import dnahnet
from dnahnet.registry import get_config
from sweeps.memory import FRAGMENTATION, OPTIMIZER_BYTES_PER_PARAM, plan_micro_batch, saved_bytes_per_token

OVER = dict(d_model=32, n_layers=2, n_heads=2, mlp_multiple=16)


def test_saved_bytes_are_per_token_and_checkpointing_saves_less():
    torch.manual_seed(0)
    model = dnahnet.build_model("transformer", "tiny", **OVER)
    a, b = saved_bytes_per_token(model, 128), saved_bytes_per_token(model, 256)
    assert a > 32 * 2 * 2  # at least the bf16 residual stream per block per token
    assert abs(a - b) / a < 0.15  # linear in the tokens (SDPA saves O(L), not O(L^2))
    assert saved_bytes_per_token(model, 256, checkpointing=True) < 0.6 * b
    assert not any(m.checkpointing for m in model.modules() if hasattr(m, "checkpointing"))  # restored


def test_plan_fits_the_budget_and_is_the_largest_divisor():
    cfg = get_config("transformer", "tiny", None, **OVER)
    params = dnahnet.build_model("transformer", "tiny", **OVER).param_counts().total
    roomy = plan_micro_batch("transformer", cfg, params, 1024, per_device_batch=16, memory_gb=64)
    assert (roomy.micro_batch, roomy.accumulate, roomy.checkpointing) == (16, 1, False)
    per_token = roomy.bytes_per_token
    # A budget that holds 5 windows (not 8): micro-batch 4 (the largest divisor of 16 below 5), accumulate 4.
    need = lambda m: (OPTIMIZER_BYTES_PER_PARAM * params + m * 1024 * per_token) * FRAGMENTATION / 2**30  # noqa: E731
    tight = plan_micro_batch("transformer", cfg, params, 1024, per_device_batch=16, memory_gb=need(5))
    assert (tight.micro_batch, tight.accumulate, tight.checkpointing) == (4, 4, False)
    assert tight.estimate_gb <= need(5)
    # Less than one window without checkpointing: checkpointing.
    small = plan_micro_batch("transformer", cfg, params, 1024, per_device_batch=16, memory_gb=need(1) * 0.99)
    assert small.checkpointing and small.estimate_gb <= need(1) * 0.99
    with pytest.raises(ValueError, match="device-memory-gb"):
        plan_micro_batch("transformer", cfg, params, 1024, per_device_batch=16, memory_gb=1e-6)
