"""train.compile: torch.compile of the training forward, equal to eager, with a logged fallback."""

from __future__ import annotations

import logging

import pytest
import torch

import dnahnet
from dnahnet import compiled as compiled_mod
from dnahnet.compiled import MaybeCompiled


def test_disabled_is_the_model_itself():
    model = dnahnet.build_model("transformer", "tiny")
    ids = torch.randint(0, 4, (2, 16))
    assert torch.equal(MaybeCompiled(model, enabled=False)(ids).logits, model(ids).logits)


def test_a_compiler_failure_falls_back_to_eager_and_is_logged_once(monkeypatch, caplog):
    calls = []

    def broken_compile(fn):
        def run(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("backend compiler failed: no C++ compiler")
        return run

    monkeypatch.setattr(compiled_mod.torch, "compile", broken_compile)
    model = dnahnet.build_model("transformer", "tiny")
    ids = torch.randint(0, 4, (2, 16))
    wrapped = MaybeCompiled(model, enabled=True, name="transformer")
    with caplog.at_level(logging.WARNING, logger="dnahnet.compiled"):
        first, second = wrapped(ids), wrapped(ids)
    assert torch.equal(first.logits, model(ids).logits) and torch.equal(second.logits, first.logits)
    assert len(calls) == 1, "a failed compilation is not retried at every step"
    warnings = [r for r in caplog.records if "torch.compile of transformer failed" in r.getMessage()]
    assert len(warnings) == 1 and "no C++ compiler" in wrapped.fell_back


@pytest.mark.slow
def test_compiled_forward_and_gradients_equal_eager():
    torch.manual_seed(0)
    model = dnahnet.build_model("transformer", "tiny")
    ids = torch.randint(0, 4, (2, 32))
    wrapped = MaybeCompiled(model, enabled=True)
    out = wrapped(ids).logits
    assert wrapped.fell_back is None, wrapped.fell_back
    ref = model(ids).logits
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.square().mean(), list(model.parameters()))
    ref_grads = torch.autograd.grad(ref.square().mean(), list(model.parameters()))
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)
