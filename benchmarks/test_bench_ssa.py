"""ssa_attention forward + backward and l1_project_: fused backends vs the eager references.

Targets (design.md section 9): SSA fwd+bwd at B=40, T=150, d=256 >= 1.5x torch.compile of the
paper-literal form (compile_literal); at B=4096 >= 60% of the copy bandwidth (min bytes).
l1_project_: one launch, >= 3x eager. ``min_bytes`` in each row is the traffic no implementation
can avoid (h read by forward and backward, dh written), the floor at the device's bandwidth.
"""

import pytest

import ssa_fast
from ssa_fast.bench import (
    dry_run,
    gpu_bench_device,
    l1_min_bytes,
    l1_workload,
    ssa_flops,
    ssa_inputs,
    ssa_min_bytes,
    ssa_workload,
)

CPU_SSA = ["cpp", "reference", "literal"]
# triton_two_kernel: the two-kernel path forced at every batch (at B=40 the A/B of the one-launch
# kernels); triton_large: the large-batch kernels (design.md 10.2) forced, at B=4096 the A/B
# against triton_two_kernel; cudagraph_*: the same work replayed from a CUDA graph, i.e. without
# launch overhead
GPU_SSA = ["triton", "triton_two_kernel", "triton_large", "reference", "literal",
           "compile_literal", "cudagraph_triton", "cudagraph_literal"]
GPU = gpu_bench_device()
GPU_SSA_SHAPES = [(3, 7, 9)] if dry_run() else [(40, 150, 256), (4096, 150, 256)]
L1_SHAPES = [(4, 128, 40), (1000, 128, 4096)]
GPU_L1_SHAPES = L1_SHAPES[:1] if dry_run() else L1_SHAPES


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


@pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU")
@pytest.mark.parametrize("B, T, d", GPU_SSA_SHAPES, ids=[f"B{b}" for b, _, _ in GPU_SSA_SHAPES])
@pytest.mark.parametrize("impl", GPU_SSA)
def test_ssa_fwd_bwd_cuda(run_bench, benchmark, impl, B, T, d):
    if dry_run() and impl.startswith("compile_"):
        pytest.skip("dry run: torch.compile takes minutes on the CPU")
    if impl.startswith("cudagraph_") and GPU != "cuda":
        pytest.skip("CUDA graphs need CUDA")
    benchmark.group = f"ssa_attention fwd+bwd {GPU} B={B} T={T} d={d}"
    run_bench(ssa_workload(impl, ssa_inputs(B, T, d, GPU)), device=GPU,
              bytes_moved=ssa_min_bytes(B, T, d), flops=ssa_flops(B, T, d))
    _record_ssa(benchmark, B, T, d)


@pytest.mark.parametrize("K, n, N", L1_SHAPES, ids=["paper", "large"])
@pytest.mark.parametrize("impl", ["cpp", "reference"])
def test_l1_project_cpu(run_bench, benchmark, impl, K, n, N):
    if impl not in ssa_fast.available_backends("cpu"):
        pytest.skip(f"{impl} does not run on the CPU")
    benchmark.group = f"l1_project_ cpu K={K} n={n} N={N}"
    run_bench(l1_workload(impl, K, n, N, "cpu"), device="cpu")
    benchmark.extra_info["min_bytes"] = l1_min_bytes(K, n, N)


@pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU")
@pytest.mark.parametrize("K, n, N", GPU_L1_SHAPES, ids=["paper", "large"][:len(GPU_L1_SHAPES)])
@pytest.mark.parametrize("impl", ["triton", "reference"])
def test_l1_project_cuda(run_bench, benchmark, impl, K, n, N):
    """Target: one launch, >= 3x the eager reference (its several kernels and a float64 sum)."""
    benchmark.group = f"l1_project_ {GPU} K={K} n={n} N={N}"
    run_bench(l1_workload(impl, K, n, N, GPU), device=GPU, bytes_moved=l1_min_bytes(K, n, N),
              flops=N * n + 3 * K * n)
