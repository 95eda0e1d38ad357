"""sweeps.command: the exit protocol every sweep command shares."""

from __future__ import annotations

import pytest

from dnahnet.rundir import TrainingStopped
from sweeps import lr_sweep
from sweeps.command import run_command


def test_bad_input_is_one_error_line_and_leaves_no_directory(tmp_path, capsys):
    out = tmp_path / "sweep"

    def bad_plan():
        raise ValueError("--lrs: 'x' is not a comma-separated list of numbers")

    assert run_command(out, "sweep", bad_plan, lambda specs: 0) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lrs") and len(err.strip().splitlines()) == 1 and not out.exists()
    (tmp_path / "file").write_text("")
    assert run_command(tmp_path / "file", "sweep", lambda: [1], lambda specs: 0) == 2
    assert "is a file, not a sweep directory" in capsys.readouterr().err


@pytest.mark.parametrize("stop, code, words", [(KeyboardInterrupt, 130, "interrupted (SIGINT) with 0 of 2 runs"),
                                               (TrainingStopped("SIGTERM"), TrainingStopped.exit_code, "(0 of 2 runs")])
def test_a_stopped_body_says_how_far_it_got_and_that_the_same_command_continues(tmp_path, capsys, stop, code, words):
    def body(specs):
        raise stop

    assert run_command(tmp_path / "sweep", "learning-rate sweep", lambda: ["a", "b"], body) == code
    err = capsys.readouterr().err
    assert err.startswith("stopped: learning-rate sweep") and words in err


def test_the_learning_rate_sweep_refuses_bad_rates_without_writing(tmp_path, capsys):
    out = tmp_path / "lr"
    assert lr_sweep.main(["--model", "transformer", "--ladder", "cpu-smoke", "--budget", "5e10", "--lrs", "1e-3,x",
                          "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --lrs") and not out.exists()
