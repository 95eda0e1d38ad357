"""Every command refuses bad input with exit code 2 and one `error:` line naming the argument or file,
never a traceback, and writes nothing (issues 18 and 25). Table-driven: one row per case (command, arguments,
exit code, a pattern the error line must match, whether the command may write), run in process through each
command's `main` (the evaluations through `dnahnet.evals.cli.run_main`, what their `__main__` runs). "Nothing
written" compares every file under the fixture's folder and the working directory before and after."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.helpers.synthetic_corpus import markov_corpus

REPO = Path(__file__).resolve().parents[1]

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
    # Checkpoints that carry code (issue 25): each payload would create the marker file if it ever ran.
    marker = root / "PAYLOAD-RAN"
    for name, payload in _payloads(marker).items():
        for protocol in (2, 4):
            torch.save({"global_step": 99, "hyper_parameters": state["hyper_parameters"], "x": payload},
                       root / f"code-{name}-p{protocol}.ckpt", pickle_protocol=protocol)
    bad_config = torch.load(ckpt, weights_only=True)
    bad_config["hyper_parameters"]["model_config"]["d_model"] = -4
    torch.save(bad_config, root / "d_model-4.ckpt")
    dnahnet = root / "dnahnet-run"  # a dnaHNet run whose checkpoint lands in a Transformer++ run
    assert train_main(["--out", str(dnahnet), "--model", "dnahnet", "--variant", "3", "--data-dir", str(data),
                       "--no-progress", "data.seq_len=32", "data.n_val_windows=4", "data.batch_size=4",
                       f"data.store_dir={root / 'store'}", "train.max_steps=2", "train.accelerator=cpu"]) == 0
    foreign = torch.load((dnahnet / "checkpoints" / "last.ckpt").resolve(), weights_only=True)
    foreign["global_step"] = 99  # newer than the Transformer++ run's own: the one a resume would pick
    torch.save(foreign, root / "dnahnet-step99.ckpt")
    from dnahnet.export import main as export_main

    assert export_main(["--checkpoint", str(run), "--out", str(root / "exported")]) == 0
    config = json.loads((root / "exported" / "config.json").read_text())
    config["model_config"]["d_model"] = -4
    shutil.copytree(root / "exported", root / "exported-d_model-4")
    (root / "exported-d_model-4" / "config.json").write_text(json.dumps(config))
    reference = REPO / "analysis" / "reference" / "cpu" / "transformer"
    for name in ("words-in-windows", "unreadable"):
        shutil.copytree(reference, root / name)
    windows = root / "words-in-windows" / "val_windows.csv"
    lines = windows.read_text().splitlines()
    head, first = lines[1].split(",", 2)[:2], lines[1].split(",", 2)[2]
    lines[1] = ",".join([*head, "abc", first.split(",", 1)[1]])  # run 1's window 1: a word
    windows.write_text("\n".join(lines) + "\n")
    return {"root": root, "data": data, "run": run, "ckpt": ckpt, "marker": marker,
            "dnahnet_ckpt": root / "dnahnet-step99.ckpt"}


class _Calls:
    """Unpickling this calls `fn(*args)`: what a crafted checkpoint could run."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def _payloads(marker: Path) -> dict:
    return {"posix.system": _Calls(os.system, f"touch {marker}"),  # a blocked module (torch's wording differs)
            "builtins.eval": _Calls(eval, f"open({str(marker)!r}, 'w')"),
            "builtins.exec": _Calls(exec, f"open({str(marker)!r}, 'w')"),
            "subprocess.call": _Calls(subprocess.call, ["touch", str(marker)])}


def _run_with(e, checkpoint: Path, name: str) -> Path:
    """A copy of the trained (unfinished) run with `checkpoint` as its newest step: what train resumes from."""
    run = e["root"] / f"resume-{name}-{next(_OUTS)}"
    shutil.copytree(e["run"], run, symlinks=True)
    (run / "result.json").unlink()
    shutil.copy(checkpoint, run / "checkpoints" / "step=99.ckpt")
    return run


def _resume(e, checkpoint: Path, name: str) -> list[str]:
    """Rerunning the trained run's own command in a copy holding `checkpoint`."""
    return _replace(_train(e), "--out", str(_run_with(e, checkpoint, name)))


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


