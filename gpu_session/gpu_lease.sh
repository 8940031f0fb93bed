#!/usr/bin/env bash
# One call on a lent GPU machine, when few minutes and few returned files are all there is:
# build + probe, then the GPU tests (in parallel workers) beside the CLI stage, then the
# benchmark stages; every stage's summary (.md) is copied to DEST and everything else (logs,
# JSON) is packed into DEST/session.tgz, so at most 7 files come back. Budgets in seconds:
#
#   DEST=$OUT P1=150 P2=200 P3=120 STAGES3="bench" bash gpu_session/gpu_lease.sh
#
# P1: build + probe; P2: tests beside cli; P3: STAGES3 (bench, train: timings, run alone).
# TESTS (default: the suites that touch the GPU), TEST_K (a -k expression; default: all but the
# C++ gradchecks) and TEST_WORKERS (default 8) choose the tests; CLI=0 leaves the cli stage out
# of phase 2; BENCH_K (a -k expression) narrows the benchmark rows.
set -uo pipefail
cd "$(dirname "$(realpath "$0")")/.."
DEST=${DEST:?DEST: the folder whose files come back}
# GS_DIR: the stages' summaries and logs (emptied first); WORK: the demo's and cv10's outputs
G=${GS_DIR:-$PWD/build/gs}
WORK=${WORK:-$PWD/build/gpu_work}
rm -rf "$G" && mkdir -p "$G" "$DEST"
export OUT=$G WORK
# the one-launch SSA kernels run on a GPU only when asked for, until checked there: this call
# checks them (probe, tests) and times them (SSA_FAST_SSA_ONE_LAUNCH=0 measures without them)
export SSA_FAST_SSA_ONE_LAUNCH=${SSA_FAST_SSA_ONE_LAUNCH:-1}
# likewise the second CUDA log-Mel kernel (FFT in registers): backend="cuda" runs it in the tests
# and the CLI of this call (SSA_FAST_LOGMEL_REGFFT=0: the default kernel); the probe and the
# benchmark rows ("cuda", "cuda_regfft") check and time both kernels side by side either way
export SSA_FAST_LOGMEL_REGFFT=${SSA_FAST_LOGMEL_REGFFT:-1}
# the same for the large-batch SSA kernels (design.md 10.2): the `triton` rows at B = 4096 take
# them (SSA_FAST_SSA_LARGE=0: the two-kernel path, as by default); `triton_large` and
# `triton_two_kernel` force one path each whatever this says
export SSA_FAST_SSA_LARGE=${SSA_FAST_SSA_LARGE:-1}
# DRY=1: the same plumbing on the CPU (gpu_session.sh --dry-run)
GS=(bash gpu_session/gpu_session.sh)
[ "${DRY:-0}" = 1 ] && GS+=(--dry-run)
T0=$SECONDS
rc=0  # the last failing stage's status, returned after the packing
stamp() { echo "== [$((SECONDS - T0)) s] $*"; }

# STAGES1: phase 1's stages (default probe); empty only in a dry run, where nothing is built (on
# the GPU machine phase 1 builds the extension before phase 2's two processes start)
STAGES1=${STAGES1-probe}
if [ -n "$STAGES1" ]; then
  stamp "phase 1: build + $STAGES1"
  # shellcheck disable=SC2086
  SESSION_LIMIT=${P1:-150} "${GS[@]}" $STAGES1 || rc=$?
elif [ "${DRY:-0}" != 1 ]; then
  echo "gpu_lease.sh: STAGES1 may be empty only with DRY=1 (phase 1 builds the extension)" >&2
  exit 2
fi
stamp "phase 2: tests$([ "${CLI:-1}" = 1 ] && echo " beside cli")"
sel=${TESTS:-"tests/kernels tests/test_mixed_precision.py tests/test_compile.py \
tests/test_backend.py tests/models tests/test_predict.py tests/features tests/test_hostile_inputs.py"}
# (by default without the float64 gradchecks of the C++ kernels: CPU-only minutes, run by CI)
TEST_K=${TEST_K-"not gradcheck_through_cpp and not gradcheck_cpp"}
PYTEST_ADDOPTS="${TEST_K:+-k '$TEST_K'}" SESSION_LIMIT=${P2:-200} TESTS="-n ${TEST_WORKERS:-8} $sel" \
  "${GS[@]}" tests \
  >"$G/tests.stdout" 2>&1 &
tests_pid=$!
if [ "${CLI:-1}" = 1 ]; then
  SESSION_LIMIT=${P2:-200} "${GS[@]}" cli || rc=$?
fi
wait "$tests_pid" || rc=$?
tail -25 "$G/tests.stdout"
if [ -n "${STAGES3-bench}" ]; then
  stamp "phase 3: ${STAGES3-bench}"
  # shellcheck disable=SC2086
  SESSION_LIMIT=${P3:-120} "${GS[@]}" ${STAGES3-bench} || rc=$?
fi
stamp "packing"
cp "$G"/*.md "$DEST"/ 2>/dev/null
so=$("${PYTHON:-python3}" -c "import torch, ssa_fast._C as m; print(m.__file__)" 2>/dev/null)
[ -n "$so" ] && cp "$so" "$DEST/"
work_files=$(cd "$(dirname "$WORK")" 2>/dev/null && find "$(basename "$WORK")" -name '*.err' \
  -o -name '*.out' -o -name 'table.md' -o -name 'result.json' | head -200)
# shellcheck disable=SC2086
tar czf "$DEST/session.tgz" -C "$(dirname "$G")" "$(basename "$G")" \
  -C "$(dirname "$WORK")" $work_files 2>/dev/null
ls -la "$DEST"
stamp "done (exit status $rc)"
exit "$rc"
