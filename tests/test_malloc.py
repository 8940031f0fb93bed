"""The allocator setting of the command line (ssa_fast/_malloc.py): freed activation buffers stay
in the process instead of being faulted in again at every step."""

import json
import os
import platform
import subprocess
import sys

import pytest

from ssa_fast._malloc import tuned_by_environment

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

# a convolution's forward and backward, 10 times, as a training step frees and re-allocates its
# activations; prints the page faults of those 10 steps and whether the setting was made
# (transparent huge pages off: with them a kernel faults 2 MB at a time and counts far fewer)
STEPS = """
import ctypes, json, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 kB pages, a fault each
import ssa_fast
applied = ssa_fast.keep_freed_memory()
import torch
torch.set_num_threads(1)
conv = torch.nn.Conv2d(16, 16, 3, padding=1)
x = torch.randn(8, 16, 150, 40, requires_grad=True)
def step():
    torch.nn.functional.leaky_relu(conv(x)).sum().backward()
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(json.dumps([applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]))
"""


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "SSA_FAST_MALLOC"))}
    env.update(extra)
    return env


def _faults(**extra):
    out = subprocess.run([sys.executable, "-c", STEPS], env=_clean_env(**extra),
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[-1])


@glibc
def test_freed_buffers_are_not_faulted_in_again():
    applied, faults = _faults()
    skipped, faults_default = _faults(SSA_FAST_MALLOC="0")
    assert applied is True and skipped is False
    # each step's ~3 MB buffers: thousands of page faults a step with glibc's defaults
    assert faults_default > 2000
    assert faults < faults_default / 3


@glibc
def test_the_environment_s_own_setting_is_left_alone():
    applied, _ = _faults(MALLOC_TRIM_THRESHOLD_="131072")
    assert applied is False
    applied, _ = _faults(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")
    assert applied is False


def test_tuned_by_environment():
    assert not tuned_by_environment({})
    assert not tuned_by_environment({"SSA_FAST_MALLOC": "1", "GLIBC_TUNABLES": "glibc.rtld.x=1"})
    assert tuned_by_environment({"SSA_FAST_MALLOC": "0"})
    assert tuned_by_environment({"MALLOC_MMAP_THRESHOLD_": "1"})
    assert tuned_by_environment({"MALLOC_TOP_PAD_": "1"})
    assert not tuned_by_environment({"MALLOC_ARENA_MAX": "2"})  # (arenas, not thresholds)
    assert not tuned_by_environment({"MALLOC_CONF": "x"})  # (jemalloc's, not glibc's)
    assert tuned_by_environment({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1"})


@glibc
def test_the_command_line_sets_it(tmp_path):
    code = ("import sys, ssa_fast._malloc as m, ssa_fast.cli as c; "
            "c.main(sys.argv[1:]); print('applied', m._applied)")
    args = ["features", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "f")]
    out = subprocess.run([sys.executable, "-c", code, *args], env=_clean_env(),
                         capture_output=True, text=True).stdout
    assert out.splitlines()[-1] == "applied True"