@dataclass(frozen=True)
class Case:
    command: str  # train, generate, export, boundaries, variant_effect, essentiality, isoflop, tune, data, ...
    argv: Callable  # env -> the arguments
    message: str = r""  # a regular expression the one error line must match (names the argument or file)
    code: int = 2  # the exit code
    writes: bool = False  # the command may leave files (it failed after starting, e.g. a diverged run)
    setup: Callable | None = None  # (monkeypatch, env) -> None: what the case simulates (a full disk)


def _full_disk_for_safetensors(monkeypatch, e):
    from safetensors import SafetensorError

    def save_model(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
                              "\"No space left on device\" })")

    monkeypatch.setattr("safetensors.torch.save_model", save_model)


def _full_disk_for_checkpoints(monkeypatch, e):
    """Lightning saves a checkpoint through fsspec's temporary file; ENOSPC names that file, gone at once."""

    def atomic_save(checkpoint, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(Path(path).parent / ".tmp_fsspec_0a1b2c"))

    monkeypatch.setattr("lightning.fabric.plugins.io.torch_io._atomic_save", atomic_save)


def _unreadable(monkeypatch, e):
    """An unreadable results.csv (chmod 000 does not stop root, who runs these tests on some machines)."""
    import pandas as pd

    real = pd.read_csv

    def read_csv(path, *args, **kwargs):
        if "unreadable" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(pd, "read_csv", read_csv)


def _code(e, name: str, protocol: int = 2) -> Path:
    return e["root"] / f"code-{name}-p{protocol}.ckpt"


