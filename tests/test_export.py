"""dnahnet.export: a checkpoint -> model.safetensors + config.json -> `from_pretrained` gives the same logits,
with no pickle; generation and an evaluation run from the exported folder; bad folders give one line."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
import yaml

import dnahnet
from dnahnet import export as ex
from dnahnet import typed_config as cfglib
from dnahnet.checkpoint import CheckpointError, load_model
from dnahnet.registry import build_model_from_config, get_config

FAMILIES = [("transformer", None), ("stripedhyena", None), ("dnahnet", "3,2")]


def fake_run(run_dir: Path, family: str, variant: str | None, seed: int = 0) -> torch.nn.Module:
    """A run directory as `dnahnet.train` leaves it: config.yaml and checkpoints/last.ckpt in Lightning's
    layout (hyper_parameters + "model."-prefixed state_dict). The weights are perturbed away from their
    initialisation so that no zero-initialised projection makes the logits trivially equal."""
    cfg = get_config(family, "tiny", variant)
    torch.manual_seed(seed)
    model = build_model_from_config(family, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"global_step": 12, "hyper_parameters": {"family": family, "model_config": cfglib.to_dict(cfg)},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               run_dir / "checkpoints" / "last.ckpt")
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"family": family, "preset": "tiny", "variant": variant,
                                                         "data": {"seq_len": 64}}))
    return model.eval()


@pytest.mark.parametrize("family,variant", FAMILIES)
def test_export_then_from_pretrained_gives_the_checkpoints_logits(tmp_path, family, variant, capsys):
    model = fake_run(tmp_path / "run", family, variant)
    assert ex.main(["--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "exported")]) == 0
    assert f"exported {family}" in capsys.readouterr().out
    out = tmp_path / "exported"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert (config["family"], config["variant"], config["preset"]) == (family, variant, "tiny")
    assert config["format_version"] == ex.FORMAT_VERSION and config["global_step"] == 12
    assert config["tokenizer"]["id_to_token"] == ["A", "C", "G", "T", "N", "<pad>", "<bos>", "<eos>"]
    assert config["model_config"] == cfglib.to_dict(get_config(family, "tiny", variant))
    # The weights file is a safetensors file (8-byte header length, then JSON), not a pickle.
    head = (out / "model.safetensors").read_bytes()[:9]
    assert head[8:9] == b"{" and not head.startswith(b"\x80")

    loaded = dnahnet.from_pretrained(out)
    assert type(loaded) is type(model) and not loaded.training
    ids = torch.randint(0, 4, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = load_model(tmp_path / "run")(ids).logits
        got = loaded(ids).logits
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
        torch.testing.assert_close(got, model(ids).logits, rtol=0, atol=1e-6)
    # Every tensor of the state dict round-trips exactly (tied weights included).
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_loading_an_export_reads_no_pickle(tmp_path, monkeypatch):
    fake_run(tmp_path / "run", "transformer", None)
    ex.export(tmp_path / "run", tmp_path / "exported")

    def refuse(*args, **kwargs):
        raise AssertionError("an exported folder must load without unpickling")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert load_model(tmp_path / "exported") is not None  # the loader every --checkpoint goes through


def test_generation_and_an_evaluation_run_from_an_exported_folder(tmp_path, capsys):
    from dnahnet.sampling import main as generate_main

    fake_run(tmp_path / "run", "dnahnet", "3,2", seed=3)
    ex.export(tmp_path / "run", tmp_path / "exported")
    args = ["--prompt", "ACGTTGCAAC", "--max-new-tokens", "24", "--num-samples", "2", "--seed", "5", "--device", "cpu"]
    assert generate_main(["--checkpoint", str(tmp_path / "run"), *args]) == 0
    from_checkpoint = capsys.readouterr().out
    assert generate_main(["--checkpoint", str(tmp_path / "exported"), *args]) == 0
    assert capsys.readouterr().out == from_checkpoint and from_checkpoint.count(">sample_") == 2

    # An evaluation (variant effect on a synthetic assay) scores the same from both.
    from dnahnet.evals import variant_effect as ve

    cds = "ATGGCTAAACTGGAACGTTTCGGCAGCATTACCTGGCATGATTAA"  # M A K L E R F G S I T W H D *
    (tmp_path / "cds.fasta").write_text(">cds\n" + cds + "\n")
    (tmp_path / "dms.csv").write_text("mutant,fitness\nA2G,0.5\nK3R,0.1\nL4P,-1.0\nE5D,0.3\nR6W,-0.7\n")
    summaries = []
    for source in ("run", "exported"):
        summaries.append(ve.main(["--checkpoint", str(tmp_path / source), "--device", "cpu", "--dms",
                                  str(tmp_path / "dms.csv"), "--cds", str(tmp_path / "cds.fasta"),
                                  "--fitness-column", "fitness", "--offset", "0", "--out", str(tmp_path / f"ve-{source}")]))
    capsys.readouterr()
    rows = [(tmp_path / f"ve-{s}" / "variants.csv").read_text() for s in ("run", "exported")]
    assert rows[0] == rows[1] and rows[0].count("\n") == 6
    assert summaries[0]["spearman"] == pytest.approx(summaries[1]["spearman"])


def test_bad_folders_name_the_file(tmp_path, capsys):
    fake_run(tmp_path / "run", "transformer", None)
    out = ex.export(tmp_path / "run", tmp_path / "exported")
    weights = out / "model.safetensors"
    good = weights.read_bytes()

    weights.write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable safetensors file"):
        dnahnet.from_pretrained(out)
    weights.write_bytes(b"\x00" * 64)  # garbage
    with pytest.raises(CheckpointError, match=r"model\.safetensors: unreadable"):
        load_model(out)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: missing"):
        dnahnet.from_pretrained(out)

    # The CLIs print one line naming the file, exit 2, no traceback.
    from dnahnet.sampling import main as generate_main

    assert generate_main(["--checkpoint", str(out), "--prompt", "ACGT", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and str(weights) in err

    weights.write_bytes(good)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "tokenizer": {"id_to_token": list("ACGUN")}}))
    with pytest.raises(CheckpointError, match="config.json: its tokenizer vocabulary"):
        dnahnet.from_pretrained(out)
    (out / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json: unreadable, not JSON"):
        dnahnet.from_pretrained(out)
    (out / "config.json").write_text(json.dumps({**config, "model_config": {**config["model_config"], "d_model": 48}}))
    with pytest.raises(CheckpointError, match=r"model.safetensors: its weights do not match"):
        dnahnet.from_pretrained(out)


def test_export_refuses_a_missing_checkpoint_and_a_busy_out(tmp_path, capsys):
    run = tmp_path / "run"
    fake_run(run, "transformer", None)
    # --out holding other files (a run directory) is refused; nothing is written there.
    assert ex.main(["--checkpoint", str(run), "--out", str(run)]) == 2
    assert "a folder with other files in it" in capsys.readouterr().err and not (run / "config.json").exists()
    assert ex.main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope" in err and not (tmp_path / "e").exists()
    # Re-exporting over an earlier export replaces it whole; no temporary folder is left behind.
    ex.export(run, tmp_path / "e")
    ex.export(run, tmp_path / "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e", "run"]
