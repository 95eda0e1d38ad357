"""dnahnet.checkpoint: weights-only loading, resume points, and FSDP2 (distributed) checkpoint directories
loaded without a process group."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dnahnet import checkpoint as ck
from dnahnet.registry import get_config

REPO = Path(__file__).resolve().parents[1]


def _lightning_like(model, family: str, cfg, step: int) -> dict:
    from dnahnet import typed_config as cfglib

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
    `python -m dnahnet.sampling --checkpoint RUN` samples from it, and the consolidated weights give the
    validation loss the run reported (an independent check that every shard landed in its place)."""
    from tests.helpers.multidevice import N_VAL, SEQ_LEN, markov_windows

    out = tmp_path / "multidevice"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "tests.sweeps.test_multidevice", "--out", str(out), "--devices", "2",
                           "--jobs", "dnahnet:fsdp2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    run = out / "dnahnet-fsdp2" / "run"
    assert (run / "checkpoints" / "last.ckpt").is_dir()
    gen = subprocess.run([sys.executable, "-m", "dnahnet.sampling", "--checkpoint", str(run), "--prompt", "ACGTACGT",
                          "--max-new-tokens", "24", "--num-samples", "2", "--device", "cpu"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stderr[-3000:]
    samples = [line for line in gen.stdout.splitlines() if line and not line.startswith(">")]
    assert len(samples) == 2 and all(len(s) == 32 and set(s) <= set("ACGT") for s in samples)

    model = ck.load_model(run)
    windows = markov_windows(torch.Generator().manual_seed(7), N_VAL, SEQ_LEN + 1)  # the run's validation set
    with torch.no_grad():
        logits = model(windows[:, :-1]).logits.float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1))
    reported = json.loads((out / "dnahnet-fsdp2" / "result.json").read_text())["val_loss"]
    assert abs(float(loss) - reported) < 1e-4, (float(loss), reported)