CARRIES_CODE = r"refused: this file carries code \(it asks for (posix|builtins|subprocess)\.\w+\).*left in place"
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
    # ---------------------------------------------------------------- python -m dnahnet.sampling
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
    # ---------------------------------------------------------------- issue 25, item 1: checkpoints that carry code
    **{f"train resume {n} p{p}": Case("train", lambda e, n=n, p=p: _resume(e, _code(e, n, p), n), CARRIES_CODE)
       for n in ("posix.system", "builtins.eval", "builtins.exec", "subprocess.call") for p in (2, 4)},
    **{f"generate {n}": Case("generate", lambda e, n=n: _generate(e, ckpt=_code(e, n)), CARRIES_CODE)
       for n in ("posix.system", "builtins.eval", "builtins.exec")},
    "generate posix.system protocol 4": Case("generate", lambda e: _generate(e, ckpt=_code(e, "posix.system", 4)),
                                             CARRIES_CODE),
    **{f"export {n}": Case("export", lambda e, n=n: ["--checkpoint", str(_code(e, n)), "--out", str(R(e) / "out-x")],
                           CARRIES_CODE) for n in ("posix.system", "builtins.exec")},
    **{f"boundaries {n}": Case("boundaries", lambda e, n=n: _boundaries(e, ckpt=_code(e, n)), CARRIES_CODE)
       for n in ("posix.system", "builtins.eval")},
    "variant_effect posix.system": Case("variant_effect", lambda e: _variant_effect(e, ckpt=_code(e, "posix.system")),
                                        CARRIES_CODE),
    # ---------------------------------------------------------------- issue 25, item 3: one line, not a traceback
    "train init_std negative": Case("train", lambda e: _train(e, "model.init_std=-0.02"), r"model\.init_std=-0\.02"),
    "train mlp_multiple=0": Case("train", lambda e: _train(e, "model.mlp_multiple=0"), r"model\.mlp_multiple=0"),
    "train accelerator=gpu without one": Case("train", lambda e: _train(e, "train.accelerator=gpu"),
                                              r"train\.accelerator=gpu: no CUDA GPU"),
    "train vocab_size=4": Case("train", lambda e: _train(e, "model.vocab_size=4"), r"model\.vocab_size=4: the tokenizer has 8"),
    "train eval_batch_size=0": Case("train", lambda e: _train(e, "data.eval_batch_size=0"), r"eval_batch_size=0"),
    "train holdout a mapping": Case("train", lambda e: _train(e, "data.holdout={a: 1}"), r"holdout.*\{'a': 1\}"),
    "train resume from a dnaHNet checkpoint": Case(
        "train", lambda e: _resume(e, e["dnahnet_ckpt"], "dnahnet"), r"step=99\.ckpt: a checkpoint of a dnahnet model"),
    "train full disk at a checkpoint": Case("train", lambda e: _train(e), r"out-train-\d+: No space left on device "
                                            r"\(the run directory", writes=True, setup=_full_disk_for_checkpoints),
    "generate checkpoint config d_model=-4": Case("generate", lambda e: _generate(e, ckpt=R(e) / "d_model-4.ckpt"),
                                                  r"d_model-4\.ckpt: its model configuration is invalid"),
    "generate exported config d_model=-4": Case("generate", lambda e: _generate(e, ckpt=R(e) / "exported-d_model-4"),
                                                r"config\.json: its model configuration is invalid"),
    "export checkpoint config d_model=-4": Case("export", lambda e: ["--checkpoint", str(R(e) / "d_model-4.ckpt"),
                                                                     "--out", str(R(e) / "out-x")],
                                                r"d_model-4\.ckpt: its model configuration is invalid"),
    "export full disk": Case("export", lambda e: ["--checkpoint", str(e["run"]), "--out", str(R(e) / "out-x")],
                             r"--out .*out-x: cannot write model\.safetensors", setup=_full_disk_for_safetensors),
    "generate --temperature inf": Case("generate", lambda e: _generate(e, "--temperature", "inf"), r"--temperature"),
    "generate --temperature nan": Case("generate", lambda e: _generate(e, "--temperature", "nan"), r"--temperature"),
    "variant_effect --flank -5": Case("variant_effect", lambda e: _variant_effect(e, "--flank", "-5"), r"--flank"),
    "sweep --set model.d_model=0": Case("isoflop", lambda e: _sweep(e, "--set", "model.d_model=0"), r"model\.d_model=0"),
    "sweep --seq-len 4": Case("isoflop", lambda e: _replace(_sweep(e), "--seq-len", "4"), r"--seq-len must be >= 8"),
    "sweep --set data.n_val_windows=0": Case("isoflop", lambda e: _sweep(e, "--set", "data.n_val_windows=0"),
                                             r"data\.n_val_windows=0"),
    "sweep --precision fp99": Case("isoflop", lambda e: _sweep(e, "--precision", "fp99"), r"precision='fp99'"),
    **{f"bench_inference {' '.join(a)}": Case("bench_inference", lambda e, a=a: [*a, "--out", str(R(e) / "out-bi")], m)
       for a, m in ((("--models", "nope:tiny"), r"--models nope:tiny: unknown model family"),
                    (("--models", "transformer:nope"), r"--models transformer:nope: unknown preset"),
                    (("--models", "transformer:tiny:d_model=abc"), r"--models transformer:tiny:d_model=abc"),
                    (("--models", "transformer"), r"--models 'transformer': must be family:preset"),
                    (("--quick", "--reps", "0"), r"--reps"), (("--quick", "--threads", "0"), r"--threads"),
                    (("--quick", "--device", "cuda"), r"--device cuda"),
                    (("--quick", "--decode-tokens", "-5"), r"--decode-tokens"),
                    (("--quick", "--min-log2", "8", "--max-log2", "4"), r"--min-log2 8 is above --max-log2 4"))},
    "bench_inference --out is a file": Case("bench_inference", lambda e: ["--quick", "--out", str(R(e) / "a_file")],
                                            r"--out .*a_file: is a file"),
    "bench_inference --out unwritable": Case("bench_inference", lambda e: ["--quick", "--out", UNWRITABLE],
                                             r"--out /sys/dnahnet-test-out: cannot write"),
    "demo --ladder nope": Case("demo", lambda e: ["--ladder", "nope", "--out", str(R(e) / "out-demo")],
                               r"--ladder: unknown ladder 'nope'"),
    "demo --reference missing": Case("demo", lambda e: ["--reference", str(R(e) / "nope"), "--out", str(R(e) / "out-demo")],
                                     r"--reference: no committed sweep logs under .*/nope"),
    "demo --out is a file": Case("demo", lambda e: ["--out", str(R(e) / "a_file")], r"--out .*a_file: is a file"),
    "train stripedhyena filter_group_size=0": Case(
        "train", lambda e: _train(e, "--model", "stripedhyena", "model.filter_group_size=0"), r"filter_group_size=0"),
    "tune model.d_model=0": Case("tune", lambda e: _tune(e, "--", "model.d_model=0"), r"model\.d_model=0"),
    "tune train.accelerator=gpu without one": Case("tune", lambda e: _tune(e, "--", "train.accelerator=gpu"),
                                                   r"train\.accelerator=gpu: no CUDA GPU"),
    "analysis unreadable results.csv": Case(
        "analysis", lambda e: ["--results", str(R(e) / "unreadable" / "results.csv"), "--out", str(R(e) / "out-an")],
        r"unreadable/results\.csv: cannot read it \(Permission denied\)", setup=_unreadable),
    "analysis a word in val_windows.csv": Case(
        "analysis", lambda e: ["--results", str(R(e) / "words-in-windows" / "results.csv"), "--out", str(R(e) / "out-an"),
                               "--quiet"], r"val_windows\.csv: line 2, column w1: non-numeric value 'abc'"),
}


