#!/usr/bin/env bash
# The checks that need a GPU, in one go: the CUDA tests, then the level-switch (full-size SD2, float16, moves
# tensor by tensor and batched side by side), sort, sweep-throughput (SD2-shaped, 512 px, 50 steps), threshold-search
# and harness-overhead benchmarks on the GPU. Each step's log lands in OUTDIR.
#
# Usage (from the repository root, with sdprobe's dependencies installed):
#   bash benchmarks/cuda.sh OUTDIR            # about 9 minutes on one H100/H200
#   QUICK=1 DEVICE=cpu bash benchmarks/cuda.sh OUTDIR   # the same steps, tiny and on the CPU: checks the script
# PYTHON names the interpreter (default: python3). A step that fails or runs out of time does not stop the others;
# the exit status is the number of failed steps.
set -uo pipefail
out=${1:?usage: bash benchmarks/cuda.sh OUTDIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
failed=0

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to OUTDIR/NAME.log
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit} s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || failed=$((failed + 1))
}

if [ -n "${QUICK:-}" ]; then
  step tests 120 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
  step level_switch 120 "$py" benchmarks/level_switch.py --tiny --device "$device" --moves tensor batched
  step sort_threads 120 "$py" benchmarks/sort_threads.py --tiny --device "$device"
  step sweep_throughput 120 "$py" benchmarks/sweep_throughput.py --quick --device "$device"
  step threshold_search 300 "$py" benchmarks/threshold_search.py --quick --device "$device"
  step harness_overhead 120 "$py" benchmarks/harness_overhead.py --quick --device "$device"
else
  step tests 90 "$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py
  "$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee "$out/versions.log"
  step level_switch 200 "$py" benchmarks/level_switch.py --device "$device" --dtype float16 --moves tensor batched
  step sort_threads 120 "$py" benchmarks/sort_threads.py --device "$device"
  step sweep_throughput 150 "$py" benchmarks/sweep_throughput.py --family sd2 --size full --dtype float16 \
    --device "$device" --height 512 --width 512 --steps 50 --n-images 16 --batch-size 16 --levels 4
  step threshold_search 180 "$py" benchmarks/threshold_search.py --model builtin:tiny-shapes --n-prompts 64 \
    --steps 10 --device "$device" --out "${TMPDIR:-/tmp}/sdprobe-threshold-search"
  step harness_overhead 90 "$py" benchmarks/harness_overhead.py --device "$device" --repeats 9
fi
exit "$failed"
