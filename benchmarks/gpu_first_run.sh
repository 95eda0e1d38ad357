#!/usr/bin/env bash
# The first run on a GPU machine: every GPU check of issue 26 in one go, < 9 minutes, no network, no pip.
#
#   OUT=/some/dir bash benchmarks/gpu_first_run.sh            # on a bare one-GPU machine (torch CUDA build)
#   bash benchmarks/gpu_first_run.sh gpu-first-run             # the output folder as an argument
#   bash benchmarks/gpu_first_run.sh --smoke smoke-out         # no GPU: the same steps at tiny sizes on CPU
#
# Steps (each with its own timeout; a step that fails or times out is reported, the next one still runs):
#   env        nvidia-smi, torch/CUDA versions, which kernel packages import          -> OUT/env.txt
#   gpu-tests  the test suite's GPU-marked tests (pytest -m gpu)                      -> OUT/gpu-tests.log
#   checks     gpu_check: CUDA vs CPU, autocast decoding, bf16 kernels, ~100M presets' peak memory at the
#              planned micro-batch, a torch.profiler table of a dnaHNet step          -> OUT/checks/
#   lightning  gpu_check: a short `dnahnet.train` per family with resume, ddp/fsdp2   -> OUT/lightning/
#   train      gpu_check: bf16 training throughput and MFU per family                 -> OUT/train/
# Then a summary (MFU per family, peak memory, every failed row and step) -> OUT/summary.txt and stdout.
# Exit status: 0 when every step and row passed, 1 otherwise.
set -u
SMOKE=0
if [ "${1:-}" = "--smoke" ]; then SMOKE=1; shift; fi
OUT_DIR="${OUT:-${1:-}}"
if [ -z "$OUT_DIR" ]; then
  echo "error: give the output folder (\$OUT or the first argument)" >&2
  exit 2
fi
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
STEPS_FILE="$OUT_DIR/steps.tsv"
: > "$STEPS_FILE"
START=$(date +%s)

step() {  # step NAME TIMEOUT_S COMMAND...: run with a timeout, log to OUT/NAME.log, record the status
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name (timeout ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
  local rc=$?
  local status=ok
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then status=timeout; elif [ $rc -ne 0 ]; then status="exit $rc"; fi
  printf '%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t0 ))" >> "$STEPS_FILE"
  echo "   $status in $(( $(date +%s) - t0 )) s (log: $OUT_DIR/$name.log)"
}

cd "$REPO"
if [ $SMOKE -eq 1 ]; then
  CHECK=(--cpu-smoke --families transformer)
  PARALLEL=(--strategies fsdp2)
  LIMITS=(60 0 240 300 60)
else
  CHECK=()
  PARALLEL=()
  LIMITS=(30 90 170 180 70)
fi
step env "${LIMITS[0]}" bash -c "(nvidia-smi || echo 'no nvidia-smi'); $PY -c '
import torch, sys
print(\"python\", sys.version.split()[0], \"torch\", torch.__version__, \"cuda\", torch.version.cuda,
      \"available\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"\")
from dnahnet import kernels
print(\"kernels\", kernels.describe())
'"
cp "$OUT_DIR/env.log" "$OUT_DIR/env.txt"
if [ $SMOKE -eq 0 ]; then
  # gpu_check's own GPU test is left out: the next three steps run the whole script, each under its timeout.
  step gpu-tests "${LIMITS[1]}" "$PY" -m pytest -q -m gpu -p no:cacheprovider tests \
    --deselect tests/benchmarks/test_gpu_check.py::test_gpu_check_script
fi
step checks "${LIMITS[2]}" "$PY" benchmarks/gpu_check.py "${CHECK[@]}" --out "$OUT_DIR/checks" \
  --only correctness,decoding,kernels,memory,profile
step lightning "${LIMITS[3]}" "$PY" benchmarks/gpu_check.py "${CHECK[@]}" --out "$OUT_DIR/lightning" \
  --only lightning --step-timeout 120 "${PARALLEL[@]}"
step train "${LIMITS[4]}" "$PY" benchmarks/gpu_check.py "${CHECK[@]}" --out "$OUT_DIR/train" --only train --quick

"$PY" - "$OUT_DIR" "$(( $(date +%s) - START ))" <<'PYEOF' | tee "$OUT_DIR/summary.txt"
import csv, sys
from pathlib import Path

out, wall = Path(sys.argv[1]), int(sys.argv[2])
steps = [line.split("\t") for line in (out / "steps.tsv").read_text().splitlines() if line]
failed = [f"step {name}: {status}" for name, status, _ in steps if status != "ok"]
rows = []
for part in ("checks", "lightning"):
    path = out / part / "gpu_check.csv"
    if path.is_file():
        rows += list(csv.DictReader(open(path)))
failed += [f"row {r['check']}: {r['detail']}" for r in rows if r["ok"] != "True"]
print(f"gpu_first_run: {wall} s, steps: " + ", ".join(f"{n} {s} ({t} s)" for n, s, t in steps))
train = out / "train" / "gpu_train.csv"
if train.is_file():
    for r in csv.DictReader(open(train)):
        if r.get("error"):
            failed.append(f"train {r['family']}: {r['error']}")
            continue
        mfu = r.get("mfu") or "nan"
        print(f"  {r['family']:<13} {float(r['tokens_per_s']):>12,.0f} tok/s  MFU {float(mfu):.3f}  "
              f"peak {float(r['peak_mem_GiB']):.2f} GiB  finite {r['finite']}")
else:
    print("  training benchmark: no table (no CUDA, or the step failed)")
for r in rows:
    if "peak memory" in r["check"]:
        print(f"  memory: {r['check']}: {r['detail']}")
skipped = [r["check"] for r in rows if r["detail"].startswith("skipped")]
if skipped:
    print("  skipped: " + "; ".join(skipped))
print(f"  rows passed: {sum(r['ok'] == 'True' for r in rows)} of {len(rows)}")
print("FAILED:\n  " + "\n  ".join(failed) if failed else "all steps and rows passed")
sys.exit(1 if failed else 0)
PYEOF
