"""`dnahnet.train`: the Trainer applies the configured gradient clipping, a resumed run counts the tokens and
FLOPs an uninterrupted one does (tiny Transformers on a synthetic Markov corpus, seq_len 32), and its GPU-facing
choices on CPU (issue 26): `fsdp` runs as FSDP2, TF32 on CUDA only, gradient accumulation and activation
checkpointing recorded in config.yaml and trained with."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.strategies import ModelParallelStrategy

import dnahnet
from dnahnet import train as trainlib
from dnahnet import typed_config as cfglib
from dnahnet.checkpoint import find_resume_point
from dnahnet.data import DataConfig
from dnahnet.lit import LitLM
from dnahnet.registry import get_config
from dnahnet.run_config import RunConfig, config_differences
from dnahnet.train_config import TrainConfig
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    markov_corpus(root / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    return root


def train_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), "--data-dir", str(corpus / "data"), "--no-progress", "--threads", "1",
            "data.seq_len=32", "data.n_val_windows=4", "data.batch_size=4", f"data.store_dir={corpus / 'store'}",
            "train.max_steps=6", "train.ckpt_every=3", "train.val_every=3", "train.accelerator=cpu", *extra]


def test_a_large_gradient_step_is_clipped_to_the_configured_norm(tmp_path):
    """One step through the run's Trainer (`build_trainer`) with grad_clip 0.01, far below the gradient's
    norm: the update is AdamW's on the gradient scaled to norm 0.01 (float64 reference, eps 0.01 so that
    the update depends on the gradient's scale), not on the raw gradient."""
    from lightning.pytorch.callbacks import Callback

    torch.manual_seed(0)
    clip, eps, lr = 0.01, 0.01, 0.1
    train_cfg = cfglib.replace(TrainConfig(), grad_clip=clip, eps=eps, lr=lr, weight_decay=0.0, max_steps=1,
                               warmup_fraction=0.0, accelerator="cpu", ckpt_every=100, log_every=1)
    lit = LitLM(RunConfig("transformer", "tiny", None, dnahnet.get_config("transformer", "tiny"), train_cfg,
                          DataConfig(seq_len=32)))
    before = {n: p.detach().double().clone() for n, p in lit.model.named_parameters()}
    seen = {}

    class RawGradients(Callback):  # Lightning calls this hook before it clips
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            seen["grad"] = {n: p.grad.detach().double().clone() for n, p in pl_module.model.named_parameters()}
            seen["lr"] = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}

    trainer = trainlib.build_trainer(train_cfg, tmp_path / "run", callbacks=[RawGradients()], progress=False)
    assert trainer.gradient_clip_val == clip
    ids = torch.randint(0, 4, (4, 33), generator=torch.Generator().manual_seed(1))
    loader = torch.utils.data.DataLoader([{"input_ids": ids[i, :-1], "labels": ids[i, 1:]} for i in range(4)],
                                         batch_size=4)
    trainer.fit(lit, train_dataloaders=loader)
    grads = seen["grad"]
    norm = torch.sqrt(sum((g ** 2).sum() for g in grads.values()))
    assert norm > 10 * clip  # a large gradient: clipping must act
    scale = min(1.0, clip / (float(norm) + 1e-6))  # torch.nn.utils.clip_grad_norm_
    for n, p in lit.model.named_parameters():
        g = grads[n] * scale
        # AdamW's first step: m_hat = g, v_hat = g^2.
        expected = before[n] - seen["lr"][id(p)] * g / (g.abs() + eps)
        torch.testing.assert_close(p.detach().double(), expected, rtol=1e-5, atol=1e-7, msg=n)


def test_a_resumed_run_counts_the_tokens_and_flops_of_an_uninterrupted_one(corpus, tmp_path):
    """Stopped after step 4 (the last checkpoint is step 3) and rerun: the resumed run restores the
    counters from the checkpoint, and its result.json reports what a run without the stop reports."""
    import json

    from lightning.pytorch.callbacks import Callback
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    assert trainlib.main(train_args(corpus, tmp_path / "straight")) == 0
    straight = json.loads((tmp_path / "straight" / "result.json").read_text())

    class StopAtFour(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 4:
                raise SIGTERMException()  # what Lightning raises on SIGTERM

    run = tmp_path / "stopped"
    real = trainlib.build_trainer
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainlib, "build_trainer",
                   lambda *a, callbacks=(), **kw: real(*a, callbacks=[*callbacks, StopAtFour()], **kw))
        assert trainlib.main(train_args(corpus, run)) != 0
    assert not (run / "result.json").exists()
    assert find_resume_point(run).step == 3  # the rerun resumes (it does not start over)
    assert trainlib.main(train_args(corpus, run)) == 0
    resumed = json.loads((run / "result.json").read_text())
    assert resumed["steps"] == straight["steps"] == 6
    assert straight["tokens"] == 6 * 4 * 32
    for key in ("tokens", "flops", "flops_planned"):
        assert resumed[key] == straight[key], key