# The pattern each earlier row's error line must match (issue 18's rows, written before the table had the column).
MESSAGES = {
    "hierarchy_usage random checkpoint": r"random\.ckpt: unreadable checkpoint",
    "hierarchy_usage truncated checkpoint": r"truncated\.ckpt: unreadable checkpoint",
    "hierarchy_usage missing model": r"nope: checkpoint not found",
    "hierarchy_usage transformer run": r"not a dnaHNet",
    "markov --data-dir missing": r"data directory .*/nope .*does not exist",
    "markov --plan missing": r"--plan .*nope\.csv: cannot read",
    "markov --max-order 99": r"--max-order 99 must lie in 0\.\.16",
    "train --data-dir missing": r"data directory .*/nope .*does not exist",
    "train --data-dir empty": r"no FASTA/GenBank file under .*/empty",
    "train seq_len longer than any record": r"no record is at least 100001 nt long",
    "train lr=nan": r"train\.lr=nan",
    "train lr negative": r"train\.lr=-0\.1",
    "train unknown precision": r"train\.precision='fp8'",
    "train unknown schedule": r"train\.schedule='linear'",
    "train unknown strategy": r"train\.strategy='megatron'",
    "train n_heads not dividing d_model": r"not divisible by n_heads=3",
    "train negative d_model": r"model\.d_model=-8",
    "train d_model=0": r"model\.d_model=0",
    "train negative n_layers": r"model\.n_layers=-1",
    "train max_steps=0": r"train\.max_steps=0",
    "train negative max_steps": r"train\.max_steps=-5",
    "train negative batch": r"batch_size=-1",
    "train n_val_windows=0": r"data\.n_val_windows=0",
    "train --threads -1": r"--threads must be >= 1",
    "train --config directory": r"--config .*/empty: is a directory",
    "train --config empty file": r"--config .*/empty\.yaml: empty",
    "train --config YAML list": r"--config .*/list\.yaml: a YAML list",
    "train --config missing": r"--config .*/nope\.yaml: no such file",
    "train unknown family": r"unknown model family 'nope'",
    "train unknown field": r"unknown field 'nope' for TrainConfig",
    "train bad section": r"unknown section 'foo'",
    "train diverged run": r"out-nan: the run diverged",
    "train --out is a file": r"--out .*/a_file: is a file",
    "train --out unwritable": r"/sys/dnahnet-test-out: cannot create the run directory",
    "generate random checkpoint": r"random\.ckpt: unreadable checkpoint",
    "generate truncated checkpoint": r"truncated\.ckpt: unreadable checkpoint",
    "generate mismatched checkpoint": r"mismatched\.ckpt: its weights do not match",
    "generate missing checkpoint": r"nope\.ckpt: checkpoint not found",
    "generate directory without checkpoint": r"/empty: a directory without checkpoints/last\.ckpt",
    "generate --device tpu9": r"--device 'tpu9'",
    "generate --device cuda:7": r"--device cuda:7",
    "generate --num-samples 0": r"--num-samples",
    "generate --top-p 5": r"--top-p",
    "generate --top-k -3": r"--top-k",
    "generate --max-new-tokens -1": r"--max-new-tokens",
    "generate --temperature -1": r"--temperature",
    "boundaries random checkpoint": r"random\.ckpt: unreadable checkpoint",
    "boundaries truncated checkpoint": r"truncated\.ckpt: unreadable checkpoint",
    "boundaries mismatched checkpoint": r"mismatched\.ckpt: its weights do not match",
    "boundaries transformer checkpoint": r"needs a dnaHNet model",
    "boundaries --device tpu9": r"--device 'tpu9'",
    "boundaries --batch-size 0": r"argument --batch-size",
    "boundaries --window-len 0": r"argument --window-len",
    "boundaries --windows 0": r"argument --windows",
    "boundaries --promoter-span -50": r"argument --promoter-span",
    "boundaries --genome is a directory": r"error: .*cli0",
    "boundaries --out is a file": r"--out .*/a_file: is a file",
    "boundaries --out unwritable": r"--out /sys/dnahnet-test-out: cannot create it",
    "variant_effect random checkpoint": r"random\.ckpt: unreadable checkpoint",
    "variant_effect --batch-size 0": r"argument --batch-size",
    "variant_effect --device cuda:7": r"--device cuda:7",
    "variant_effect --dms is a directory": r"error: .*cli0",
    "essentiality --window 0": r"argument --window",
    "sweep --seq-len 0": r"--seq-len must be >= 8",
    "sweep --sizes 0": r"--sizes must be >= 1",
    "sweep --devices 0": r"--devices must be >= 1",
    "sweep --budgets abc": r"--budgets: 'abc' is not a number",
    "sweep --out is a file": r"--out .*/a_file: is a file",
    "sweep --out unwritable": r"/sys/dnahnet-test-out: cannot create the sweep directory",
    "tune --storage notadb://x": r"--storage notadb://x: cannot open it",
    "tune --out is a file": r"--out .*/a_file: is a file",
    "tune --seq-len 0": r"--seq-len must be >= 1",
    "data prepare --out under a file": r"/a_file: is a file",
    "data info of no store": r"/empty: not a token store",
}
WRITES = {"train diverged run"}  # it trained (and wrote its run directory) before the loss became NaN


