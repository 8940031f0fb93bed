"""Benchmark helpers: a device-synchronising runner, thread control, device description.

Run with ``pytest benchmarks --benchmark-only`` (``make bench``); ``report.py`` turns the JSON
written with ``--benchmark-json`` into the Markdown table kept in RESULTS.md.
"""

import os
import platform

import pytest
import torch

if not torch.cuda.is_available():
    # Triton rows run only on a GPU; keep the interpreter out of timings.
    os.environ.pop("TRITON_INTERPRET", None)


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.fixture
def run_bench(benchmark):
    """benchmark(fn) that synchronises the device inside the timed call and records context."""

    def go(fn, *, device: str, group_info: dict | None = None, rounds: int | None = None):
        def timed():
            out = fn()
            sync(device)
            return out

        benchmark.extra_info.update(group_info or {})
        benchmark.extra_info["device"] = device_name(device)
        benchmark.extra_info["threads"] = torch.get_num_threads()
        if rounds is not None:
            return benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=2)
        return benchmark(timed)

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
