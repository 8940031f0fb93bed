#!/usr/bin/env bash
# Download the wheels a GPU machine image without network lacks, into .whl/ (git-ignored).
#
# The GPU image has torch, Triton, numpy, scipy, scikit-learn, numba, joblib, msgpack, lazy_loader,
# requests, pytest, pytest-benchmark... but not librosa, soundfile, soxr, audioread, pooch, nnAudio
# or espeakng-loader, nor their import-time needs decorator, platformdirs, cffi and pycparser
# (nor perhaps PyYAML, which `--config FILE.yaml` needs).
# Without them the tests that use them skip (the corpus, CLI and librosa ground-truth tests), the
# synthetic corpus cannot be made, and the nnAudio benchmark row is skipped.
#
# Here (a machine with network and pip; any OS, the wheels are for CPython 3.12 on x86-64 Linux):
#   bash gpu_session/fetch_wheels.sh         # ~12 MB into .whl/
# Then copy the working tree to the GPU machine WITH the ignored folder .whl/ (it is in .gitignore,
# so a copy of tracked and untracked-but-not-ignored files leaves it behind unless told to take
# it), and on the GPU machine, from the repository root:
#   bash gpu_session/gpu_session.sh probe    # (any stage) installs .whl/*.whl itself:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
# Versions are pinned to those the CPU test suite runs with; keep one version of each in .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=${DEST:-.whl}
mkdir -p "$DEST"
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d "$DEST" \
  librosa==0.11.0 soundfile==0.14.0 soxr==1.1.0 audioread==3.1.0 pooch==1.9.0 \
  nnAudio==0.3.4 espeakng-loader==0.2.4 \
  decorator==5.3.1 platformdirs==4.14.8 cffi==2.1.1 pycparser==3.12 PyYAML==6.0.2
ls -1 "$DEST"
du -sh "$DEST"