def test_a_long_cpu_run_is_announced(caplog):
    """The README's bare `--model dnahnet --preset tiny` (200 steps x 8 windows x 8192 nt, 4.5e13 FLOPs)
    warns on a CPU with the settings that shorten it; a short run and a GPU run do not."""
    import logging

    model = dnahnet.build_model("dnahnet", "tiny")
    tokens = 200 * 8 * 8192
    flops = tokens * model.flops_per_token(8192).training
    with caplog.at_level(logging.WARNING, logger="dnahnet.train"):
        assert trainlib.warn_long_cpu_run(TrainConfig(accelerator="cpu"), flops, tokens)
        short = 100 * 8 * 512
        assert not trainlib.warn_long_cpu_run(TrainConfig(accelerator="cpu", max_steps=100), short * 4e6, short)
        assert not trainlib.warn_long_cpu_run(TrainConfig(accelerator="gpu"), flops, tokens)
    (record,) = caplog.records
    assert "long run for a CPU" in record.getMessage() and "train.max_steps=" in record.getMessage()
    assert "1.3 h" in record.getMessage()  # 4.5e13 FLOPs at 1e10 FLOP/s


def test_fsdp_runs_as_fsdp2_whose_precision_clips_by_norm():
    """Lightning's FSDP1 precision plugin raises on norm clipping (on by default); `fsdp` maps to FSDP2,
    whose strategy takes the plain precision plugin (torch.nn.utils.clip_grad_norm_ over DTensors)."""
    for name in ("fsdp", "fsdp2"):
        strategy = trainlib._strategy(cfglib.replace(TrainConfig(), strategy=name))
        assert isinstance(strategy, ModelParallelStrategy)
    from lightning.pytorch.plugins.precision import FSDPPrecision, Precision

    plugin = Precision()
    assert not isinstance(plugin, FSDPPrecision)
    weight = torch.nn.Parameter(torch.ones(4))
    weight.grad = torch.full((4,), 10.0)
    plugin.clip_grad_by_norm(torch.optim.SGD([weight], lr=0.1), 1.0)
    assert abs(float(weight.grad.norm()) - 1.0) < 1e-5
    bad = cfglib.replace(TrainConfig(), strategy="fsdp", precision="16-mixed")
    try:
        trainlib.check_configs(RunConfig("transformer", "tiny", None, get_config("transformer"), bad, DataConfig()))
    except trainlib.RunRefused as exc:
        assert "train.precision='16-mixed'" in str(exc)
    else:
        raise AssertionError("16-mixed with FSDP2 was not refused")


def test_tf32_is_set_when_the_run_uses_cuda(monkeypatch):
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert not trainlib._enable_tf32(cfglib.replace(TrainConfig(), accelerator="cpu"))
        assert torch.get_float32_matmul_precision() == "highest"
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        assert trainlib._enable_tf32(cfglib.replace(TrainConfig(), accelerator="auto"))
        assert torch.get_float32_matmul_precision() == "high"
        assert trainlib._precision(cfglib.replace(TrainConfig(), accelerator="gpu")) == "bf16-mixed"
    finally:
        torch.set_float32_matmul_precision(before)


def test_older_config_without_the_new_keys_is_the_same_run():
    new = {"family": "t", "preset": "p", "variant": None, "model": {}, "data": {},
           "train": {"accumulate_grad_batches": 1, "activation_checkpointing": True}}
    old = {**new, "train": {}}
    assert config_differences(old, new) == []
    # accumulation is a factor of the global batch (dnahnet.typed_config.GLOBAL_BATCH): absent means 1
    assert config_differences(old, {**new, "train": {"accumulate_grad_batches": 2}}) \
        == ["global batch (data.batch_size x train.devices x train.num_nodes x train.accumulate_grad_batches): "
            "8 -> 16"]


def test_accumulation_and_checkpointing_are_recorded_and_trained_with(tmp_path):
    from tests.helpers.multidevice import deterministic_datamodule

    model_cfg = get_config("transformer", "tiny", None, d_model=16, n_layers=1, n_heads=2, mlp_multiple=16)
    train_cfg = cfglib.replace(TrainConfig(), max_steps=3, ckpt_every=3, log_every=2, accelerator="cpu",
                               accumulate_grad_batches=2, activation_checkpointing=True)
    data_cfg = cfglib.replace(DataConfig(), seq_len=16, batch_size=2, n_val_windows=4)
    run = RunConfig("transformer", "tiny", None, model_cfg, train_cfg, data_cfg)
    result = trainlib.train_run(run, tmp_path / "run", progress=False,
                                datamodule=deterministic_datamodule(seq_len=16, global_batch=2, n_val=4))
    assert result.steps == 3
    assert result.tokens == 3 * 2 * 2 * 16  # steps x micro-batches x windows x positions
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert recorded["accumulate_grad_batches"] == 2 and recorded["activation_checkpointing"] is True
