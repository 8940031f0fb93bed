#!/usr/bin/env bash
# The GPU session, in stages that each fit one 10-minute command with margin. Run from anywhere:
#
#   bash gpu_session/gpu_session.sh probe   # device, driver, versions, copy bandwidth, bf16 matmul
#                                           # peak, one call of each kernel against its reference,
#                                           # one bf16 training step of each model  (~2 min)
#   bash gpu_session/gpu_session.sh tests   # the test suite on the GPU: no -x, a per-test timeout,
#                                           # a summary in $OUT/tests.md         (capped at ~9 min)
#   bash gpu_session/gpu_session.sh bench   # kernel rows (logmel_delta, ssa_attention, l1_project_)
#                                           # with floors from this run's ceilings (capped)
#   bash gpu_session/gpu_session.sh train   # training-step rows (eager fp32 vs bf16 + channels_last
#                                           # + cudnn.benchmark + compile, MFU) and inference
#                                           # segments/s at batch 1 and 512        (capped)
#   bash gpu_session/gpu_session.sh cli     # the CLI as users run it on CUDA (gpu_cli.sh): synth,
#                                           # train --bf16, evaluate, predict, features, a 2-fold
#                                           # cv --bf16, train --bf16 --compile, --resume, a cv
#                                           # rerun (~4 min)
#   bash gpu_session/gpu_session.sh demo    # the CUDA demo (DEMO_ARGS="--folds 2 --epochs 5"...)
#   bash gpu_session/gpu_session.sh cv10    # time a 10-fold CV of SSA-CRNN-r (CV10_EPOCHS=30)
#   bash gpu_session/gpu_session.sh compile # --compile's modes against eager (compile_modes.py)
#   bash gpu_session/gpu_session.sh demosweep # CUDA demo settings (DEMO_SWEEP="size:epochs:lr ...")
#   bash gpu_session/gpu_session.sh cvpar   # throughput of 2, 3, 4 concurrent cv processes on one
#                                           # GPU against one (CVPAR_K, CVPAR_FOLDS=4,
#                                           # CVPAR_EPOCHS=5; paper preset, bf16)   (~5 min)
#   bash gpu_session/gpu_session.sh --dry-run probe tests bench train cli demo
#                                           # every stage's plumbing on the CPU at tiny sizes
#
# Each stage writes at most four files to $OUT (default build/gpu_session): <stage>.md (the summary
# to read first), <stage>.log (everything printed), <stage>.json where there are rows, and build.log
# when the extension was (re)built. Summaries only, never checkpoints. Stages share one time
# budget, SESSION_LIMIT seconds from the start of the command (default 570): each is stopped
# (SIGINT, so pytest still writes its summary) when the budget runs out.
#
# Environment: TESTS (paths/args for the tests stage, default "tests"), TEST_TIMEOUT (seconds per
# test, default 240), BENCH_K (pytest -k filter added to the bench/train selection), PYTHON.
# Python packages the machine lacks (librosa, soundfile, nnAudio, ...) come as wheels in .whl/
# (gpu_session/fetch_wheels.sh); they are installed into /tmp/site and put on PYTHONPATH.
# A failed build of the C++ extension is reported (build.log) and the Triton path carries on.
set -uo pipefail
SELF=$(realpath "$0")
# paths given relative to the caller's folder stay so after the cd to the repository root
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
[ -n "${OUT:-}" ] && OUT=$(abs "$OUT")
[ -n "${WORK:-}" ] && WORK=$(abs "$WORK")
case "${PYTHON:-}" in */*) PYTHON=$(abs "$PYTHON") ;; esac
cd "$(dirname "$SELF")/.."

DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
STAGES=("$@")
if [ ${#STAGES[@]} -eq 0 ]; then
  sed -n '2,/^set -uo/p' "$SELF" | sed '$d' >&2
  exit 2
fi
for s in "${STAGES[@]}"; do
  case "$s" in probe|tests|bench|train|cli|demo|cv10|cvpar|compile|demosweep) ;;
    *) echo "gpu_session.sh: unknown stage '$s' (expected probe, tests, bench, train, cli, demo, cv10, cvpar, compile, demosweep)" >&2
       exit 2 ;;
  esac
done

PY=${PYTHON:-python3}
OUT=${OUT:-build/gpu_session}
WORK=${WORK:-build/gpu_work}  # demo and cv10 outputs stay here, not in $OUT
mkdir -p "$OUT" "$WORK"
# SSA_FAST_IN_SESSION: the test that dry-runs this script skips inside it (the real stages run)
export PYTHONUNBUFFERED=1 SSA_FAST_SESSION_OUT="$OUT" SSA_FAST_IN_SESSION=1
LIMIT=${SESSION_LIMIT:-570}
rc=0

note() { echo "== $*"; }
left() { echo $(( LIMIT - SECONDS )); }
# run_capped SECONDS CMD...: stop CMD with SIGINT when the budget is spent, SIGKILL 20 s later.
run_capped() {
  local t=$1; shift
  if [ "$t" -lt 30 ]; then echo "(skipped: only ${t}s of the session budget left)"; return 124; fi
  timeout --signal=INT --kill-after=20 "$t" "$@"
}

if [ "$DRY" = 1 ]; then
  # Same code paths, CPU tensors, tiny sizes; Triton runs in its interpreter.
  export SSA_FAST_DRY_RUN=1 TRITON_INTERPRET=1 CUDA_VISIBLE_DEVICES=""
  LIMIT=${SESSION_LIMIT:-900}  # the plumbing, not the budget, is under test (slow CI machines)
else
  if compgen -G ".whl/*.whl" >/dev/null; then
    note "wheels from .whl/ -> /tmp/site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || echo "WARNING: installing .whl/ failed"
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  # Build the extension when it does not import or its sources changed since the last build.
  stamp=$(cat CMakeLists.txt pyproject.toml $(find csrc -type f | sort) 2>/dev/null | md5sum | cut -c1-32)
  if [ "$(cat build/.gpu_session_stamp 2>/dev/null)" != "$stamp" ] || \
     ! (cd /tmp && "$PY" -c "import torch, ssa_fast._C") 2>/dev/null; then
    note "build (log: $OUT/build.log)"
    if run_capped 300 "$PY" -m pip install -v --no-build-isolation --no-deps -e . \
         >"$OUT/build.log" 2>&1; then
      mkdir -p build && echo "$stamp" > build/.gpu_session_stamp
    else
      echo "BUILD FAILED (tail of $OUT/build.log below): the cpp backend is unavailable;" \
           "the Triton path and the reference carry on"
      tail -15 "$OUT/build.log"
    fi
  fi
  # Works whether or not the editable install succeeded.
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi

# A per-test timeout: pytest-timeout when installed, else gpu_session/session_plugin.py's alarm.
targs=""
if "$PY" -c "import pytest_timeout" 2>/dev/null; then
  targs="--timeout=${TEST_TIMEOUT:-240}"
else
  export SSA_FAST_TEST_TIMEOUT=${TEST_TIMEOUT:-240}
fi

for stage in "${STAGES[@]}"; do
  log="$OUT/$stage.log"
  note "$stage ($(left)s of the session budget left)"
  case "$stage" in
    probe)
      run_capped "$(left)" "$PY" gpu_session/gpu_session.py probe 2>&1 | tee "$log"
      st=${PIPESTATUS[0]} ;;
    tests)
      sel=${TESTS:-tests}
      [ "$DRY" = 1 ] && sel=${TESTS:-tests/test_backend.py -k unknown_backend}
      # shellcheck disable=SC2086
      run_capped $(( $(left) - 15 )) "$PY" -m pytest $sel -q -rfEs -p no:cacheprovider \
        -p gpu_session.session_plugin $targs --durations=15 2>&1 | tee "$log" | tail -40
      st=${PIPESTATUS[0]} ;;
    bench|train)
      [ "$stage" = bench ] && files="benchmarks/test_bench_logmel_delta.py benchmarks/test_bench_ssa.py"
      [ "$stage" = train ] && files="benchmarks/test_bench_models.py"
      # warm-up rounds keep Triton's JIT and torch.compile out of the timings
      extra=(--benchmark-warmup=on --benchmark-warmup-iterations=3)
      [ "$DRY" = 1 ] && extra=(--benchmark-min-rounds=1 --benchmark-max-time=0 --benchmark-warmup=off)
      # shellcheck disable=SC2086
      run_capped $(( $(left) - 15 )) "$PY" -m pytest $files --benchmark-only -q -p no:cacheprovider \
        -k "cuda${BENCH_K:+ and ($BENCH_K)}" --benchmark-json "$OUT/$stage.json" "${extra[@]}" \
        2>&1 | tee "$log" | tail -15
      st=${PIPESTATUS[0]}
      if [ -s "$OUT/$stage.json" ]; then
        "$PY" benchmarks/report.py "$OUT/$stage.json" 2>&1 | tee "$OUT/$stage.md"
        [ "${PIPESTATUS[0]}" -ne 0 ] && st=1 && echo "report.py failed (see $OUT/$stage.md)"
      else
        echo "no $OUT/$stage.json: the run ended before pytest-benchmark wrote it" | tee "$OUT/$stage.md"
      fi ;;
    cli)
      run_capped $(( $(left) - 15 )) bash gpu_session/gpu_cli.sh "$WORK/cli" "$OUT/cli.md" 2>&1 \
        | tee "$log" | tail -30
      st=${PIPESTATUS[0]} ;;
    demo)
      args=${DEMO_ARGS:-}
      [ "$DRY" = 1 ] && args="--features-only"
      # shellcheck disable=SC2086
      ( time run_capped $(( $(left) - 15 )) "$PY" -m ssa_fast.cli demo --out "$WORK/demo" --quiet $args ) \
        2>&1 | tee "$log" | tail -25
      st=${PIPESTATUS[0]}
      "$PY" gpu_session/gpu_session.py collect-demo "$WORK/demo" "$OUT/demo.md" || st=1 ;;
    cv10)
      # issue 24's measurement: 10-fold CV of SSA-CRNN-r, paper preset, bf16, on the large
      # synthetic corpus (~4 h of audio); CV10_MODELS="acrnn acrnn-r ssa-crnn-r" for the three
      size=${CV10_SIZE:-large} folds=10 epochs=${CV10_EPOCHS:-30} preset=paper dry=()
      # (the dry run's bf16 on a CPU: small batches of short segments, as bf16 convolutions
      # are 11-14x slower than float32 on a CPU without AVX-512)
      [ "$DRY" = 1 ] && { size=tiny folds=2 epochs=1 preset=small
                          dry=(--batch-size 8 --segment-frames 100); }
      # shellcheck disable=SC2086
      ( run_capped $(( $(left) - 15 )) "$PY" -m ssa_fast.cli synth --out "$WORK/synth_cv10" --size $size --quiet &&
        t0=$SECONDS && run_capped $(( $(left) - 15 )) "$PY" -m ssa_fast.cli cv synthetic "$WORK/synth_cv10" \
          --out "$WORK/cv10" --models ${CV10_MODELS:-ssa-crnn-r} --folds $folds --preset $preset --bf16 \
          --epochs "$epochs" --cache "$WORK/cache_cv10" --quiet ${dry[@]+"${dry[@]}"} ${CV10_ARGS:-} &&
        echo "cv wall time: $((SECONDS - t0)) s" | tee "$WORK/cv10_wall" ) 2>&1 | tee "$log" | tail -15
      st=${PIPESTATUS[0]}
      "$PY" gpu_session/gpu_session.py collect-cv "$WORK/cv10" "$OUT/cv10.md" \
        "$(sed 's/[^0-9]//g' "$WORK/cv10_wall" 2>/dev/null)" || st=1 ;;
    demosweep)
      # the CUDA demo's defaults from evidence (issue 24): each DEMO_SWEEP entry is one demo run
      # ("size:epochs:lr"), timed, its table and breakdown collected; pick what shows the
      # paper's ordering within 5 minutes
      sweep=${DEMO_SWEEP:-"small:8:1e-3 small:15:1e-3 medium:8:1e-3 medium:20:1e-4"}
      [ "$DRY" = 1 ] && sweep="tiny:1:1e-3"
      st=0
      for entry in $sweep; do
        IFS=: read -r size epochs lr <<<"$entry"
        extra=""; [ "$DRY" = 1 ] && extra="--folds 2 --preset small"
        name="demo_${size}_${epochs}_${lr}"
        # shellcheck disable=SC2086
        ( time run_capped $(( $(left) - 15 )) "$PY" -m ssa_fast.cli demo --out "$WORK/$name" \
            --size "$size" --epochs "$epochs" --lr "$lr" --quiet $extra ) >"$WORK/$name.log" 2>&1 || st=1
        { echo "## $name"; echo; grep -E "^\|" "$WORK/$name.log"; grep -E "time[: ]|real" "$WORK/$name.log"; echo; } \
          >>"$OUT/demosweep.md"
      done
      cat "$OUT/demosweep.md" ;;
    compile)
      # which torch.compile mode --compile should take (issue 24): each mode against eager
      args="--device cuda --preset paper --batch 40 --bf16"
      [ "$DRY" = 1 ] && args="--device cpu --model acrnn-r --preset small --batch 4 --frames 40 --modes eager regional --steps 1 --rounds 1 --check-steps 2"
      # shellcheck disable=SC2086
      run_capped $(( $(left) - 15 )) "$PY" benchmarks/compile_modes.py $args --json "$OUT/compile.json" \
        2>&1 | tee "$log" | grep -v Warning | tail -12 | tee "$OUT/compile.md"
      st=${PIPESTATUS[0]} ;;
    cvpar)
      ks=${CVPAR_K:-2 3 4}
      [ "$DRY" = 1 ] && ks=2
      # shellcheck disable=SC2086
      run_capped $(( $(left) - 15 )) "$PY" gpu_session/gpu_session.py cvpar "$WORK/cvpar" $ks \
        2>&1 | tee "$log" | tail -15
      st=${PIPESTATUS[0]} ;;
  esac
  [ "$st" -ne 0 ] && rc=$st && echo "== $stage: exit status $st (see $log)"
done

n=$(find "$OUT" -type f | wc -l)
note "$n files in $OUT: $(cd "$OUT" && find . -type f | sed 's|^\./||' | sort | tr '\n' ' ')"
[ "$n" -gt 8 ] && echo "WARNING: more than 8 files in $OUT; fewer stages per command bring back all"
exit "$rc"
