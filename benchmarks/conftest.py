"""Benchmark helpers: a device-synchronising runner, thread control, the device's ceilings.

Run with ``pytest benchmarks --benchmark-only`` (``make bench``); ``report.py`` turns the JSON
written with ``--benchmark-json`` into the Markdown table kept in RESULTS.md.

GPU rows (``*_cuda``) run on CUDA; with ``SSA_FAST_DRY_RUN=1`` they run the same code on the CPU
at tiny sizes (``bash gpu_session/gpu_session.sh --dry-run ...``). Rows that pass
``bytes_moved`` or ``flops`` to ``run_bench`` get their physical floor (``floor_ms`` = the larger
of bytes / copy bandwidth and FLOPs / bf16 matmul peak, both measured once in the same session)
and ``fraction_of_floor`` = floor / median time.
"""

import os

import pytest
import torch

from ssa_fast.bench import (
    describe_device,
    device_ceilings,
    dry_run,
    floor_ms,
    gpu_bench_device,
    sync,
)

if not torch.cuda.is_available() and not dry_run():
    # Triton rows run only on a GPU; keep the interpreter out of timings.
    os.environ.pop("TRITON_INTERPRET", None)

_ceilings: dict = {}


@pytest.fixture(scope="session")
def ceilings():
    """Copy bandwidth and bf16 matmul peak of the GPU rows' device, measured once per session."""
    device = gpu_bench_device() or "cpu"
    if not _ceilings:
        small = dict(copy_bytes=1 << 20, matmul_n=64) if device == "cpu" else {}
        _ceilings.update(device_ceilings(device, **small))
    return _ceilings


def pytest_benchmark_update_machine_info(config, machine_info):
    if _ceilings:
        machine_info["ceilings"] = dict(_ceilings)


@pytest.fixture
def run_bench(benchmark, request):
    """benchmark(fn) that synchronises the device inside the timed call and records context;
    with ``bytes_moved`` / ``flops`` it also records the floor and the fraction of it reached."""

    def go(fn, *, device: str, group_info: dict | None = None, rounds: int | None = None,
           bytes_moved: float = 0.0, flops: float = 0.0):
        def timed():
            out = fn()
            sync(device)
            return out

        benchmark.extra_info.update(group_info or {})
        benchmark.extra_info["device"] = describe_device(device)
        benchmark.extra_info["threads"] = torch.get_num_threads()
        if rounds is not None:
            result = benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=2)
        else:
            result = benchmark(timed)
        if (bytes_moved or flops) and benchmark.stats is not None:
            floor = floor_ms(request.getfixturevalue("ceilings"), bytes_moved=bytes_moved,
                             flops=flops)
            benchmark.extra_info.update(floor, bytes_moved=bytes_moved, flops=flops)
            benchmark.extra_info["fraction_of_floor"] = (
                floor["floor_ms"] / (1e3 * benchmark.stats.stats.median))
        return result

    return go


@pytest.fixture
def threads(request):
    """Set torch's (and the BLAS / FFT pools') thread count for one benchmark."""
    n = request.param
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # librosa rows then use the library defaults
        yield n
    else:
        with threadpool_limits(limits=n):
            yield n
    torch.set_num_threads(old)
