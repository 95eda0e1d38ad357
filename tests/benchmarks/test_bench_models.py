"""bench_models: dnaHNet's FLOP rate at the compression its timed passes had, not at the target ratios."""

import pytest
import torch

from tests.helpers.benchmarks import load_benchmark


def test_achieved_flops_use_the_measured_compression(tmp_path):
    bench = load_benchmark("bench_models")
    args = bench.parse_args(["--models", "dnahnet", "transformer", "--lengths", "128", "--repeats", "2",
                             "--warmup", "1", "--out", str(tmp_path / "models.csv")])
    rows = {r["model"]: r for r in bench.run(args)}
    assert all(r["status"] == "ok" and r["warmup"] == 1 and r["repeats"] == 2 for r in rows.values())

    # Recompute the dnaHNet row: same weights (seeded build), same input (seeded by L).
    model = bench.build("dnahnet", torch.device("cpu"))
    ids = torch.randint(0, 4, (1, 129), generator=torch.Generator().manual_seed(128))
    with torch.no_grad():
        metrics = {k: float(v) for k, v in model(ids[:, :-1]).metrics.items()}
    expected = model.measured_flops_per_token(128, metrics).training
    row = rows["dnahnet"]
    assert row["measured_flops_per_token"] == pytest.approx(expected, rel=1e-6)
    assert row["achieved_gflops"] == pytest.approx(expected * 128 / row["seconds"] / 1e9, rel=1e-9)
    # At initialisation the selection rates are far from the targets 1/3 and 1/2: the target-ratio count
    # (what the benchmark used to divide by) is a different number.
    assert row["train_flops_per_token"] == model.flops_per_token(128).training
    assert abs(row["measured_flops_per_token"] / row["train_flops_per_token"] - 1) > 0.01
    assert len(row["selection_rates"].split("/")) == 2
    # Families without a chunker: measured = analytic.
    tf = rows["transformer"]
    assert tf["measured_flops_per_token"] == tf["train_flops_per_token"] and tf["selection_rates"] == ""
    bench.write_csv(args.out, list(rows.values()))
    assert (tmp_path / "models.csv").read_text().splitlines()[0].startswith("model,params,seq_len")
