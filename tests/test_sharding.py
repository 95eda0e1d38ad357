"""dnahnet.sharding: FSDP2's mixed-precision groups (issue 26), in one gloo process on CPU. During the
forward, Blocks' Linear weights are all-gathered in bf16; Mamba-2's A_log / dt_bias / D, the router and
W_res stay float32, the rotary buffer is never cast; a step trains (finite loss, fp32 gradients). The forward
runs under bf16 autocast, as Lightning's bf16-mixed does (a Block's fp32 conv meets bf16 activations)."""

import socket

import pytest
import torch
import torch.distributed as dist

import dnahnet
from dnahnet.sharding import param_dtype_for, shard_fsdp2


@pytest.fixture
def process_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_bf16_groups_keep_fp32_parameters_fp32(process_group):
    from torch.distributed.device_mesh import init_device_mesh

    torch.manual_seed(0)
    model = dnahnet.build_model("dnahnet", "tiny", d_model=(16, 24), d_intermediate=(0, 32), n_heads=(2, 2),
                                layout=["m1", ["T1"], "m1"], window=(15,), ratios=(3.0,),
                                lr_multipliers=(1.5, 1.0), chunk_size=8, ema_chunk_size=8)
    mamba = next(m for m in model.modules() if type(m).__name__ == "Mamba2")
    attn = next(m for m in model.modules() if type(m).__name__ == "Attention")
    stage = next(m for m in model.modules() if type(m).__name__ == "HNetStage" and hasattr(m, "router"))
    seen = {}

    def record(name, get):
        return lambda module, args: seen.__setitem__(name, get(module).dtype)

    hooks = [mamba.in_proj.register_forward_pre_hook(record("in_proj", lambda m: m.weight)),
             mamba.register_forward_pre_hook(record("A_log", lambda m: m.A_log)),
             mamba.register_forward_pre_hook(record("dt_bias", lambda m: m.dt_bias)),
             mamba.register_forward_pre_hook(record("D", lambda m: m.D)),
             attn.Wqkv.register_forward_pre_hook(record("Wqkv", lambda m: m.weight)),
             attn.rotary.register_forward_pre_hook(record("inv_freq", lambda m: m.inv_freq)),
             stage.router.q_proj.register_forward_pre_hook(record("router", lambda m: m.weight))]
    residual = stage.residual
    hooks.append(residual.register_forward_pre_hook(
        record("W_res", lambda m: next(p for p in m.parameters() if p.ndim == 2))))
    assert param_dtype_for("bf16-mixed") == torch.bfloat16 and param_dtype_for("32-true") is None
    groups = shard_fsdp2(model, init_device_mesh("cpu", (1,)), torch.bfloat16)
    assert groups > 3
    ids = torch.randint(0, 4, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as Lightning's bf16-mixed runs it
        out = model(ids)
    loss = torch.nn.functional.cross_entropy(out.logits.float().flatten(0, 1), ids.flatten()) + out.aux_loss
    loss.backward()
    for h in hooks:
        h.remove()
    assert seen["in_proj"] == seen["Wqkv"] == torch.bfloat16
    assert seen["A_log"] == seen["dt_bias"] == seen["D"] == seen["router"] == seen["W_res"] == torch.float32
    assert seen["inv_freq"] == torch.float32
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
