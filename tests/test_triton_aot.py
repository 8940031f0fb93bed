"""Every Triton kernel compiles for the H100 (sm_90a) although this machine has no GPU.

A sample of the launched specialisations (paper-preset SSA split, unsplit, in one launch per
direction and on the large-batch path, log-Mel, L1 in float32 and bfloat16), compiled by
``benchmarks/triton_aot.py --quick`` in a subprocess (it must import the kernels without
TRITON_INTERPRET). The full set, under this Triton and the GPU machine's Triton 3.6, is a CI step
(.ci/run).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_kernel_compiles_for_sm90a_within_the_shared_memory_limit():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_aot.py"), "--quick",
                           "--jobs", "1"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    summary = dict(re.findall(r"^(_\w+_kernel): (.*)$", proc.stdout, re.M))
    assert set(summary) == {"_ssa_fwd_kernel", "_ssa_bwd_kernel", "_ssa_fused_fwd_kernel",
                            "_ssa_fused_bwd_kernel", "_ssa_large_fwd_kernel",
                            "_ssa_large_bwd_rows_kernel", "_ssa_large_bwd_em_kernel",
                            "_logmel_delta_kernel", "_l1_project_kernel"}, proc.stdout
    for line in summary.values():
        assert "PTX target sm_90a" in line
    rows = re.findall(r"^(_\w+_kernel)\s+(\d+)\s+(\d+)/(\d+)\s+(\d+)\s+(\d+)\s+[48] ",
                      proc.stdout, re.M)
    assert len(rows) >= 11
    for kernel, regs, _, _, _, shared, in rows:
        assert 0 < int(regs) <= 255 and int(shared) <= 227 * 1024, kernel
    splits = set(re.findall(r"_ssa_fwd_kernel .*SPLITS=(\d+)", proc.stdout))
    assert "1" in splits and len(splits) >= 2  # the unsplit and a T-split variant
