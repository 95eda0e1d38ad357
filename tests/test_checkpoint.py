"""dnahnet.checkpoint: weights-only loading, resume points, and FSDP2 (distributed) checkpoint directories
loaded without a process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnahnet import checkpoint as ck
from dnahnet.registry import get_config

REPO = Path(__file__).resolve().parents[1]


def _lightning_like(model, family: str, cfg, step: int) -> dict:
    from dnahnet import config as cfglib

    return {"global_step": step, "hyper_parameters": {"family": family, "model_config": cfglib.to_dict(cfg)},
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}


def test_load_model_from_a_file_equals_the_saved_model(tmp_path):
    from dnahnet.registry import build_model_from_config

    cfg = get_config("transformer", "tiny", None, d_model=32, n_layers=1, n_heads=2)
    torch.manual_seed(0)
    model = build_model_from_config("transformer", cfg)
    torch.save(_lightning_like(model, "transformer", cfg, 5), tmp_path / "last.ckpt")
    loaded = ck.load_model(tmp_path / "last.ckpt")
    ids = torch.randint(0, 4, (2, 16))
    assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert ck.global_step(tmp_path / "last.ckpt") == 5


def test_a_distributed_checkpoint_directory_is_consolidated_without_a_process_group(tmp_path):
    """The layout Lightning's ModelParallelStrategy writes: DCP shards of {"state_dict": {"model.<name>"}}
    (flattened to "state_dict.model.<name>") plus meta.pt with the rest."""
    import torch.distributed.checkpoint as dcp

    from dnahnet.registry import build_model_from_config

    cfg = get_config("transformer", "tiny", None, d_model=32, n_layers=1, n_heads=2)
    torch.manual_seed(1)
    model = build_model_from_config("transformer", cfg)
    state = _lightning_like(model, "transformer", cfg, 7)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    dcp.save({"state_dict": state.pop("state_dict")}, storage_writer=dcp.FileSystemWriter(str(ckpt)), no_dist=True)
    torch.save(state, ckpt / "meta.pt")
    loaded = ck.load_model(tmp_path / "run")
    ids = torch.randint(0, 4, (2, 16))
    assert torch.equal(loaded(ids).logits, model.eval()(ids).logits)
    assert ck.find_resume_point(tmp_path / "run").step == 7


def test_find_resume_point_takes_the_highest_readable_step_and_sets_aside_the_rest(tmp_path):
    ckpts = tmp_path / "checkpoints"
    ckpts.mkdir()
    torch.save({"global_step": 3}, ckpts / "step=3.ckpt")
    torch.save({"global_step": 6}, ckpts / "step=6.ckpt")
    (ckpts / "step=9.ckpt").write_bytes(b"PK\x03\x04 cut short")
    os.symlink("step=9.ckpt", ckpts / "last.ckpt")
    torch.save({"global_step": 4}, tmp_path / "hpc_ckpt_1.ckpt")  # Lightning's SLURM requeue save
    point = ck.find_resume_point(tmp_path)
    assert point.step == 6 and point.path.name == "step=6.ckpt"
    assert not (ckpts / "last.ckpt").exists() and not (ckpts / "step=9.ckpt").exists()
    (aside,) = ckpts.glob("step=9.corrupt-*.ckpt")
    assert aside.read_bytes() == b"PK\x03\x04 cut short"
    assert ck.find_resume_point(tmp_path / "nothing-here") is None


def test_resolve_device_refuses_what_does_not_exist():
    assert ck.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="--device 'tpu9'"):
        ck.resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ck.resolve_device("cuda")


@pytest.mark.slow
def test_fsdp2_run_loads_for_generation_and_scoring(tmp_path):
    """A real 2-process FSDP2 run on CPU (gloo) writes checkpoints/last.ckpt/ as a directory of shards;
    `python -m dnahnet.generate --checkpoint RUN` samples from it, and the consolidated weights give the
    validation loss the run reported (an independent check that every shard landed in its place)."""
    sys.path.insert(0, str(REPO))
    from tests.sweeps.test_multidevice import N_VAL, SEQ_LEN, _markov_windows

    out = tmp_path / "multidevice"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.sweeps.test_multidevice", "--out", str(out), "--devices", "2",
                           "--jobs", "dnahnet:fsdp2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = out / "dnahnet-fsdp2" / "run"
    assert (run / "checkpoints" / "last.ckpt").is_dir()
    gen = subprocess.run([sys.executable, "-m", "dnahnet.generate", "--checkpoint", str(run), "--prompt", "ACGTACGT",
                          "--max-new-tokens", "24", "--num-samples", "2", "--device", "cpu"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-3000:]
    samples = [line for line in gen.stdout.splitlines() if line and not line.startswith(">")]
    assert len(samples) == 2 and all(len(s) == 32 and set(s) <= set("ACGT") for s in samples)

    model = ck.load_model(run)
    windows = _markov_windows(torch.Generator().manual_seed(7), N_VAL, SEQ_LEN + 1)  # the run's validation set
    with torch.no_grad():
        logits = model(windows[:, :-1]).logits.float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    reported = json.loads((out / "dnahnet-fsdp2" / "result.json").read_text())["val_loss"]
    assert abs(float(loss) - reported) < 1e-4, (float(loss), reported)
