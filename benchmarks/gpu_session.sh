#!/usr/bin/env bash
# One call on a GPU machine: build the extension against the machine's torch, run the test suite on
# the GPU (Triton for real, not interpreted), run the CUDA benchmarks, print the tables.
#
#   bash benchmarks/gpu_session.sh            # everything
#   BENCH_K="logmel" bash benchmarks/gpu_session.sh   # a subset of benchmarks (pytest -k)
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

echo "== tests (GPU)"
python3 -m pytest tests -q -x -p no:cacheprovider 2>&1 | tee "$OUT/tests.log" | tail -15
tests_rc=${PIPESTATUS[0]}

echo "== benchmarks (CUDA rows)"
python3 -m pytest benchmarks --benchmark-only -q -k "cuda${BENCH_K:+ and $BENCH_K}" \
  --benchmark-json "$OUT/bench.json" 2>&1 | tail -5
python3 benchmarks/report.py "$OUT/bench.json" | tee "$OUT/bench.md"
exit "$tests_rc"
