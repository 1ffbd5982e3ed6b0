#!/usr/bin/env bash
# One GPU session, run from the repository root on the GPU machine: build the extension, run the GPU tests
# (pytest -m cuda), run the benchmarks. Logs and JSON go under $OUT (default ./gpu_out). Finishes in < 9 min:
# every step gets a timeout from what is left of the budget, and a step that fails or times out does not stop
# the ones after it (the Triton kernels need no build).
#
#   STEPS="build tests bench e2e compile" (default)  add "tune" for a Triton launch-config sweep, "sanitize" for
#                                                  compute-sanitizer on the CUDA LSTM, or pick a subset (one
#                                                  device call per subset when the whole does not fit 9 min)
#   BUDGET_S=530                                   total seconds
#   CRNN_FAST_COMMIT=<sha>                         recorded in the JSON (the machine may have no .git)
#   PYTEST_ARGS="..."                              extra pytest arguments (e.g. -k lstm)
set -u
OUT=${OUT:-$(pwd)/gpu_out}
mkdir -p "$OUT"
export BENCH_RESULTS_DIR="$OUT"
export CRNN_FAST_TEST_GPU=1          # tests/conftest.py: real kernels, not the Triton interpreter
export TRITON_INTERPRET=0
export PYTHONUNBUFFERED=1
STEPS=${STEPS:-"build tests bench e2e compile"}
BUDGET_S=${BUDGET_S:-530}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }
# run NAME MAX_SECONDS COMMAND...: a step with a timeout of min(MAX_SECONDS, budget left), logged to $OUT/NAME.log
run() {
  local name=$1 max=$2; shift 2
  local t; t=$(left); (( t > max )) && t=$max
  if (( t < 20 )); then echo "$name: skipped (budget spent)" | tee -a "$SUMMARY"; return; fi
  local t0; t0=$(date +%s)
  timeout --kill-after=10 "$t" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name: rc=$rc ($(( $(date +%s) - t0 ))s, limit ${t}s)$( ((rc == 124)) && echo ' TIMED OUT')" | tee -a "$SUMMARY"
}
has() { [[ " $STEPS " == *" $1 "* ]]; }

{
  date; nvidia-smi || true
  python -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  python -c "import triton; print('triton', triton.__version__)"
  python -m pytest --version
} > "$OUT/env.log" 2>&1

has build && run build 200 pip install --no-build-isolation -e .
has tests && run pytest_cuda 190 python -m pytest -m cuda -q -p no:cacheprovider --durations=25 \
  --junitxml="$OUT/pytest_cuda.xml" ${PYTEST_ARGS:-} tests
# torch.nn.LSTM vs the Triton kernels (and the CUDA inference kernel when built): the whole grid.
has bench && run bench_lstm 170 python benchmarks/bench_lstm.py --impls torch triton cuda --warmup-ms 10 --rep-ms 40
# The recognizer end to end against the same model run the plain way (eager, +pyctcdecode, torch.compile).
has e2e && run bench_e2e 200 python benchmarks/bench_e2e.py --batch-sizes 1,8,64,256,1024 --budget 6 \
  --n-words 8192 --n-lines 2048
# torch.compile of the eager reference compiles an unrolled graph per shape: a subset, last, with what is left.
has compile && run bench_lstm_compile 150 python benchmarks/bench_lstm.py --impls torch triton compile \
  --batch 8 256 --time 26 --dtypes float16 --warmup-ms 10 --rep-ms 40
# compute-sanitizer on a small forward of the CUDA LSTM kernel (both algos, lengths, odd H), fp16 and bf16.
for tool in memcheck racecheck synccheck; do
  for dtype in float16 bfloat16; do
    has sanitize && run "sanitize_${tool}_${dtype}" 90 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
      compute-sanitizer --tool "$tool" --error-exitcode 3 python benchmarks/sanitize_lstm_cuda.py --dtype "$dtype"
  done
done
has tune && run bench_lstm_tune 300 python benchmarks/bench_lstm.py --tune --warmup-ms 10 --rep-ms 40

echo "total $(( $(date +%s) - START ))s" | tee -a "$SUMMARY"
ls -la "$OUT" >> "$SUMMARY"
