"""The one place that decides which implementation of an op runs.

Backends:
    ``reference``  pure torch, any device, float64-capable; the executable specification.
    ``cpp``        the compiled extension ``ssa_fast._C`` (CPU tensors).
    ``triton``     Triton kernels (CUDA tensors; CPU tensors too when ``TRITON_INTERPRET=1``).
    ``cuda``       hand-written CUDA kernels of ``ssa_fast._C`` (CUDA float32 tensors), for the
                   ops that have one (the extension built with a CUDA torch and compiler).

Selection, strongest first: the ``backend=`` argument of a call, the innermost
:func:`use_backend` context, the ``SSA_FAST_BACKEND`` environment variable, then the automatic
choice (on CUDA: an op's ``cuda`` kernel where the extension has one, else ``triton``, except for
long log-Mel batches, see :data:`LOGMEL_TRITON_MAX_SAMPLES`; ``cpp`` on CPU; ``reference``
otherwise). A backend that was asked for
explicitly and cannot run raises :class:`BackendUnavailableError`; the automatic choice falls back
to the reference and says why once per reason.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import warnings
from collections.abc import Iterator

import torch

BACKENDS = ("reference", "cpp", "triton", "cuda")
ENV_VAR = "SSA_FAST_BACKEND"
# logmel_delta on CUDA without the extension's CUDA kernel: the Triton kernel (one launch) wins on
# short input, the reference (cuFFT and ~20 launches) from about this many samples per call. On an
# H200 (benchmarks/RESULTS.md): 3 s x 1, Triton 0.34 ms against 1.17; 3 s x 512, 3.6 ms against
# 1.6; both linear in the batch beyond, which puts the crossing near 7e6 samples.
LOGMEL_TRITON_MAX_SAMPLES = 6_000_000

_override: contextvars.ContextVar[str | None] = contextvars.ContextVar("ssa_fast_backend",
                                                                       default=None)
_warned: set[str] = set()


def constant_under_compile(fn):
    """``torch.compiler.assume_constant_result`` without importing torch._dynamo (about 2 s,
    paid by every command-line process otherwise): the decorator only marks the function, and
    dynamo reads the mark when it traces a call (tests/test_backend.py compares the marks)."""
    fn._dynamo_marked_constant = True
    return fn


def eager_under_compile(fn):
    """``torch.compiler.disable`` without importing torch._dynamo first: the call runs eagerly
    (a graph break) when torch.compile traces it, as a plain call otherwise; dynamo is loaded at
    the first traced call (torch's own lazy form of disable, ``torch._disable_dynamo``)."""
    disabled = torch._disable_dynamo(fn)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return disabled(*args, **kwargs)
        return fn(*args, **kwargs)

    return call


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here (the message says why)."""


_status: dict[str, tuple[bool, str]] = {}
# The ops of ssa_fast._C that have a CUDA kernel, read from the dispatcher once, when the
# extension is loaded (eagerly: importing ssa_fast.kernels loads it). Nothing asks the
# dispatcher after that, so the backend choice made while torch.compile traces a caller is plain
# Python over these facts: a dispatcher query inside a traced region raised under fake tensors
# on torch 2.11 (tests/test_compile.py::test_backend_choice_queries_nothing_while_tracing).
_cuda_ops: frozenset[str] = frozenset()


def _native_cuda_ops() -> frozenset[str]:
    return frozenset(name.split("::", 1)[1] for name in
                     torch._C._dispatch_get_registrations_for_dispatch_key("CUDA")
                     if name.startswith("ssa_fast::"))


def _probe(module: str, why: str) -> tuple[bool, str]:
    global _cuda_ops
    if module not in _status:
        try:
            importlib.import_module(module)
        except ImportError as exc:  # not built / not installed / built against another torch
            if module == "ssa_fast._C":
                from ._install import checkout_shadowing_hint

                why += checkout_shadowing_hint()
            _status[module] = (False, f"{why} ({exc})")
        else:
            if module == "ssa_fast._C":
                _cuda_ops = _native_cuda_ops()
            _status[module] = (True, "")
    return _status[module]


def prepare(device: torch.device | str | None = None) -> None:
    """Settle, outside any traced region, every fact the automatic choice reads for tensors on
    ``device``: the extension and its CUDA kernels, and Triton where it could run (CUDA, or the
    CPU under TRITON_INTERPRET=1). Called before torch.compile wraps a model (the training
    loop), so that tracing it imports and queries nothing."""
    extension_status()
    device = torch.device(device) if device is not None else None
    if device is not None and (device.type == "cuda" or triton_interpret()):
        triton_status()


# Availability is fixed for the life of the process: under torch.compile the probes are evaluated
# once at trace time and treated as constants (no graph break, no traced imports).
@constant_under_compile
def extension_status() -> tuple[bool, str]:
    """(loaded, why not) for the compiled extension ssa_fast._C."""
    return _probe("ssa_fast._C", "the compiled extension ssa_fast._C could not be imported")


@constant_under_compile
def triton_status() -> tuple[bool, str]:
    return _probe("triton", "Triton is not installed; install the 'triton' extra")


def triton_interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where} must be one of {BACKENDS} or None, got {name!r}")
    return name


# The Triton kernels compute in float32 (half inputs are upcast); float64 is not theirs.
TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def cuda_kernel_registered(op: str) -> bool:
    """Whether ssa_fast._C was built with a CUDA kernel for torch.ops.ssa_fast.<op> (read when
    the extension was loaded; False for a name that is no native op, such as ssa_attention,
    whose native parts are ssa_core_fwd / ssa_core_bwd)."""
    return extension_status()[0] and op in _cuda_ops


def _cuda_kernel_reason(op: str | None, device: torch.device,
                        dtype: torch.dtype | None) -> str | None:
    if op is None:
        return "the cuda backend exists for some ops only; name the op"
    ok, why = extension_status()
    if not ok:
        return why
    if not cuda_kernel_registered(op):
        return (f"ssa_fast._C has no CUDA kernel for {op} (it was built without a CUDA torch and "
                "compiler, or the op has none)")
    if device.type != "cuda":
        return f"the cuda backend runs CUDA tensors only, got a tensor on {device}"
    if dtype is not None and dtype not in TRITON_DTYPES:
        return f"the cuda backend computes float32, got {dtype}"
    return None


def unavailable_reason(backend: str, device: torch.device, dtype: torch.dtype | None = None,
                       op: str | None = None) -> str | None:
    """Why `backend` cannot run `op` on tensors of `dtype` on `device`, or None when it can
    (``op`` matters for ``cuda`` only: not every op has a CUDA kernel)."""
    if backend == "reference":
        return None
    if backend == "cuda":
        return _cuda_kernel_reason(op, device, dtype)
    if backend == "triton" and dtype is not None and dtype not in TRITON_DTYPES:
        return f"the triton backend computes float32, got {dtype}"
    if backend == "cpp":
        ok, why = extension_status()
        if not ok:
            return why
        if device.type != "cpu":
            return f"the cpp backend runs CPU tensors only, got a tensor on {device}"
        return None
    ok, why = triton_status()
    if not ok:
        return why
    if device.type == "cuda":
        return None
    if device.type == "cpu" and triton_interpret():
        return None
    return (f"the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors), "
            f"got a tensor on {device}")


# Under torch.compile the choice in force is read once, when a graph is traced (dynamo cannot
# trace ContextVar.get: a graph break in every fused op of a compiled model otherwise); a graph
# keeps the backend it was traced with.
@constant_under_compile
def requested_backend(backend: str | None) -> str | None:
    """The explicit choice in force for a call, if any (argument > context > environment)."""
    if backend is not None:
        return _check_name(backend, "backend")
    ctx = _override.get()
    if ctx is not None:
        return ctx
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return _check_name(env, f"the environment variable {ENV_VAR}")
    return None


def _preferred(op: str, device: torch.device, dtype: torch.dtype | None, samples: int | None,
               cuda: bool) -> str | None:
    """The automatic choice before availability is checked (None: the reference)."""
    if device.type == "cpu":
        return "cpp"
    if device.type != "cuda":
        return None
    # A hand-written CUDA kernel runs where it exists: the log-Mel one passed the suite's log-Mel
    # tests on an H200 and is the fastest backend there at every benchmarked size, 2x the
    # reference and 1.4-4.5x Triton (benchmarks/RESULTS.md).
    if cuda and _cuda_kernel_reason(op, device, dtype) is None:
        return "cuda"
    if op == "logmel_delta" and samples is not None and samples > LOGMEL_TRITON_MAX_SAMPLES:
        return "reference"
    return "triton"


def automatic(op: str, device: torch.device, dtype: torch.dtype | None = None,
              samples: int | None = None, *, cuda: bool = True, stacklevel: int = 3) -> str:
    """The automatic choice for `op` (no explicit request looked at); ``cuda=False`` leaves the
    hand-written CUDA kernels out (a call they do not cover). Falls back to the reference, said
    once per reason."""
    preferred = _preferred(op, device, dtype, samples, cuda)
    if preferred in (None, "reference"):
        return "reference"
    why = unavailable_reason(preferred, device, dtype, op)
    if why is None:
        return preferred
    if why not in _warned:
        _warned.add(why)
        warnings.warn(f"ssa_fast: using the reference backend on {device.type}: {why}",
                      RuntimeWarning, stacklevel=stacklevel)
    return "reference"


def resolve(op: str, device: torch.device, backend: str | None = None,
            dtype: torch.dtype | None = None, samples: int | None = None) -> str:
    """Pick the backend that runs `op` on tensors of `dtype` on `device`; `samples` (the
    waveform's element count, for logmel_delta) sizes the automatic choice on CUDA."""
    explicit = requested_backend(backend)
    if explicit is not None:
        why = unavailable_reason(explicit, device, dtype, op)
        if why is not None:
            raise BackendUnavailableError(f"{op}: backend {explicit!r} is unavailable: {why}")
        return explicit
    return automatic(op, device, dtype, samples, stacklevel=4)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Run the enclosed calls on backend `name` (None restores the automatic choice)."""
    if name is not None:
        _check_name(name, "use_backend(name)")
    token = _override.set(name)
    try:
        yield
    finally:
        _override.reset(token)


def available_backends(device: torch.device | str = "cpu", op: str | None = None) -> list[str]:
    """Backends that can run on `device`; ``cuda`` is listed only for an `op` that has a CUDA
    kernel (without `op` the list is the backends every op has)."""
    device = torch.device(device)
    return [b for b in BACKENDS if unavailable_reason(b, device, op=op) is None]
