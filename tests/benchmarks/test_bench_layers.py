"""bench_layers: the naive scan is timed with the same protocol (warm-up, median of repeats) as the
chunked scan it is compared with."""

import csv

from tests.helpers.benchmarks import load_benchmark


def test_every_layer_gets_the_same_warmup_and_repeats(tmp_path, monkeypatch):
    bench = load_benchmark("bench_layers")
    calls = []
    real = bench.time_fwd_bwd

    def recording(layer, x, amp_dtype, warmup, repeats, patch_naive):
        calls.append((patch_naive, warmup, repeats))
        return real(layer, x, amp_dtype, warmup, repeats, patch_naive)

    monkeypatch.setattr(bench, "time_fwd_bwd", recording)
    out = tmp_path / "layers.csv"
    assert bench.main(["--quick", "--layers", "mamba2-chunked", "mamba2-naive", "--warmup", "2", "--out", str(out)]) == 0
    assert {(w, r) for _, w, r in calls} == {(1, 2)}  # --quick's protocol, for both layers
    assert sorted({naive for naive, _, _ in calls}) == [False, True]
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4 and all(r["status"] == "ok" and r["warmup"] == "1" and r["repeats"] == "2" for r in rows)
    assert bench.main(["--layers", "mamba2-naive", "--lengths", "32", "--d-model", "32", "--d-state", "16",
                       "--headdim", "16", "--warmup", "2", "--repeats", "3", "--out", str(out)]) == 0
    assert calls[-1] == (True, 2, 3)  # not "one cold pass" for the naive scan
