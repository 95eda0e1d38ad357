"""One override grammar for every command that takes settings (`python -m dnahnet.train`, `sweeps/isoflop.py`,
`sweeps/tune.py`): `--set SECTION.KEY=VALUE` (repeatable) or a bare `SECTION.KEY=VALUE`, in any position
(`dnahnet.run_config.parse_args_with_overrides`); anything else unrecognised is a usage error, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from dnahnet import train as trainlib
from sweeps import isoflop, tune
from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return markov_corpus(tmp_path_factory.mktemp("grammar") / "data", 4, 20_000, 0, "genome{g}.fasta",
                         "G{g}_chr synthetic genome {g}")


def test_train_takes_settings_between_options_and_as_set(data, tmp_path):
    out = tmp_path / "o"
    # The spelling of the issue: settings on both sides of --out, mixed with --set.
    assert trainlib.main(["--model", "transformer", "train.max_steps=2", "--out", str(out), "data.batch_size=4",
                          "--data-dir", str(data), "--set", "data.seq_len=32", "--no-progress", "data.n_val_windows=4",
                          "--set", f"data.store_dir={tmp_path / 'store'}", "train.accelerator=cpu", "--threads", "1"]) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["train"]["max_steps"] == 2 and config["data"]["batch_size"] == 4 and config["data"]["seq_len"] == 32
    assert json.loads((out / "result.json").read_text())["steps"] == 2


def test_anything_else_unrecognised_is_a_usage_error(tmp_path, capsys):
    for main, argv in ((trainlib.main, ["--out", str(tmp_path / "o"), "train.max_steps=2", "--stray"]),
                       (isoflop.main, ["--model", "transformer", "--out", str(tmp_path / "s"), "stray"]),
                       (tune.main, ["--model", "transformer", "--budget", "1e9", "--out", str(tmp_path / "t"), "x.y"])):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "unrecognized arguments" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())
    # A setting without its section is taken as a setting, and refused saying what it lacks.
    assert trainlib.main(["--out", str(tmp_path / "o"), "max_steps=2"]) == 2
    assert "write section.KEY=VALUE" in capsys.readouterr().err


def test_isoflop_takes_bare_settings_anywhere(data, tmp_path):
    common = ["--budgets", "4e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32", "--data-dir", str(data),
              "--dry-run"]
    assert isoflop.main(["--model", "transformer", "--out", str(tmp_path / "set"), *common,
                         "--set", "train.lr_scale=0.5", "--set", "data.n_val_windows=4"]) == 0
    assert isoflop.main(["--model", "transformer", "train.lr_scale=0.5", "--out", str(tmp_path / "bare"), *common,
                         "data.n_val_windows=4"]) == 0
    plans = [json.loads((tmp_path / d / "plan.json").read_text())["runs"] for d in ("set", "bare")]
    assert plans[0] == plans[1]  # the same runs, the same settings
    default = isoflop.plan_from_args(isoflop.parse_args(["--model", "transformer", "--out", "x", *common]))
    assert [r["lr"] for r in plans[1]] == pytest.approx([s.lr * 0.5 for s in default])


def test_tune_takes_bare_settings_anywhere_and_as_set(capsys, tmp_path):
    args = tune.parse_args(["data.n_val_windows=4", "--model", "transformer", "--set", "train.lr=1e-3",
                            "--budget", "1e9", "model.d_model=32", "--out", "o", "--batch-sizes", "4", "8", "--",
                            "data.seq_len=64"])
    assert args.model == "transformer" and args.batch_sizes == [4, 8]
    assert args.settings == ["train.lr=1e-3", "data.n_val_windows=4", "model.d_model=32", "data.seq_len=64"]
    # ...and main reads them: a setting the tuner owns is refused wherever it stands.
    assert tune.main(["--model", "transformer", "train.max_steps=5", "--budget", "1e9", "--out",
                      str(tmp_path / "t")]) == 2
    assert "train.max_steps is set by the tuner" in capsys.readouterr().err
