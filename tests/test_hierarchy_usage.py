"""dnahnet.hierarchy_usage and the model's ablation switch (`DNAHNet.inner_output_zeroed`).

Pinned: usage is exactly 0 when the silenced output is already 0 (the main network's, or stage 1's, final
norm weight set to 0); the switch changes the logits otherwise, also in prefill/step decoding, and is off
again after the block; a briefly trained model uses its hierarchy (usage > 0); the value equals a float64
loop over the windows with the stage's z' zeroed by a forward hook; non-dnaHNet models report nothing."""

from __future__ import annotations

import math

import pytest
import torch

from dnahnet.hierarchy_usage import hierarchy_usage, usage_stages
from dnahnet.registry import build_model

MODEL = dict(d_model=(16, 24, 32), d_intermediate=(0, 48, 64), n_heads=(2, 2, 2),
             layout=["m1", ["T1", ["T1"], "T1"], "m1"], chunk_size=16, ema_chunk_size=16)


def _model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("dnahnet", "tiny", None, **MODEL)


def _periodic_batches(n_batches: int = 4, batch: int = 4, length: int = 48, seed: int = 0) -> list[dict]:
    """Windows of a period-7 motif with random substitutions: predictable from a long context."""
    g = torch.Generator().manual_seed(seed)
    motif = torch.tensor([0, 2, 1, 3, 3, 0, 2])
    out = []
    for _ in range(n_batches):
        phase = torch.randint(0, 7, (batch, 1), generator=g)
        seq = motif[(torch.arange(length + 1)[None] + phase) % 7]  # (B, L + 1)
        noise = torch.rand(seq.shape, generator=g) < 0.1
        seq = torch.where(noise, torch.randint(0, 4, seq.shape, generator=g), seq)
        out.append({"input_ids": seq[:, :-1], "labels": seq[:, 1:]})
    return out


def test_usage_is_exactly_zero_when_the_silenced_output_is_already_zero():
    model = _model().eval()
    batches = _periodic_batches(2)
    stages = model.stages()
    with torch.no_grad():
        stages[-1].main.norm_f.weight.zero_()  # the main network outputs zeros: stage 1's z' is 0 anyway
    usage = hierarchy_usage(model, batches)
    assert set(usage) == {0, 1} and usage[1] == 0.0 and usage[0] != 0.0
    with torch.no_grad():
        stages[1].decoder.norm_f.weight.zero_()  # stage 1 outputs zeros: stage 0's z' is 0 anyway
    assert hierarchy_usage(model, batches)[0] == 0.0


def test_switch_changes_forward_and_decoding_and_turns_off_again():
    model = _model().eval()
    ids = _periodic_batches(1)[0]["input_ids"][:1, :24]  # (1, 24)
    with torch.no_grad():
        real = model(ids).logits
        with model.inner_output_zeroed(0):
            ablated = model(ids).logits
            cache = model.init_cache(1, 24)
            stepped = torch.stack([model.step(ids[:, t], cache) for t in range(24)], dim=1)  # (1, 24, V)
        again = model(ids).logits
    assert not torch.allclose(real, ablated)
    assert torch.allclose(stepped, ablated, atol=1e-4)  # step decoding honours the switch too
    assert torch.equal(real, again)
    with pytest.raises(ValueError, match="stages 0..1"):
        with model.inner_output_zeroed(2):
            pass


def test_usage_matches_a_float64_loop_with_a_hook_and_is_positive_after_training():
    model = _model(1)
    batches = _periodic_batches(6, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(60):  # brief training on the periodic windows
        b = batches[step % 4]
        out = model(b["input_ids"])
        loss = torch.nn.functional.cross_entropy(out.logits.transpose(1, 2), b["labels"]) + out.aux_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    held = batches[4:]
    usage = hierarchy_usage(model, held)
    assert usage[0] > 0 and usage[1] > 0, usage

    def nll(hook_stage: int | None) -> float:
        """Mean NLL in float64; the stage's inner output replaced by zeros through a forward hook."""
        handle = None
        if hook_stage is not None:
            inner = model.stages()[hook_stage].inner
            handle = inner.register_forward_hook(
                lambda mod, args, out: type(out)(torch.zeros_like(out.hidden), out.traces))
        total, count = 0.0, 0
        with torch.no_grad():
            for b in held:
                logp = model(b["input_ids"]).logits.double().log_softmax(-1)
                total -= float(logp.gather(-1, b["labels"][..., None]).sum())
                count += b["labels"].numel()
        if handle is not None:
            handle.remove()
        return total / count

    base = nll(None)
    for s in (0, 1):
        assert usage[s] == pytest.approx(nll(s) - base, abs=1e-5)


def test_other_families_report_no_usage():
    torch.manual_seed(0)
    model = build_model("transformer", "tiny")
    assert usage_stages(model) == [] and hierarchy_usage(model, _periodic_batches(1)) == {}
    assert math.isfinite(sum(hierarchy_usage(_model(), _periodic_batches(1)).values()))


def test_cli_names_a_missing_model_in_one_line(tmp_path, capsys):
    from dnahnet.hierarchy_usage import main

    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot load a model from") and "missing" in err[0]
