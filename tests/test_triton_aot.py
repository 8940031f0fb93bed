"""Every Triton kernel compiles for the H100 (sm_90a) although this machine has no GPU.

A sample of the launched specialisations (paper-preset SSA split, unsplit, in one launch per
direction and on the large-batch path, log-Mel, L1 in float32 and bfloat16), compiled by
``benchmarks/triton_aot.py --quick`` in a subprocess (it must import the kernels without
TRITON_INTERPRET). The full set, under this Triton and the GPU machine's Triton 3.6, is a CI step
(.ci/run).
"""

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _aot(*args, status=0):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "triton_aot.py"), "--quick",
                           *map(str, args)], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == status, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90a_within_the_shared_memory_limit(tmp_path):
    pytest.importorskip("triton")
    cache = tmp_path / "cache"
    # (no kernel may spill: SSA launched with 8 warps where tiles are wide, the one-launch
    # kernels under a ceiling of 128 registers; log-Mel with its deltas through a scratch slot)
    proc = _aot("--jobs", "1", "--cache", cache, "--json", tmp_path / "first.json",
                "--no-spills", ".")
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

    # CI keeps the cache between runs: a second run compiles nothing it holds and gives every
    # specialisation the ptxas report of its first compile; one whose report is gone (a run
    # killed between the two writes) is compiled again
    first = json.loads((tmp_path / "first.json").read_text())["rows"]
    assert not any(r["cached"] for r in first)
    reports = sorted((cache / "ptxas-logs").glob("*.log"))
    assert len(reports) == len(first)
    # each kept under Triton's own cache key of its compile (its folder there is named by the
    # key in base 32), not under a key of this script's, which would miss what Triton's key
    # holds and this one not (an environment variable, Triton's own sources)
    folders = {p.name for p in (cache / "triton").iterdir()}
    assert {base64.b32encode(bytes.fromhex(p.stem)).decode().rstrip("=")
            for p in reports} <= folders
    reports[0].unlink()
    proc = _aot("--jobs", "2", "--cache", cache, "--json", tmp_path / "again.json")
    assert f"({len(first) - 1} of them held by the cache" in proc.stdout
    again = json.loads((tmp_path / "again.json").read_text())["rows"]
    mine = ("registers", "stack", "spill_stores", "spill_loads", "shared", "num_warps",
            "ptx_target", "cubin_bytes", "kernel", "specialisation")
    key = lambda r: (r["kernel"], r["specialisation"])
    assert sorted([r[k] for k in mine] for r in first) == sorted([r[k] for k in mine]
                                                                 for r in again)
    assert sum(not r["cached"] for r in again) == 1 and reports[0].is_file()
    assert len({key(r) for r in again}) == len(again)

    # a pattern that matches no kernel is refused, not a pass that checked nothing
    proc = _aot("--kernels", "^_l1_projekt", status=2)
    assert "matches no kernel of the library" in proc.stderr

    # the spill check fails where a kernel spills: L1's under a ceiling of 24 registers
    proc = _aot("--jobs", "2", "--kernels", "^_l1_", "--maxnreg", 24, "--no-spills", ".",
                status=1)
    summary = dict(re.findall(r"^(_\w+_kernel): (.*)$", proc.stdout, re.M))
    assert set(summary) == {"_l1_project_kernel"}, proc.stdout  # (and no other is missed)
    failed = re.findall(r"^FAIL (\w+) \[.*\]: spills (\d+) bytes .* with (\d+) registers",
                        proc.stdout, re.M)
    assert len(failed) == 2 and all(k == "_l1_project_kernel" and int(n) > 0 and r == "24"
                                    for k, n, r in failed), proc.stdout
