"""ssa_attention forward + backward and l1_project_: fused backends vs the eager references.

Targets (SPEC.md section 9, on an H100): SSA fwd+bwd >= 5x the paper-literal eager reference and
>= 2x torch.compile of it at B=40, T=150, d=256; >= 70% of copy bandwidth at B=4096.
l1_project_: one launch, >= 3x eager. ``min_bytes`` in each row is the traffic no implementation
can avoid (h read by forward and backward, dh written), the floor at the device's bandwidth.
"""

import pytest
import torch

import ssa_fast
from ssa_fast.bench import l1_workload, ssa_inputs, ssa_min_bytes, ssa_workload

CPU_SSA = ["cpp", "reference", "literal"]
GPU_SSA = ["triton", "reference", "literal", "compile_literal"]


def _record_ssa(benchmark, B, T, d):
    min_bytes = ssa_min_bytes(B, T, d)
    benchmark.extra_info["min_bytes"] = min_bytes
    benchmark.extra_info["GB_per_s_at_min_bytes"] = min_bytes / benchmark.stats.stats.median / 1e9


@pytest.mark.parametrize("threads", [2], indirect=True, ids=["t2"])
@pytest.mark.parametrize("B", [40, 512], ids=["B40", "B512"])
@pytest.mark.parametrize("impl", CPU_SSA)
def test_ssa_fwd_bwd_cpu(run_bench, benchmark, impl, B, threads):
    T, d = 150, 256
    benchmark.group = f"ssa_attention fwd+bwd cpu B={B} T={T} d={d} threads={threads}"
    run_bench(ssa_workload(impl, ssa_inputs(B, T, d, "cpu")), device="cpu")
    _record_ssa(benchmark, B, T, d)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("B", [40, 4096], ids=["B40", "B4096"])
@pytest.mark.parametrize("impl", GPU_SSA)
def test_ssa_fwd_bwd_cuda(run_bench, benchmark, impl, B):
    T, d = 150, 256
    benchmark.group = f"ssa_attention fwd+bwd cuda B={B} T={T} d={d}"
    run_bench(ssa_workload(impl, ssa_inputs(B, T, d, "cuda")), device="cuda")
    _record_ssa(benchmark, B, T, d)


@pytest.mark.parametrize("K, n, N", [(4, 128, 40), (1000, 128, 4096)], ids=["paper", "large"])
@pytest.mark.parametrize("impl", ["cpp", "reference", "triton"])
def test_l1_project(run_bench, benchmark, impl, K, n, N):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if impl not in ssa_fast.available_backends(device):
        pytest.skip(f"{impl} does not run on {device}")
    benchmark.group = f"l1_project_ {device} K={K} n={n} N={N}"
    fn = l1_workload(impl, K, n, N, device)
    run_bench(fn, device=device)
    benchmark.extra_info["min_bytes"] = (2 * K * n + N * n) * 4
