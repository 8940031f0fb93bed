"""The one place that decides which implementation of an op runs.

Backends:
    ``reference``  pure torch, any device, float64-capable; the executable specification.
    ``cpp``        the compiled extension ``ssa_fast._C`` (CPU tensors).
    ``triton``     Triton kernels (CUDA tensors; CPU tensors too when ``TRITON_INTERPRET=1``).
    ``cuda``       hand-written CUDA kernels of ``ssa_fast._C`` (CUDA float32 tensors), for the
                   ops that have one (the extension built with a CUDA torch and compiler).

Selection, strongest first: the ``backend=`` argument of a call, the innermost
:func:`use_backend` context, the ``SSA_FAST_BACKEND`` environment variable, then the automatic
choice (``cpp`` on CPU; on CUDA an op's ``cuda`` kernel where the extension has one, else
``triton``; ``reference`` otherwise). A backend that was asked for explicitly and cannot run
raises :class:`BackendUnavailableError`; the automatic choice falls back to the reference and says
why once per reason.

The rules here know no op: what an op adds (the backends it has, the calls a backend's kernels do
not take, the sizes at which the automatic choice passes over a backend) is its :class:`OpRules`,
the ``BackendTable`` in ``kernels/<op>/function.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
from collections.abc import Iterator

import torch

from . import _warn
from .errors import BackendUnavailableError

BACKENDS = ("reference", "cpp", "triton", "cuda")
ENV_VAR = "SSA_FAST_BACKEND"

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


_status: dict[str, tuple[bool, str]] = {}
# The native ops of ssa_fast._C that have a CUDA kernel, read from the dispatcher once, when the
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


def describe_device(device: torch.device | str) -> str:
    """The device as people name it: the GPU's name, or the CPU's model and core count (Linux:
    /proc/cpuinfo's model name; elsewhere what the platform module says). Benchmark rows and
    the environment a run records (train/fingerprint.py) use it."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return str(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh
                         if line.startswith("model name")), name)
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def _check_name(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where} must be one of {BACKENDS} or None, got {name!r}")
    return name


# The input dtypes of the backends that compute in float32 (triton, cuda): float32 and the half
# types their kernels upcast; float64 is not theirs.
FLOAT32_COMPUTE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def cuda_kernel_registered(op: str) -> bool:
    """Whether ssa_fast._C was built with a CUDA kernel for torch.ops.ssa_fast.<op> (read when
    the extension was loaded; False for a name that is no native op)."""
    return extension_status()[0] and op in _cuda_ops


def unavailable_reason(backend: str, device: torch.device, dtype: torch.dtype | None = None,
                       op: str | None = None) -> str | None:
    """Why `backend` cannot run `op` on tensors of `dtype` on `device`, or None when it can
    (``op`` matters for ``cuda`` only: not every op has a CUDA kernel)."""
    if backend == "reference":
        return None
    if backend == "cuda":
        if op is None:
            return "the cuda backend exists for some ops only; name the op"
        ok, why = extension_status()
        if not ok:
            return why
        if not cuda_kernel_registered(op):
            return (f"ssa_fast._C has no CUDA kernel for {op} (it was built without a CUDA torch "
                    "and compiler, or the op has none)")
        if device.type != "cuda":
            return f"the cuda backend runs CUDA tensors only, got a tensor on {device}"
        if dtype is not None and dtype not in FLOAT32_COMPUTE_DTYPES:
            return f"the cuda backend computes float32, got {dtype}"
        return None
    if backend == "triton" and dtype is not None and dtype not in FLOAT32_COMPUTE_DTYPES:
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


class OpRules:
    """What one op adds to the rules above: its name (in messages; a ``cuda`` backend runs the
    native op of that name), the backends it has, and two optional rules of its own:

    ``supports(backend, **call) -> str | None``: why `backend`'s kernels do not take a call with
    these parameters (None: they do). The automatic choice passes over such a backend; an
    explicit request for it runs on the automatic choice among the others, and says why.
    ``prefers(backend, size) -> bool``: whether the automatic choice takes `backend` for an input
    of `size` elements (False: it passes over it, for a measured crossing in speed).

    An op named by a plain string has every backend and no rules of its own."""

    def __init__(self, op: str, backends=BACKENDS, supports=None, prefers=None):
        self.op, self.backends = op, tuple(backends)
        self._supports, self._prefers = supports, prefers

    def supports(self, backend: str, **call) -> str | None:
        return None if self._supports is None else self._supports(backend, **call)

    def prefers(self, backend: str, size: int | None) -> bool:
        return self._prefers is None or size is None or self._prefers(backend, size)


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


# The automatic choice's candidates, first taken first: on CUDA an op's hand-written kernel where
# it exists (csrc/cuda holds only kernels that beat Triton: why, in the op's function.py), else
# Triton. The cuda backend, which few ops and builds have, is passed over silently where it
# cannot run; any other candidate that cannot run means the reference, said once per reason.
_AUTOMATIC = {"cpu": ("cpp",), "cuda": ("cuda", "triton")}


def automatic_candidates(rules: OpRules, device: torch.device, size: int | None = None,
                         exclude: str | None = None, **call) -> tuple[str, ...]:
    """The backends the automatic choice tries for this call, in order, before availability is
    looked at (none: the reference)."""
    return tuple(b for b in _AUTOMATIC.get(device.type, ())
                 if b in rules.backends and b != exclude and rules.supports(b, **call) is None
                 and rules.prefers(b, size))


def _automatic(rules: OpRules, device: torch.device, dtype: torch.dtype | None,
               size: int | None, call: dict, exclude: str | None) -> str:
    for name in automatic_candidates(rules, device, size, exclude, **call):
        why = unavailable_reason(name, device, dtype, rules.op)
        if why is None:
            return name
        if name != "cuda":
            if why not in _warned:
                _warned.add(why)
                _warn.warn(f"ssa_fast: using the reference backend on {device.type}: {why}",
                           RuntimeWarning)
            break
    return "reference"


def resolve(op: OpRules | str, device: torch.device, backend: str | None = None,
            dtype: torch.dtype | None = None, size: int | None = None, **call) -> str:
    """Pick the backend that runs `op` (its rules, or a plain name) on tensors of `dtype` on
    `device`; `size` (elements of the main input) and `call` (the parameters the kernels' limits
    depend on) are what the op's own rules read."""
    rules = op if isinstance(op, OpRules) else OpRules(op)
    explicit = requested_backend(backend)
    if explicit is None:
        return _automatic(rules, device, dtype, size, call, None)
    why = unavailable_reason(explicit, device, dtype, rules.op)
    if why is not None:
        raise BackendUnavailableError(f"{rules.op}: backend {explicit!r} is unavailable: {why}")
    why = rules.supports(explicit, **call)
    if why is None:
        return explicit
    name = _automatic(rules, device, dtype, size, call, explicit)
    shown = ", ".join(f"{k}={v}" for k, v in call.items())
    _warn.warn(f"ssa_fast: {rules.op} with {shown} runs on the {name} backend: {why}",
               RuntimeWarning)
    return name


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
