"""Block: activation checkpointing (issue 26) gives the same loss and gradients, bit for bit."""

import pytest
import torch

import dnahnet
from dnahnet.nn.block import Block, set_activation_checkpointing

MODELS = {
    "transformer": dict(d_model=32, n_layers=2, n_heads=2, mlp_multiple=16),
    "dnahnet": dict(d_model=(16, 24), d_intermediate=(0, 32), n_heads=(2, 2), layout=["m1", ["T1"], "m1"],
                    window=(15,), ratios=(3.0,), lr_multipliers=(1.5, 1.0), chunk_size=8, ema_chunk_size=8),
    "stripedhyena": dict(),
}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_checkpointing_is_bit_identical(family):
    ids = torch.randint(0, 4, (2, 48), generator=torch.Generator().manual_seed(0))

    def run(checkpointing: bool):
        torch.manual_seed(0)
        model = dnahnet.build_model(family, "tiny", **MODELS[family]).train()
        n = set_activation_checkpointing(model, checkpointing)
        assert n == sum(isinstance(m, Block) for m in model.modules()) > 0
        out = model(ids)
        loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1).float(), ids.flatten())
        loss = loss + (out.aux_loss if out.aux_loss is not None else 0)
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    calls = []
    original = torch.utils.checkpoint.checkpoint
    torch.utils.checkpoint.checkpoint = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        loss_ckpt, grads_ckpt = run(True)
    finally:
        torch.utils.checkpoint.checkpoint = original
    loss, grads = run(False)
    assert calls  # the checkpointed path ran
    assert torch.equal(loss_ckpt, loss)
    assert grads.keys() == grads_ckpt.keys()
    for name in grads:
        assert torch.equal(grads[name], grads_ckpt[name]), name
