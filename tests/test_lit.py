"""The shared training loop: optimiser groups, learning-rate multipliers, objective."""

import math

import pytest
import torch

import dnahnet
from dnahnet import typed_config as cfglib
from dnahnet.data import DataConfig
from dnahnet.lit import LitLM, param_groups
from dnahnet.run_config import RunConfig
from dnahnet.train_config import TrainConfig


def lit_of(family: str, seq_len: int, train: TrainConfig | None = None, **model) -> LitLM:
    """The LightningModule of a tiny `family` run at context `seq_len`."""
    config = dnahnet.get_config(family, "tiny", **model)
    return LitLM(RunConfig(family, "tiny", None, config, train or TrainConfig(), DataConfig(seq_len=seq_len)))


def test_no_weight_decay_on_norms_biases_embeddings():
    model = dnahnet.build_model("transformer", "tiny")
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    decayed = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    plain = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "embedding.weight" in plain
    assert any("norm" in n for n in plain) and not any("norm" in n for n in decayed)
    assert "lm_head.weight" in decayed and any("Wqkv" in n for n in decayed)
    assert decayed | plain == {n for n, _ in model.named_parameters()}


def test_lr_multipliers_become_groups(monkeypatch):
    model = dnahnet.build_model("transformer", "tiny")
    monkeypatch.setattr(model, "lr_multipliers", lambda: {"lm_head.weight": 2.0, "embedding.weight": 2.0})
    groups = param_groups(model, weight_decay=0.1, base_lr=1e-3)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["lm_head.weight"]["lr"] == 2e-3 and by_name["embedding.weight"]["lr"] == 2e-3
    assert by_name["backbone.norm_f.weight"]["lr"] == 1e-3
    # Each group is named for the learning-rate monitor's column (lr/<name>): decay and multiplier.
    assert by_name["lm_head.weight"]["name"] == "decay_x2" and by_name["embedding.weight"]["name"] == "no_decay_x2"
    assert by_name["backbone.norm_f.weight"]["name"] == "no_decay" and by_name["lm_head.weight"]["weight_decay"] > 0
    assert len({g["name"] for g in groups}) == len(groups) == 4


def test_objective_is_cross_entropy_plus_aux_and_counts_tokens():
    torch.manual_seed(0)
    lit = lit_of("transformer", 16)
    ids = torch.randint(0, 4, (2, 17))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:].clone()}
    batch["labels"][0, :4] = -100  # ignored positions
    loss = lit._loss(batch)
    logp = lit.model(batch["input_ids"]).logits.log_softmax(-1)
    mask = batch["labels"] != -100
    ref = -logp.gather(-1, batch["labels"].clamp_min(0)[..., None])[..., 0][mask].sum()
    assert loss.n_tokens == 28 and torch.allclose(loss.nll_sum, ref, rtol=1e-5)
    assert math.isclose(float(loss.nll), float(ref) / 28, rel_tol=1e-5)
    assert torch.equal(loss.output.logits, lit.model(batch["input_ids"]).logits)  # the forward rides along


def _ratio_loss_reference(prob: torch.Tensor, boundary: torch.Tensor, valid: torch.Tensor, n: float) -> float:
    """H-Net's ratio loss (docs/FIDELITY.md, "Ratio loss"), in float64: F = fraction of real positions with
    b = 1, G = mean p over them, L_ratio = N/(N-1) ((N-1) F G + (1-F)(1-G))."""
    m = valid.double()
    f = float((boundary.double() * m).sum() / m.sum())
    g = float((prob.double() * m).sum() / m.sum())
    return n / (n - 1) * ((n - 1) * f * g + (1 - f) * (1 - g))


def test_training_loop_optimizes_nll_plus_alpha_times_ratio_losses_on_dnahnet():
    """Through Lightning's fit loop: the loss LitLM hands to backward on dnaHNet is the next-nucleotide
    cross-entropy plus alpha x sum_s L_ratio^s, recomputed here from the model's own boundary outputs.
    The ratio term is ~0.04 nats here (alpha 0.02, two stages, L_ratio ~ 1): an objective without it misses
    by four orders of magnitude more than the tolerance."""
    import lightning as L

    torch.manual_seed(0)
    alpha = 0.02
    train_cfg = cfglib.replace(TrainConfig(), max_steps=1, lr=1e-3, accelerator="cpu")
    lit = lit_of("dnahnet", 64, train_cfg, alpha=alpha)
    ids = torch.randint(0, 4, (2, 65), generator=torch.Generator().manual_seed(1))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}

    # Reference, with the weights the training step will see (the optimizer steps after it).
    with torch.no_grad():
        out = lit.model(batch["input_ids"])
    logp = out.logits.double().log_softmax(-1)
    nll = float(-logp.gather(-1, batch["labels"][..., None]).mean())
    ratios = lit.model.config.ratios
    assert len(out.boundary_probs) == len(ratios) == 2
    aux = alpha * sum(
        _ratio_loss_reference(p, b, v, n)
        for p, b, v, n in zip(out.boundary_probs, out.boundary_masks, out.valid_masks, ratios, strict=True)
    )
    assert aux > 0.01  # big enough that leaving it out cannot pass

    seen = {}

    class Capture(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen["loss"] = float(outputs["loss"])
            seen["logged"] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Capture()],
                        num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(lit, train_dataloaders=torch.utils.data.DataLoader([batch], batch_size=None))
    assert math.isclose(seen["loss"], nll + aux, rel_tol=0, abs_tol=1e-5), (seen["loss"], nll, aux)
    assert math.isclose(seen["logged"]["train/loss"], nll, abs_tol=1e-5)  # the logged loss is the NLL alone
    assert math.isclose(seen["logged"]["train/aux_loss"], aux, abs_tol=1e-6)


