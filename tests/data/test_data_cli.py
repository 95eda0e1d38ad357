"""python -m dnahnet.data prepare / info."""

import os
import subprocess
import sys

from dnahnet.data.__main__ import main
from dnahnet.data.paths import repo_root


def test_prepare_prints_the_summary(tmp_path, write_fasta, capsys):
    write_fasta(tmp_path / "alpha.fna", {"a1": "GGCC" * 25, "a2": "AATT" * 25})  # GC 0.5, 200 nt
    write_fasta(tmp_path / "beta.fa.gz", {"b1": "ACGN" * 50}, "gz")  # N 0.25, GC 2/3 of the rest
    write_fasta(tmp_path / "gamma.fa", {"c1": "AAAA" * 30})
    rc = main(
        [
            "prepare",
            "alpha.fna",
            "beta.fa.gz",
            "gamma.fa",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "store"),
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["alpha"][1:] == ["2", "200", "0.00e+00", "0.500", lines["alpha"][5]]
    assert lines["beta"][1:5] == ["1", "200", "2.50e-01", "0.667"]
    assert lines["gamma"][1:5] == ["1", "120", "0.00e+00", "0.000"]
    assert sorted(lines[g][5] for g in ("alpha", "beta", "gamma")) == ["test", "train", "val"]
    total = next(line for line in out.splitlines() if line.startswith("total (3 genomes)")).split()
    assert total[3:6] == ["4", "520", "9.62e-02"]  # 50 N of 520
    assert (tmp_path / "store" / "tokens.bin").stat().st_size == 520

    assert main(["info", str(tmp_path / "store")]) == 0
    assert "gamma" in capsys.readouterr().out


def test_prepare_reports_bad_input(tmp_path, write_fasta, capsys):
    write_fasta(tmp_path / "bad.fa", {"r1": "ACGTX"})
    rc = main(["prepare", str(tmp_path / "bad.fa"), "--out", str(tmp_path / "store"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "bad.fa" in err and "'X'" in err and "position 5" in err
    assert not (tmp_path / "store").exists()


def test_module_entry_point(tmp_path, write_fasta):
    write_fasta(tmp_path / "g.fa", {"r1": "ACGT" * 10})
    env = {**os.environ, "PYTHONPATH": str(repo_root())}
    res = subprocess.run(
        [sys.executable, "-m", "dnahnet.data", "prepare", str(tmp_path / "g.fa"), "--out", str(tmp_path / "s")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "g  " in res.stdout and "40" in res.stdout and "ingest genomes" in res.stderr  # table + progress bar
