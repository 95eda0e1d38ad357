"""Per-window validation losses (what a sweep's bootstrap resamples) and the context-bound model field."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

import dnahnet
from dnahnet import window_losses as wl
from dnahnet.train import main as train_main


def test_window_losses_equal_a_float64_loop_per_window():
    torch.manual_seed(0)
    model = dnahnet.build_model("transformer", "tiny").eval()
    ids = torch.randint(0, 4, (5, 33))
    labels = ids[:, 1:].clone()
    labels[3, :7] = -100  # a window with unscored positions averages over the scored ones only
    batches = [{"input_ids": ids[:3, :-1], "labels": labels[:3]}, {"input_ids": ids[3:, :-1], "labels": labels[3:]}]
    losses, tokens = wl.window_losses(model, batches)
    with torch.no_grad():
        logits = model(ids[:, :-1]).logits.double()
    for i in range(5):
        keep = labels[i] != -100
        ref = F.cross_entropy(logits[i][keep], labels[i][keep], reduction="mean").item()
        assert abs(losses[i] - ref) < 1e-6 and tokens[i] == int(keep.sum())


def test_a_run_writes_window_losses_that_average_to_its_validation_loss(tmp_path):
    out = tmp_path / "run"
    rc = train_main(["--model", "stripedhyena", "--out", str(out), "--no-progress", "train.max_steps=2",
                     "data.seq_len=64", "data.batch_size=2", "data.n_val_windows=5"])
    assert rc == 0
    result = yaml.safe_load((out / "result.json").read_text())
    frame = pd.read_csv(out / wl.FILENAME)
    assert list(frame["window"]) == list(range(5)) and (frame["tokens"] == 64).all()
    assert np.average(frame["loss"], weights=frame["tokens"]) == pytest.approx(result["val_loss"], abs=1e-5)
    # StripedHyena 2's MR decay is built over the run's context, recorded in the resolved config.
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"]["l_train"] == config["data"]["seq_len"] == 64


def test_an_explicit_decay_length_is_kept(tmp_path):
    out = tmp_path / "run"
    rc = train_main(["--model", "stripedhyena", "--out", str(out), "--no-progress", "train.max_steps=1",
                     "data.seq_len=64", "data.batch_size=2", "data.n_val_windows=2", "model.l_train=1000"])
    assert rc == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["model"]["l_train"] == 1000
