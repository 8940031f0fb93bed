#!/usr/bin/env bash
# The compile, backend and model tests under the newest torch as well as the pinned 2.13 of
# `make test`: the README promises a range, and CI tests both ends it can reach (torch 2.4's
# wheels need an older Python than this machine's). PyPI's newest torch for Linux is a CUDA
# build (about 5 GB installed, several minutes to fetch): its environment is kept between runs
# in SSA_CI_CACHE (default ~/.cache/ssa-fast-ci), one per version, and only ssa_fast is rebuilt.
#
#   bash .ci/newest_torch.sh                 # SSA_CI_NEWEST_TORCH=2.15.0 by default
#   bash .ci/newest_torch.sh --install-only  # the environment only (.ci/run starts this first,
#                                            # so that a download overlaps the tests)
# The environment counts as installed only once its one pip command succeeded (a file written
# after it): an install that was killed or failed half-way is made again from scratch, not tested.
set -euo pipefail
cd "$(dirname "$0")/.."
install_only=0
case "${1:-}" in
  --install-only) install_only=1 ;;
  "") ;;
  *) echo "usage: bash .ci/newest_torch.sh [--install-only]" >&2; exit 2 ;;
esac
version=${SSA_CI_NEWEST_TORCH:-2.15.0}
cache=${SSA_CI_CACHE:-$HOME/.cache/ssa-fast-ci}
venv=$cache/torch-$version
py=$venv/bin/python
# (this machine's pip is capped at the torch releases on its disk: the newest comes from PyPI)
export PIP_CONFIG_FILE=/dev/null
complete=$venv/.installed-by-ssa-fast-ci
if ! [ -f "$complete" ] || \
    ! "$py" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$version')" \
    2>/dev/null; then
  echo "newest torch: installing torch $version into $venv (once per machine)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$py" -m pip install -q "torch==$version" "scikit-build-core>=0.10" "pybind11>=2.12" ninja \
    cmake pytest pytest-xdist hypothesis librosa scipy pyyaml tqdm matplotlib soundfile soxr
  touch "$complete"
  echo "newest torch: installed in $SECONDS s"
fi
[ "$install_only" = 1 ] && exit 0
"$py" -c "import torch; print('newest torch:', torch.__version__)"
# ssa_fast itself, built against that torch (its CPU kernels: CI has no GPU) in a build folder of
# its own, installed into a throw-away target (the cached environment keeps no copy of it)
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
"$py" -m pip install -q --no-build-isolation --no-deps --target "$site" \
  --config-settings=build-dir="build/newest-torch-$version" \
  --config-settings=cmake.define.SSA_FAST_CUDA=OFF . 2>&1 | grep -v "^WARNING: Location" || true
# run from outside the checkout, so that the installed copy (with its _C) is the one imported
root=$PWD
(cd "$site" && PYTHONPATH="$site" "$py" -m pytest -q -p no:cacheprovider -n 2 \
  --rootdir "$root" -c "$root/pyproject.toml" \
  "$root/tests/test_compile.py" "$root/tests/test_backend.py" "$root/tests/test_warn.py" \
  "$root/tests/models")