def test_validation_sums_count_tokens_exactly_past_float32():
    """The validation token count is exact beyond 2^24 (a float32 sum would stop there: 256 windows of
    65,536 nucleotides already reach it)."""
    lit = lit_of("transformer", 16)
    for _ in range(3):
        lit.val_token_count.update(torch.tensor(float(2**24)))
        lit.val_token_count.update(torch.tensor(1.0))
    assert int(lit.val_token_count.compute()) == 3 * 2**24 + 3


def test_learning_rate_and_throughput_are_logged_by_lightnings_monitors(tmp_path):
    """metrics.csv holds lr/<group> (LearningRateMonitor) equal to the rate the optimizer applied at that
    step (captured here at the step itself), and nucleotides/s and FLOPs/s over the last `log_every`
    batches (ThroughputMonitor) from the positions and FLOPs each batch carried."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    log_every, steps, seq_len = 2, 7, 16
    train_cfg = cfglib.replace(TrainConfig(), max_steps=steps, log_every=log_every, lr=1e-2, warmup_fraction=0.45,
                               accelerator="cpu")
    lit = lit_of("transformer", seq_len, train_cfg)
    gen = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(steps):
        ids = torch.randint(0, 4, (3, seq_len + 1), generator=gen)
        batches.append({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
    applied = {}

    class Capture(L.Callback):
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            applied[trainer.global_step] = {g["name"]: g["lr"] for g in optimizer.param_groups}

    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, log_every_n_steps=log_every,
                        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[Capture()],
                        limit_val_batches=0)
    trainer.fit(lit, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))

    lr_rows = {int(r["step"]): r for r in rows if r.get("lr/decay")}
    assert sorted(lr_rows) == [1, 3, 5]  # every log_every steps, as the module's own metrics
    # At each logged step the rate changes at the next one (warmup 3 steps, then cosine): a value logged one
    # step late or early would not match.
    assert all(applied[step]["decay"] != applied[step + 1]["decay"] for step in lr_rows)
    for step, row in lr_rows.items():
        assert set(applied[step]) == {"decay", "no_decay"}
        for name, lr in applied[step].items():
            assert float(row[f"lr/{name}"]) == lr

    rate_rows = [r for r in rows if r.get("train/device/items_per_sec")]
    assert [int(r["step"]) for r in rate_rows] == [3, 5]  # once the window spans log_every batches
    flops_per_nt = lit.model.flops_per_token(seq_len).training  # a transformer's count does not vary
    by_step = {int(r["step"]): r for r in rows if r.get("train/time")}
    for row in rate_rows:
        now, before = row, by_step[int(row["step"]) - log_every]
        elapsed = float(now["train/time"]) - float(before["train/time"])
        assert int(float(now["train/lengths"])) == (int(now["step"]) + 1) * 3 * seq_len
        assert math.isclose(float(now["train/device/items_per_sec"]), log_every * 3 * seq_len / elapsed,
                            rel_tol=1e-9)
        assert math.isclose(float(now["train/device/flops_per_sec"]),
                            log_every * 3 * seq_len * flops_per_nt / elapsed, rel_tol=1e-9)


def test_final_validation_records_window_losses_and_hierarchy_usage(tmp_path):
    """dnaHNet, 4 steps, validated at step 2 and at the end: only the final validation measures hierarchy
    usage (`val/usage_stage{s}`), equal to `hierarchy_usage` on the final weights; every validation records
    each window's loss, equal to `window_losses`' own pass (windows numbered in loader order: no
    "window" key in these batches), token-weighted back to val/loss."""
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from dnahnet.hierarchy_usage import hierarchy_usage
    from dnahnet.window_losses import window_losses

    torch.manual_seed(0)
    seq_len = 32
    lit = lit_of("dnahnet", seq_len, cfglib.replace(TrainConfig(), max_steps=4, lr=1e-2, accelerator="cpu"))
    gen = torch.Generator().manual_seed(5)

    def batches(n, b):
        out = []
        for _ in range(n):
            ids = torch.randint(0, 4, (b, seq_len + 1), generator=gen)
            out.append({"input_ids": ids[:, :-1], "labels": ids[:, 1:]})
        return out

    train, val = batches(4, 3), batches(3, 2)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=4, val_check_interval=2, check_val_every_n_epoch=None,
                        logger=CSVLogger(tmp_path, name="", version=""), enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                        log_every_n_steps=1)
    none = torch.utils.data.DataLoader
    trainer.fit(lit, train_dataloaders=none(train, batch_size=None), val_dataloaders=none(val, batch_size=None))
    with open(tmp_path / "metrics.csv", newline="") as fh:
        val_rows = [r for r in csv.DictReader(fh) if r.get("val/loss")]
    assert [int(r["step"]) for r in val_rows] == [1, 3]
    assert not val_rows[0].get("val/usage_stage0") and val_rows[1]["val/usage_stage0"]  # final only
    usage = hierarchy_usage(lit.model, val)
    for s in (0, 1):
        assert float(val_rows[1][f"val/usage_stage{s}"]) == pytest.approx(usage[s], abs=1e-6)
    losses, tokens = window_losses(lit.model, val)
    got = lit.window_losses
    assert got.tokens.tolist() == tokens.tolist() == [seq_len] * 6
    assert got.losses == pytest.approx(losses, abs=1e-6)
    assert got.mean == pytest.approx(float(val_rows[1]["val/loss"]), abs=1e-6)


def test_adamw_carries_the_configured_betas_and_eps():
    """Non-default betas and eps from TrainConfig reach every parameter group of the optimizer, and its
    first two updates are those of AdamW with them (float64 reference: with one step, bias correction
    cancels the betas; the second step depends on both)."""
    torch.manual_seed(0)
    train_cfg = cfglib.replace(TrainConfig(), beta1=0.7, beta2=0.8, eps=0.05, weight_decay=0.0, lr=0.1,
                               warmup_fraction=0.0, max_steps=10)
    lit = lit_of("transformer", 16, train_cfg)
    optimizer = lit.configure_optimizers()["optimizer"]
    assert optimizer.defaults["betas"] == (0.7, 0.8) and optimizer.defaults["eps"] == 0.05
    assert all(g["betas"] == (0.7, 0.8) and g["eps"] == 0.05 for g in optimizer.param_groups)
    p = lit.model.lm_head.weight
    start = p.detach().double().clone()
    grads = [torch.randn_like(p) for _ in range(2)]
    m = torch.zeros_like(start)
    v = torch.zeros_like(start)
    ref = start.clone()
    for t, g in enumerate(grads, start=1):
        lr = next(grp["lr"] for grp in optimizer.param_groups if any(q is p for q in grp["params"]))
        for q in lit.model.parameters():
            q.grad = None
        p.grad = g.clone()
        optimizer.step()
        g64 = g.double()
        m = 0.7 * m + 0.3 * g64
        v = 0.8 * v + 0.2 * g64 ** 2
        ref = ref - lr * (m / (1 - 0.7 ** t)) / ((v / (1 - 0.8 ** t)).sqrt() + 0.05)
    torch.testing.assert_close(p.detach().double(), ref, rtol=1e-5, atol=1e-6)


def test_token_and_flop_counters_count_every_rank(monkeypatch):
    """Under data parallelism each of W ranks trains on its own batch: a step consumes B x L x W tokens,
    and FLOPs are those tokens times the training FLOPs per token. A stand-in trainer reports W = 4."""
    from types import SimpleNamespace

    torch.manual_seed(0)
    lit = lit_of("transformer", 16)
    logged = {}
    monkeypatch.setattr(lit, "log_dict", lambda d, **kw: logged.update(d))
    monkeypatch.setattr(lit, "log", lambda k, v, **kw: logged.update({k: v}))
    lit.trainer = SimpleNamespace(world_size=4, global_step=0, log_every_n_steps=1, max_steps=10)
    ids = torch.randint(0, 4, (2, 17))
    for _ in range(2):
        lit.training_step({"input_ids": ids[:, :-1], "labels": ids[:, 1:]}, 0)
    assert lit.tokens_seen == 2 * (2 * 16 * 4) and logged["tokens"] == 256.0
    assert lit.flops_planned == 256 * lit.flops_per_token.training > 0
    assert logged["flops"] == lit.flops_actual == 256 * lit.flops_per_token.training  # no chunking: equal
