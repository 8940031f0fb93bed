#!/usr/bin/env bash
# Install as a user types it: a fresh virtual environment with torch, then plain `pip install .`
# (with build isolation). The extension must be built against that torch (no other torch is
# downloaded into the build environment), load, and run an op; run from the checkout, where the
# source package hides the installed one, the error must say so.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# a copy of the source (tracked and new files, not build outputs): the install must not share the
# checkout's build folder with its editable install
mkdir "$work/src"
git ls-files -z -co --exclude-standard | tar -c --null -T - | tar -x -C "$work/src"

python3 -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip install -q torch==2.13.0
# (pip's own status decides; only its noise about this machine's local indexes is filtered)
log=$("$py" -m pip install -q "$work/src" 2>&1) || { echo "$log"; exit 1; }
grep -v "^WARNING: Location" <<<"$log" || true
"$py" -m pip show -q ssa-fast >/dev/null

# torch is unchanged and the installed extension loads with it
(cd "$work" && "$py" - <<'PY'
import torch
import ssa_fast._C  # noqa: F401
import ssa_fast
assert torch.__version__.startswith("2.13.0"), torch.__version__
y = ssa_fast.logmel_delta(torch.randn(2, 16000), backend="cpp")
assert y.shape == (2, 3, 101, 40), y.shape
print("plain pip install: torch", torch.__version__, "- ssa_fast._C loads, logmel_delta", tuple(y.shape))
PY
)

# from the checkout (no compiled extension in the source tree): a message that names the cause
if compgen -G "ssa_fast/_C*.so" >/dev/null; then
  echo "checkout has a built _C in ssa_fast/: skipping the shadowing check"
else
  "$py" - <<'PY'
import torch
import ssa_fast
try:
    ssa_fast.logmel_delta(torch.randn(1, 1600), backend="cpp")
except ssa_fast.BackendUnavailableError as exc:
    assert "hides the installed copy" in str(exc), exc
    print("from the checkout:", str(exc).split(";")[1].split(":")[0].strip())
else:
    raise SystemExit("expected BackendUnavailableError from the source checkout")
PY
fi
