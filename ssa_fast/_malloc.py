"""Keep freed memory in the process (Linux, glibc): training on the CPU frees and re-allocates
the same activation buffers (1-30 MB) at every step, and glibc's defaults give many of them back
to the kernel (``munmap``, heap trimming) only to fault every page in again at the next step.

:func:`keep_freed_memory` raises the mmap threshold to glibc's largest (32 MB) and the trim
threshold to 1 GB, as the environment variables ``MALLOC_MMAP_THRESHOLD_=33554432
MALLOC_TRIM_THRESHOLD_=1073741824`` would at start-up; allocations below 32 MB then come from the
heap and stay there. On the project's 2-core machine a training step of the demo's ACRNN took
312 ms against 389 ms and the page faults of two epochs of a fold fell from 1.48 M to 0.26 M
(benchmarks/RESULTS.md). The price: the process keeps up to about 1 GB of freed heap resident,
as a caching allocator would.

The ``ssa-fast`` command calls it; the Python API leaves the process's allocator alone unless
asked (call ``ssa_fast.keep_freed_memory()`` before training). Nothing changes when the
environment already sets these thresholds (``MALLOC_MMAP_THRESHOLD_`` and the like, or
``GLIBC_TUNABLES``), when ``SSA_FAST_MALLOC=0``, or off glibc (macOS, Windows, musl, or an
allocator such as jemalloc preloaded: its own ``malloc`` ignores glibc's settings).
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # the largest glibc takes on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 1 << 30
# what the environment may already say of them (glibc's variables and tunables)
SETTINGS = ("mmap_threshold", "trim_threshold", "top_pad", "mmap_max")

_applied: bool | None = None  # (keep_freed_memory's answer, once per process)


def tuned_by_environment(environ=os.environ) -> bool:
    """Whether the environment already sets glibc's thresholds (or asks ssa_fast not to)."""
    tunables = environ.get("GLIBC_TUNABLES", "")
    return (environ.get("SSA_FAST_MALLOC", "1").strip() == "0"
            or any(f"MALLOC_{name.upper()}_" in environ for name in SETTINGS)
            or any(f"glibc.malloc.{name}" in tunables for name in SETTINGS))


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds as the module docstring says, once per process;
    whether they are set (False where nothing was changed, see above)."""
    global _applied
    if _applied is None:
        _applied = False
        if not tuned_by_environment() and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):
                return _applied
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                            and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _applied
