"""Analytic FLOP counts (dnahnet/flops.py) against torch's FlopCounterMode on the real modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dnahnet import flops as fl
from dnahnet.nn.mamba2 import Mamba2


@pytest.mark.parametrize(
    "d_model,d_state,headdim,ngroups,chunk,seq_len",
    [
        (64, 16, 16, 1, 32, 128),  # 4 full chunks
        (64, 16, 16, 2, 32, 100),  # two groups; the last chunk padded (100 = 3 x 32 + 4)
        (48, 8, 8, 1, 16, 83),
        (32, 8, 16, 1, 64, 40),  # shorter than one chunk: Q = L
    ],
)
def test_mamba2_flops_against_flop_counter_on_the_chunked_path(d_model, d_state, headdim, ngroups, chunk, seq_len):
    """FlopCounterMode sees the chunked path's matmuls and its convolution. The expected count is written
    out here term by term from the shapes in dnahnet/nn/mamba2.py and dnahnet/nn/ssd.py; mamba2_flops must
    equal its linear and conv terms plus the recurrence convention (6 e d n SSD + 5 e d gating), i.e. it
    leaves out exactly the chunked algorithm's own work (documented in mamba2_flops)."""
    torch.manual_seed(0)
    batch, expand, d_conv = 2, 2, 4
    m = Mamba2(d_model, d_state=d_state, headdim=headdim, ngroups=ngroups, chunk_size=chunk, backend="torch")
    with FlopCounterMode(display=False) as counter:
        m(torch.randn(batch, seq_len, d_model))
    counted = counter.get_total_flops() / (batch * seq_len)

    di, g, n = expand * d_model, ngroups, d_state
    heads = di // headdim
    linear = 2 * d_model * (2 * di + 2 * g * n + heads) + 2 * di * d_model  # in_proj + out_proj
    conv = 2 * (di + 2 * g * n) * d_conv  # depthwise causal conv over x, B, C
    q = min(chunk, seq_len)
    c = math.ceil(seq_len / q)
    per_chunk = 2 * q * q * g * n + 2 * q * q * di + 2 * q * di * n + 2 * q * di * n  # C B^T, apply, states, readout
    passing = 2 * (c + 1) ** 2 * di * n  # segment-sum matrix x states, per sequence
    ssd = (c * per_chunk + passing) / seq_len
    assert counted == pytest.approx(linear + conv + ssd, rel=1e-12)

    kw = dict(d_state=d_state, expand=expand, headdim=headdim, ngroups=ngroups, d_conv=d_conv)
    assert fl.mamba2_flops(d_model, **kw) == pytest.approx(linear + conv + 6 * di * n + 5 * di, rel=1e-12)
    assert fl.ssd_chunked_flops(di, n, g, chunk, seq_len) == pytest.approx(ssd, rel=1e-12)
    assert fl.mamba2_chunked_flops(d_model, seq_len, chunk_size=chunk, **kw) == pytest.approx(counted, rel=1e-12)
    # chunk_size does not change the budget count (the recurrence convention)
    assert fl.mamba2_flops(d_model, chunk_size=chunk, **kw) == fl.mamba2_flops(d_model, chunk_size=4 * chunk, **kw)


def test_intra_chunk_work_left_out_of_the_budget_count_at_a_real_size():
    """The number quoted in mamba2_flops' docstring: at d 256, n 128, Q 256 the intra-chunk quadratic form
    alone is 2 Q (e d + ng n) = 328k FLOPs per token, a quarter of the counted 1.32M."""
    intra = 2 * 256 * (512 + 128)
    assert intra == 327_680 and fl.mamba2_flops(256, 128) == 1_323_520
    extra = fl.mamba2_chunked_flops(256, 8192, 128) - (fl.mamba2_flops(256, 128) - 6 * 512 * 128 - 5 * 512)
    assert extra == pytest.approx(intra + 4 * 512 * 128 + 2 * 33**2 * 512 * 128 / 8192, rel=1e-12)
