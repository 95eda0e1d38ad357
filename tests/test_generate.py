"""Generation: reproducible with a seed; greedy decoding equals the argmax of the full forward."""

import pytest
import torch

import dnahnet
from dnahnet.sampling import filter_logits, generate


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return dnahnet.build_model("transformer", "tiny").eval()


def test_seeded_sampling_is_reproducible(model):
    a = generate(model, "ACGTACGGTA", 30, temperature=1.0, seed=7, num_samples=3)
    b = generate(model, "ACGTACGGTA", 30, temperature=1.0, seed=7, num_samples=3)
    c = generate(model, "ACGTACGGTA", 30, temperature=1.0, seed=8, num_samples=3)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 40) and int(a[:, 10:].max()) <= 3  # only A, C, G, T are sampled


def test_greedy_equals_argmax_of_full_forward(model):
    out = generate(model, "GATTACAGATTACA", 25, temperature=0)
    with torch.no_grad():
        logits = model(out).logits[0, 13:-1, :4]  # predictions for the generated positions
    assert torch.equal(logits.argmax(-1), out[0, 14:])


def test_filter_logits_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    kept = ~torch.isinf(filter_logits(logits, top_p=0.7)[0])
    assert kept.tolist() == [True, True, False, False]  # 0.5 < 0.7 <= 0.8


def test_cli_prints_fasta(capsys):
    from dnahnet.sampling import main

    assert main(["--family", "transformer", "--prompt", "ACGT", "--max-new-tokens", "90", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(">sample_0") and len(lines[1]) == 80 and len("".join(lines[1:])) == 94


def test_dnahnet_generate_is_the_function_whatever_was_imported():
    """`dnahnet.generate(model, ...)` is the sampling function, a plain function, before and after every dnahnet
    module is imported (a submodule named `generate` would replace it on import), and `python -m
    dnahnet.sampling` runs the command without runpy's warning about a module imported before it ran."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", "dnahnet.sampling", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "RuntimeWarning" not in proc.stderr, proc.stderr[-2000:]
    check = ("import importlib, inspect, pkgutil, dnahnet, torch\n"
             "from dnahnet import sampling\n"
             "assert dnahnet.generate is sampling.generate and inspect.isfunction(dnahnet.generate)\n"
             "m = dnahnet.build_model('transformer', 'tiny')\n"
             "a = dnahnet.generate(m, 'ACGT', 5, temperature=0)\n"
             "for info in pkgutil.walk_packages(dnahnet.__path__, 'dnahnet.'):\n"
             "    if not info.name.endswith('__main__'):\n"
             "        importlib.import_module(info.name)\n"
             "from dnahnet import generate as g\n"
             "assert g is sampling.generate and inspect.isfunction(dnahnet.generate)\n"
             "assert torch.equal(a, g(m, 'ACGT', 5, temperature=0)) and a.shape[-1] == 9\n")
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
