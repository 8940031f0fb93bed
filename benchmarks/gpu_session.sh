#!/usr/bin/env bash
# One call on a GPU machine: build the extension against the machine's torch, run the test suite on
# the GPU (Triton for real, not interpreted), run the CUDA benchmarks, print the tables.
#
#   bash benchmarks/gpu_session.sh                    # tests + benchmarks (~10 min)
#   BENCH_K="logmel" bash benchmarks/gpu_session.sh   # a subset of benchmarks (pytest -k)
#   STAGES="demo" bash benchmarks/gpu_session.sh      # the CUDA demo (paper preset)
#   STAGES="cv10" bash benchmarks/gpu_session.sh      # issue 7: time a 10-fold CV of SSA-CRNN-r
#                                                     # on an IEMOCAP-improvised-size corpus
#
# Python packages missing on the machine (librosa and its dependencies, nnAudio) can travel as
# wheels in .whl/ (see the device tool's README); they are installed into /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-build/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

echo "== build"
python3 -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -3 || exit 1

STAGES=${STAGES:-tests bench}
tests_rc=0
if [[ " $STAGES " == *" tests "* ]]; then
  echo "== tests (GPU)"
  python3 -m pytest tests -q -x -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
  tests_rc=${PIPESTATUS[0]}
fi

if [[ " $STAGES " == *" bench "* ]]; then
  echo "== benchmarks (CUDA rows and the paper-preset models)"
  python3 -m pytest benchmarks --benchmark-only -q -k "(cuda or test_model)${BENCH_K:+ and $BENCH_K}" \
    --benchmark-json "$OUT/bench.json" 2>&1 | tail -5
  python3 benchmarks/report.py "$OUT/bench.json" | tee "$OUT/bench.md"
  echo "== ssa-fast bench --compile (quick table, same workloads)"
  python3 -m ssa_fast.cli bench --compile --quiet | tee "$OUT/quick_bench.md"
fi

if [[ " $STAGES " == *" demo "* ]]; then
  echo "== demo (CUDA settings: paper preset, medium corpus)"
  ( time python3 -m ssa_fast.cli demo --out "$OUT/demo" --quiet ) 2>&1 | tail -20 | tee "$OUT/demo.txt"
fi

if [[ " $STAGES " == *" cv10 "* ]]; then
  echo "== 10-fold CV of SSA-CRNN-r, paper preset, bf16, ~3200 utterances (synth medium)"
  python3 -m ssa_fast.cli synth --out /tmp/synth_medium --size medium --quiet
  ( time python3 -m ssa_fast.cli cv synthetic /tmp/synth_medium --out "$OUT/cv10" \
      --models ssa-crnn-r --folds 10 --preset paper --bf16 --epochs ${CV10_EPOCHS:-30} \
      --cache /tmp/cache_medium --quiet ) 2>&1 | tail -12 | tee "$OUT/cv10.txt"
fi
exit "$tests_rc"
