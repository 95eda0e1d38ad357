"""Every command refuses bad input with exit code 2 and one `error:` line naming the argument or file,
never a traceback (issue 18, point 10). Table-driven: one row per case, run in process through each
command's `main` (the evaluations through `dnahnet.evals.cli.run_main`, what their `__main__` runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "sweeps"))
from synthetic_corpus import markov_corpus  # noqa: E402

VE = REPO.parent / "shared" / "data" / "variant_effect"
UNWRITABLE = "/sys/dnahnet-test-out"  # sysfs refuses new entries (EPERM/EROFS/EACCES), as a read-only mount


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """Files the cases point at: a corpus, a trained transformer run, broken copies of its checkpoint."""
    from dnahnet.train import main as train_main

    root = tmp_path_factory.mktemp("cli")
    data = markov_corpus(root / "data", 4, 20_000, 0, "genome{g}.fasta", "G{g}_chr synthetic genome {g}")
    run = root / "run"
    assert train_main(["--out", str(run), "--data-dir", str(data), "--no-progress", "data.seq_len=32",
                       "data.n_val_windows=4", "data.batch_size=4", f"data.store_dir={root / 'store'}",
                       "train.max_steps=3", "train.accelerator=cpu"]) == 0
    ckpt = (run / "checkpoints" / "last.ckpt").resolve()
    (root / "random.ckpt").write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    (root / "truncated.ckpt").write_bytes(ckpt.read_bytes()[:5000])
    state = torch.load(ckpt, weights_only=True)
    state["hyper_parameters"]["model_config"]["d_model"] = 32  # weights of d_model 64 under a config of 32
    torch.save(state, root / "mismatched.ckpt")
    (root / "empty").mkdir()
    (root / "a_file").write_text("not a directory\n")
    (root / "empty.yaml").write_text("")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "g.fasta").write_text(">chr1\n" + "ACGTTGCA" * 40 + "\n")
    (root / "g.gff").write_text("##gff-version 3\nchr1\t.\tgene\t10\t100\t.\t+\t.\tID=g1;locus_tag=b1\n")
    return {"root": root, "data": data, "run": run, "ckpt": ckpt}


_OUTS = iter(range(10**6))


def _train(e, *extra):
    """Arguments of a good training run into a fresh --out (so that no case sees another's directory)."""
    return ["--out", str(e["root"] / f"out-train-{next(_OUTS)}"), "--data-dir", str(e["data"]), "--no-progress", "data.seq_len=32",
            "data.n_val_windows=4", "data.batch_size=4", f"data.store_dir={e['root'] / 'store'}",
            "train.max_steps=3", "train.accelerator=cpu", *extra]


def _generate(e, *extra, ckpt=None):
    return ["--checkpoint", str(ckpt or e["run"]), "--prompt", "ACGT", "--max-new-tokens", "4", *extra]


def _boundaries(e, *extra, ckpt=None, out=None):
    return ["--checkpoint", str(ckpt or e["run"]), "--genome", str(e["root"] / "g.fasta"), "--annotation",
            str(e["root"] / "g.gff"), "--windows", "1", "--window-len", "64", "--device", "cpu",
            "--out", str(out or e["root"] / "out-b"), *extra]


def _variant_effect(e, *extra, ckpt=None):
    return ["--checkpoint", str(ckpt or e["run"]), "--dms", str(VE / "BLAT_ECOLX_Stiffler2015.csv"), "--cds",
            str(VE / "TEM1_bla_cds.fasta"), "--fitness-column", "2500", "--wt-protein",
            str(VE / "BLAT_ECOLX_wt_protein_24-286.fasta"), "--max-variants", "4", "--device", "cpu",
            "--out", str(e["root"] / "out-ve"), *extra]


def _sweep(e, *extra):
    return ["--model", "transformer", "--budgets", "4e9", "--rules", "cpu-smoke", "--sizes", "3", "--seq-len", "32",
            "--out", str(e["root"] / "out-sweep"), "--data-dir", str(e["data"]), "--no-progress", "--dry-run", *extra]


def _tune(e, *extra):
    return ["--model", "transformer", "--budget", "1e13", "--seq-len", "32", "--trials", "1",
            "--out", str(e["root"] / "out-tune"), "--data-dir", str(e["data"]), *extra]


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    args = list(args)
    args[args.index(flag) + 1] = value
    return args


R = lambda e: e["root"]  # noqa: E731
CASES = {
    # ---------------------------------------------------------------- python -m dnahnet.train
    "train --data-dir missing": ("train", lambda e: _replace(_train(e), "--data-dir", str(R(e) / "nope"))),
    "train --data-dir empty": ("train", lambda e: _replace(_train(e), "--data-dir", str(R(e) / "empty"))),
    "train seq_len longer than any record": ("train", lambda e: _train(e, "data.seq_len=100000")),
    "train lr=nan": ("train", lambda e: _train(e, "train.lr=nan")),
    "train lr negative": ("train", lambda e: _train(e, "train.lr=-0.1")),
    "train unknown precision": ("train", lambda e: _train(e, "train.precision=fp8")),
    "train unknown schedule": ("train", lambda e: _train(e, "train.schedule=linear")),
    "train unknown strategy": ("train", lambda e: _train(e, "train.strategy=megatron")),
    "train n_heads not dividing d_model": ("train", lambda e: _train(e, "model.n_heads=3")),
    "train negative d_model": ("train", lambda e: _train(e, "model.d_model=-8")),
    "train d_model=0": ("train", lambda e: _train(e, "model.d_model=0")),
    "train negative n_layers": ("train", lambda e: _train(e, "model.n_layers=-1")),
    "train max_steps=0": ("train", lambda e: _train(e, "train.max_steps=0")),
    "train negative max_steps": ("train", lambda e: _train(e, "train.max_steps=-5")),
    "train negative batch": ("train", lambda e: _train(e, "data.batch_size=-1")),
    "train n_val_windows=0": ("train", lambda e: _train(e, "data.n_val_windows=0")),
    "train --threads -1": ("train", lambda e: _train(e, "--threads", "-1")),
    "train --config directory": ("train", lambda e: _train(e, "--config", str(R(e) / "empty"))),
    "train --config empty file": ("train", lambda e: _train(e, "--config", str(R(e) / "empty.yaml"))),
    "train --config YAML list": ("train", lambda e: _train(e, "--config", str(R(e) / "list.yaml"))),
    "train --config missing": ("train", lambda e: _train(e, "--config", str(R(e) / "nope.yaml"))),
    "train unknown family": ("train", lambda e: _train(e, "--model", "nope")),
    "train unknown field": ("train", lambda e: _train(e, "train.nope=1")),
    "train bad section": ("train", lambda e: _train(e, "foo.bar=1")),
    "train diverged run": ("train", lambda e: _replace(_train(e, "train.lr=1e30"), "--out", str(R(e) / "out-nan"))),
    "train --out is a file": ("train", lambda e: _replace(_train(e), "--out", str(R(e) / "a_file"))),
    "train --out unwritable": ("train", lambda e: _replace(_train(e), "--out", UNWRITABLE)),
    # ---------------------------------------------------------------- python -m dnahnet.generate
    "generate random checkpoint": ("generate", lambda e: _generate(e, ckpt=R(e) / "random.ckpt")),
    "generate truncated checkpoint": ("generate", lambda e: _generate(e, ckpt=R(e) / "truncated.ckpt")),
    "generate mismatched checkpoint": ("generate", lambda e: _generate(e, ckpt=R(e) / "mismatched.ckpt")),
    "generate missing checkpoint": ("generate", lambda e: _generate(e, ckpt=R(e) / "nope.ckpt")),
    "generate directory without checkpoint": ("generate", lambda e: _generate(e, ckpt=R(e) / "empty")),
    "generate --device tpu9": ("generate", lambda e: _generate(e, "--device", "tpu9")),
    "generate --device cuda:7": ("generate", lambda e: _generate(e, "--device", "cuda:7")),
    "generate --num-samples 0": ("generate", lambda e: _generate(e, "--num-samples", "0")),
    "generate --top-p 5": ("generate", lambda e: _generate(e, "--top-p", "5")),
    "generate --top-k -3": ("generate", lambda e: _generate(e, "--top-k", "-3")),
    "generate --max-new-tokens -1": ("generate", lambda e: _generate(e, "--max-new-tokens", "-1")),
    "generate --temperature -1": ("generate", lambda e: _generate(e, "--temperature", "-1")),
    # ---------------------------------------------------------------- evaluations
    "boundaries random checkpoint": ("boundaries", lambda e: _boundaries(e, ckpt=R(e) / "random.ckpt")),
    "boundaries truncated checkpoint": ("boundaries", lambda e: _boundaries(e, ckpt=R(e) / "truncated.ckpt")),
    "boundaries mismatched checkpoint": ("boundaries", lambda e: _boundaries(e, ckpt=R(e) / "mismatched.ckpt")),
    "boundaries transformer checkpoint": ("boundaries", lambda e: _boundaries(e)),
    "boundaries --device tpu9": ("boundaries", lambda e: _replace(_boundaries(e), "--device", "tpu9")),
    "boundaries --batch-size 0": ("boundaries", lambda e: _boundaries(e, "--batch-size", "0")),
    "boundaries --window-len 0": ("boundaries", lambda e: _replace(_boundaries(e), "--window-len", "0")),
    "boundaries --windows 0": ("boundaries", lambda e: _replace(_boundaries(e), "--windows", "0")),
    "boundaries --promoter-span -50": ("boundaries", lambda e: _boundaries(e, "--promoter-span", "-50")),
    "boundaries --genome is a directory": ("boundaries", lambda e: _replace(_boundaries(e), "--genome", str(R(e)))),
    "boundaries --out is a file": ("boundaries", lambda e: _boundaries(e, out=R(e) / "a_file")),
    "boundaries --out unwritable": ("boundaries", lambda e: _boundaries(e, out=UNWRITABLE)),
    "variant_effect random checkpoint": ("variant_effect", lambda e: _variant_effect(e, ckpt=R(e) / "random.ckpt")),
    "variant_effect --batch-size 0": ("variant_effect", lambda e: _variant_effect(e, "--batch-size", "0")),
    "variant_effect --device cuda:7": ("variant_effect", lambda e: _replace(_variant_effect(e), "--device", "cuda:7")),
    "variant_effect --dms is a directory": ("variant_effect",
                                           lambda e: _replace(_variant_effect(e), "--dms", str(R(e)))),
    "essentiality --window 0": ("essentiality", lambda e: ["--family", "transformer", "--genome", "g", "--annotation",
                                                           "a", "--labels", "l", "--window", "0", "--out", "o"]),
    # ---------------------------------------------------------------- sweeps
    "sweep --seq-len 0": ("isoflop", lambda e: _replace(_sweep(e), "--seq-len", "0")),
    "sweep --sizes 0": ("isoflop", lambda e: _replace(_sweep(e), "--sizes", "0")),
    "sweep --devices 0": ("isoflop", lambda e: _sweep(e, "--devices", "0")),
    "sweep --budgets abc": ("isoflop", lambda e: _replace(_sweep(e), "--budgets", "abc")),
    "sweep --out is a file": ("isoflop", lambda e: _replace(_sweep(e), "--out", str(R(e) / "a_file"))),
    "sweep --out unwritable": ("isoflop", lambda e: _replace(_sweep(e), "--out", UNWRITABLE)),
    "tune --storage notadb://x": ("tune", lambda e: _tune(e, "--storage", "notadb://x")),
    "tune --out is a file": ("tune", lambda e: _replace(_tune(e), "--out", str(R(e) / "a_file"))),
    "tune --seq-len 0": ("tune", lambda e: _replace(_tune(e), "--seq-len", "0")),
    # ---------------------------------------------------------------- hierarchy usage, Markov floor
    "hierarchy_usage random checkpoint": ("hierarchy_usage", lambda e: [str(R(e) / "random.ckpt")]),
    "hierarchy_usage truncated checkpoint": ("hierarchy_usage", lambda e: [str(R(e) / "truncated.ckpt")]),
    "hierarchy_usage missing model": ("hierarchy_usage", lambda e: [str(R(e) / "nope")]),
    "hierarchy_usage transformer run": ("hierarchy_usage", lambda e: [str(e["run"])]),
    "markov --data-dir missing": ("markov", lambda e: ["--data-dir", str(R(e) / "nope"), "--seq-len", "32",
                                                       "--out", str(R(e) / "out-markov.csv")]),
    "markov --plan missing": ("markov", lambda e: ["--plan", str(R(e) / "nope.csv"), "--out", str(R(e) / "m.csv")]),
    "markov --max-order 99": ("markov", lambda e: ["--max-order", "99", "--out", str(R(e) / "m.csv")]),
    # ---------------------------------------------------------------- python -m dnahnet.data
    "data prepare --out under a file": ("data", lambda e: ["prepare", str(e["data"]), "--quiet", "--out",
                                                           str(R(e) / "a_file" / "store")]),
    "data info of no store": ("data", lambda e: ["info", str(R(e) / "empty")]),
}


def _command(name: str):
    if name == "train":
        from dnahnet.train import main
    elif name == "generate":
        from dnahnet.generate import main
    elif name in ("boundaries", "variant_effect", "essentiality"):
        import importlib

        from dnahnet.evals.cli import run_main

        module = importlib.import_module(f"dnahnet.evals.{name}")
        return lambda argv: run_main(module.main, argv)
    elif name == "isoflop":
        from sweeps.isoflop import main
    elif name == "tune":
        from sweeps.tune import main
    elif name == "hierarchy_usage":
        from dnahnet.hierarchy_usage import main
    elif name == "markov":
        from analysis.markov import main
    else:
        from dnahnet.data.__main__ import main
    return main


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line_and_exit_2(case, env, capsys):
    command, argv = CASES[case]
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("the machine has a GPU")  # only "cuda:7" then; kept honest rather than faked
    if command == "variant_effect" and not VE.is_dir():
        pytest.skip("needs ../shared/data/variant_effect")
    if "unwritable" in case:
        try:
            Path(UNWRITABLE).mkdir()
        except OSError:
            pass
        else:  # pragma: no cover - a machine where sysfs takes new entries
            shutil.rmtree(UNWRITABLE)
            pytest.skip(f"{UNWRITABLE} is writable here")
    capsys.readouterr()
    try:
        code = _command(command)(argv(env))
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2, (code, err[-2000:])
    assert len(error_lines) == 1, err[-2000:]
    assert "Traceback" not in err, err[-3000:]


def test_python_m_runs_the_same_checks(env):
    """The `__main__` wiring: exit code 2 and the error line through a real interpreter."""
    for module, argv in (("dnahnet.evals.boundaries", _boundaries(env, "--promoter-span", "-50")),
                         ("dnahnet.generate", _generate(env, ckpt=env["root"] / "random.ckpt"))):
        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert sum("error:" in line for line in proc.stderr.splitlines()) == 1