def _row(case: str) -> Case:
    row = CASES[case]
    if isinstance(row, Case):
        return row
    return Case(*row, message=MESSAGES[case], writes=case in WRITES)


def test_every_row_has_a_message_pattern():
    assert all(_row(case).message for case in CASES)


def _command(name: str):
    if name == "train":
        from dnahnet.train import main
    elif name == "generate":
        from dnahnet.sampling import main
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
    elif name == "export":
        from dnahnet.export import main
    elif name == "demo":
        from sweeps.demo import main
    elif name == "analysis":
        from analysis.__main__ import main
    elif name == "bench_inference":
        from tests.helpers.benchmarks import load_benchmark

        return load_benchmark("bench_inference").main
    else:
        from dnahnet.data.__main__ import main
    return main


def _files(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folders` -> (size, mtime_ns): what "nothing written" compares."""
    out = {}
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(folder):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                out[str(path)] = (st.st_size if not path.is_dir() else 0, st.st_mtime_ns if not path.is_dir() else 0)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_error_line_and_exit_2(case, env, capsys, monkeypatch, tmp_path):
    row = _row(case)
    if "cuda" in case and torch.cuda.is_available():
        pytest.skip("the machine has a GPU")  # only "cuda:7" then; kept honest rather than faked
    if "accelerator=gpu" in case and torch.cuda.is_available():
        pytest.skip("the machine has a GPU")
    if row.command == "variant_effect" and not VE.is_dir():
        pytest.skip("needs ../shared/data/variant_effect")
    if "unwritable" in case:
        try:
            Path(UNWRITABLE).mkdir()
        except OSError:
            pass
        else:  # pragma: no cover - a machine where sysfs takes new entries
            shutil.rmtree(UNWRITABLE)
            pytest.skip(f"{UNWRITABLE} is writable here")
    monkeypatch.chdir(tmp_path)  # what a command writes into its working directory is seen too
    argv = row.argv(env)  # may prepare a run directory: before the snapshot
    if row.setup:
        row.setup(monkeypatch, env)
    store = str(env["root"] / "store")  # the data cache: built once by the fixture, may be reopened
    before = {k: v for k, v in _files(env["root"], tmp_path).items() if not k.startswith(store)}
    capsys.readouterr()
    try:
        code = _command(row.command)(argv)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert code == row.code, (code, err[-2000:])
    assert len(error_lines) == 1, err[-2000:]
    assert "Traceback" not in err, err[-3000:]
    assert re.search(row.message, error_lines[0]), (row.message, error_lines[0])
    assert not env["marker"].exists(), "a checkpoint's payload ran"
    if not row.writes:
        after = {k: v for k, v in _files(env["root"], tmp_path).items() if not k.startswith(store)}
        assert after == before, {"new or changed": sorted(k for k in after if after[k] != before.get(k))[:5],
                                 "gone": sorted(set(before) - set(after))[:5]}


def test_python_m_runs_the_same_checks(env):
    """The `__main__` wiring: exit code 2 and the error line through a real interpreter."""
    for module, argv in (("dnahnet.evals.boundaries", _boundaries(env, "--promoter-span", "-50")),
                         ("dnahnet.sampling", _generate(env, ckpt=env["root"] / "random.ckpt"))):
        proc = subprocess.run([sys.executable, "-m", module, *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert sum("error:" in line for line in proc.stderr.splitlines()) == 1
