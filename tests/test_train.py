"""dnahnet.train's GPU-facing choices, on CPU (issue 26): `fsdp` runs as FSDP2, TF32 on CUDA only, gradient
accumulation and activation checkpointing recorded in config.yaml and trained with."""

import torch
import yaml
from lightning.pytorch.strategies import ModelParallelStrategy

from dnahnet import config as cfglib
from dnahnet import train as trainlib
from dnahnet.lit import TrainConfig
from dnahnet.rundir import config_differences


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
        trainlib.check_configs(cfglib.replace(TrainConfig()), bad, type("D", (), {"n_val_windows": 1})())
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
    assert config_differences(old, {**new, "train": {"accumulate_grad_batches": 2}}) \
        == ["train.accumulate_grad_batches: None -> 2"]


def test_accumulation_and_checkpointing_are_recorded_and_trained_with(tmp_path):
    from dnahnet.data import DataConfig
    from dnahnet.registry import get_config
    from tests.sweeps.test_multidevice import deterministic_datamodule

    model_cfg = get_config("transformer", "tiny", None, d_model=16, n_layers=1, n_heads=2, mlp_multiple=16)
    train_cfg = cfglib.replace(TrainConfig(), max_steps=3, ckpt_every=3, log_every=2, accelerator="cpu",
                               accumulate_grad_batches=2, activation_checkpointing=True)
    data_cfg = cfglib.replace(DataConfig(), seq_len=16, batch_size=2, n_val_windows=4)
    result = trainlib.train_run("transformer", model_cfg, train_cfg, data_cfg, tmp_path / "run", progress=False,
                                datamodule=deterministic_datamodule(seq_len=16, global_batch=2, n_val=4))
    assert result.steps == 3
    assert result.tokens == 3 * 2 * 2 * 16  # steps x micro-batches x windows x positions
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["train"]
    assert recorded["accumulate_grad_batches"] == 2 and recorded["activation_checkpointing"] is True