# ------------------------------------------------------------------------------------ checkpoints that carry code
class _Calls:
    """Unpickling this calls `fn(*args)`: what a crafted checkpoint could run."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("name", ["posix.system", "builtins.eval", "builtins.exec", "subprocess.call",
                                  "builtins.open"])
def test_a_checkpoint_that_carries_code_is_unsafe_whatever_the_protocol(tmp_path, name, protocol):
    """torch refuses these with different words ("GLOBAL posix.system whose module posix is blocked",
    "Unsupported global: GLOBAL builtins.eval", and for protocol 4 "Unsupported operand 149", before it sees any
    global); each is UnsafeCheckpoint naming the global, and the payload never runs."""
    import subprocess

    marker = tmp_path / "ran"
    payload = {"posix.system": _Calls(os.system, f"touch {marker}"),
               "builtins.eval": _Calls(eval, f"open({str(marker)!r}, 'w')"),
               "builtins.exec": _Calls(exec, f"open({str(marker)!r}, 'w')"),
               "subprocess.call": _Calls(subprocess.call, ["touch", str(marker)]),
               "builtins.open": _Calls(open, str(marker), "w")}[name]
    path = tmp_path / "evil.ckpt"
    torch.save({"global_step": 1, "x": payload}, path, pickle_protocol=protocol)
    name = {"builtins.open": "io.open"}.get(name, name)  # where pickle finds open()
    assert ck.code_references(path) == [name]
    with pytest.raises(ck.UnsafeCheckpoint, match=rf"evil\.ckpt: refused: this file carries code \(it asks for "
                                                  rf"{re.escape(name)}\)"):
        ck.safe_load(path)
    assert not marker.exists() and path.exists()


def test_our_checkpoints_reference_only_allowed_globals(tmp_path):
    """The scan that flags code finds nothing in a real checkpoint (tensors, an OrderedDict state dict, nested
    plain values) nor in files that are not pickles at all (those are corrupt, not unsafe)."""
    from dnahnet.registry import build_model_from_config

    cfg = get_config("transformer", "tiny")
    torch.save(_lightning_like(build_model_from_config("transformer", cfg), "transformer", cfg, 3),
               tmp_path / "ok.ckpt")
    assert ck.code_references(tmp_path / "ok.ckpt") == []
    (tmp_path / "noise.ckpt").write_bytes(bytes(range(256)) * 8)
    assert ck.code_references(tmp_path / "noise.ckpt") == []
    with pytest.raises(ck.CorruptCheckpoint):
        ck.safe_load(tmp_path / "noise.ckpt")
    # Text parses as opcodes ("import sys" is INST): a source file is not a checkpoint, not one that carries code.
    (tmp_path / "source.ckpt").write_text(Path(ck.__file__).read_text())
    assert ck.code_references(tmp_path / "source.ckpt") == []
    with pytest.raises(ck.CorruptCheckpoint):
        ck.safe_load(tmp_path / "source.ckpt")


def test_a_protocol_0_pickle_that_calls_a_function_is_unsafe(tmp_path):
    """torch refuses protocol 0 at its first unsupported opcode ("Unsupported operand 100"), before it names the
    global; the opcode scan reads the complete pickle and finds it."""
    import pickle

    marker = tmp_path / "ran"
    (tmp_path / "p0.ckpt").write_bytes(pickle.dumps({"x": _Calls(os.system, f"touch {marker}")}, protocol=0))
    with pytest.raises(ck.UnsafeCheckpoint, match=r"posix\.system"):
        ck.safe_load(tmp_path / "p0.ckpt")
    assert not marker.exists()


@pytest.mark.parametrize("message, names", [
    ("Trying to load unsupported GLOBAL posix.system whose module posix is blocked.", ["posix.system"]),
    ("Weights only load failed.\n\tWeightsUnpickler error: Unsupported global: GLOBAL builtins.eval was not an "
     "allowed global by default. Please use ...", ["builtins.eval"]),
    ("Trying to call reduce for unrecognized function <built-in function system>", ["<built-in function system>"]),
    ("Can only create new object for nn.Parameter or classes allowlisted via `add_safe_globals` but got "
     "<class 'x.Evil'>", ["<class 'x.Evil'>"]),
    ("Can only build Tensor, Parameter, OrderedDict or types allowlisted via `add_safe_globals`, but got "
     "<class 'x.Evil'>", ["<class 'x.Evil'>"]),
    ("``torch.distributed.tensor`` must be imported to load DTensors", ["``torch.distributed.tensor``"]),
    ("Unsupported operand 149", []),  # a bare opcode says nothing of code: the opcode scan decides
    ("Can only append to lists, but got <class 'dict'>", []),
])
def test_every_refusal_wording_of_the_weights_only_unpickler_names_its_global(message, names):
    """The wordings of torch/_weights_only_unpickler.py (2.13) that refuse a global or a call of one."""
    assert ck._refused_globals(message) == names


def test_the_wordings_cover_what_this_torch_raises():
    """Every refusal of a global, a call or a construction that the installed torch's weights-only unpickler
    can raise, its placeholders filled in, is recognised (a new wording after a torch upgrade fails here, not
    silently in the field, where the file would be set aside as merely corrupt)."""
    import re

    import torch._weights_only_unpickler as wo

    source = Path(wo.__file__).read_text()
    literals = re.findall(r"UnpicklingError\(\s*((?:f?\"[^\"]*\"\s*)+)\)", source)
    literals += re.findall(r"error_msg = \(\s*((?:f?\"[^\"]*\"\s*)+)\)", source)  # the reduce refusal
    messages = ["".join(re.findall(r"f?\"([^\"]*)\"", lit)) for lit in literals]
    about_code = [re.sub(r"\{[^}]*\}", "x.Evil", m) for m in messages
                  if re.search(r"GLOBAL|new object|Can only build|must be imported|reduce", m)]
    assert len(about_code) >= 6, messages  # blocked, unsupported, reduce, new object, build, 2 x must be imported
    for message in about_code:
        assert ck._refused_globals(message), message
