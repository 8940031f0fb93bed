"""The backend each fused op runs on, pinned over every situation that decides it.

``expected()`` states the policy as a decision table, with the errors and the warnings word for
word, and the test checks it against the ops over every combination of op, device (CPU, CUDA,
another), dtype, request (none, each backend by argument; by use_backend and SSA_FAST_BACKEND
too), input size and n_fft (log-Mel), and state of the machine (the extension with or without its
CUDA log-Mel kernel, Triton installed or not, TRITON_INTERPRET on or off). CUDA tensors are fake
tensors (no GPU needed) and the kernels are not run: only the choice is recorded. A change here
is a change of behaviour.
"""

import inspect
import itertools
import warnings
from contextlib import ExitStack

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import ssa_fast
import ssa_fast.kernels.l1_project as l1_pkg
import ssa_fast.kernels.logmel_delta as logmel_pkg
import ssa_fast.kernels.ssa_attention as ssa_pkg
from ssa_fast import _backend
from ssa_fast.kernels.logmel_delta.function import CUDA_MAX_FFT, CUDA_MIN_FFT, TRITON_MAX_SAMPLES

DEVICES = ("cpu", "cuda", "meta")
DTYPES = {"f32": torch.float32, "f64": torch.float64, "bf16": torch.bfloat16,
          "f16": torch.float16}
REQUESTS = (None, "reference", "cpp", "triton", "cuda")
N_FFTS = (128, 256, 400, 512, 1024, 2048, 4096)
# samples per call: short, at the Triton / reference crossing on CUDA (6e6), one past it
SIZES = (2 * 8000, TRITON_MAX_SAMPLES, TRITON_MAX_SAMPLES + 1)
# (the extension has the CUDA log-Mel kernel, Triton installed, TRITON_INTERPRET on)
MACHINES = list(itertools.product((False, True), repeat=3))
NO_TRITON = "Triton is not installed; install the 'triton' extra (No module named 'triton')"


class _Choice(Exception):
    def __init__(self, name):
        self.name = name


def _record(name, *args, **kwargs):
    raise _Choice(name)  # the kernels are not run


def _logmel(device, dtype, n_fft, samples, backend):
    x = torch.empty(1, samples, device=device, dtype=dtype)
    window = torch.empty(n_fft, device=device, dtype=dtype)
    fb = torch.empty(40, n_fft // 2 + 1, device=device, dtype=dtype)
    return logmel_pkg.logmel_delta_with_bank(x, window, fb, 160, True, 1e-10, None, backend)


def _ssa(device, dtype, backend):
    B, T, d = 2, 5, 4
    h = [torch.empty(B, T, d, device=device, dtype=dtype) for _ in range(2)]
    w = [torch.empty(d, d, device=device, dtype=torch.float32) for _ in range(4)]
    return ssa_pkg.ssa_attention(*h, torch.empty(T, device=device, dtype=dtype), *w,
                                 backend=backend)


def _l1(device, dtype, backend):
    return l1_pkg.l1_project_(torch.empty(3, 8, device=device, dtype=dtype),
                              torch.empty(5, 8, device=device, dtype=dtype), backend)


def _outcome(call, how, request, machine, *args):
    """(backend chosen or error raised, [(warning, frame it names)]), from a fresh state."""
    cuda_kernel, triton_installed, interpret = machine
    with ExitStack() as stack:
        mp = stack.enter_context(pytest.MonkeyPatch.context())
        mp.setattr(_backend, "_warned", set())
        mp.setattr(_backend, "_cuda_ops",
                   frozenset({"logmel_delta"}) if cuda_kernel else frozenset())
        mp.setitem(_backend._status, "ssa_fast._C", (True, ""))
        mp.setitem(_backend._status, "triton", (True, "") if triton_installed else
                   (False, NO_TRITON))
        mp.setenv("TRITON_INTERPRET", "1" if interpret else "0")
        mp.delenv(_backend.ENV_VAR, raising=False)
        for pkg, name in ((logmel_pkg, "logmel_delta_apply"), (ssa_pkg, "ssa_attention_apply"),
                          (l1_pkg, "l1_project_apply")):
            mp.setattr(pkg, name, _record)
        if request is not None and how == "context":
            stack.enter_context(ssa_fast.use_backend(request))
        elif request is not None and how == "env":
            mp.setenv(_backend.ENV_VAR, request)
        caught = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")
        stack.enter_context(FakeTensorMode())
        try:
            call(*args, request if how == "arg" else None)
        except _Choice as c:
            result = c.name
        except Exception as e:  # noqa: BLE001  (the error is the outcome)
            result = f"{type(e).__name__}: {e}"
    return result, [(str(w.message), _frame(w)) for w in caught]


def _frame(w) -> str:
    """The function of this file a warning names ("op": the one calling the op, "caller": the
    one above it), or the file: "op" is right."""
    if w.filename != __file__:
        return w.filename
    for name, fn in (("op", _logmel), ("op", _ssa), ("op", _l1), ("caller", _outcome)):
        lines, first = inspect.getsourcelines(fn)
        if first <= w.lineno < first + len(lines):
            return name
    return f"line {w.lineno}"


# -- the policy ---------------------------------------------------------------------------------

HALF_OR_F32 = (torch.float32, torch.float16, torch.bfloat16)


def _unavailable(backend, op, device, dtype, machine):
    """Why `backend` cannot run `op` here (None: it can)."""
    cuda_kernel, triton_installed, interpret = machine
    on = torch.device(device, 0) if device == "cuda" else torch.device(device)
    if backend == "cuda":
        if op != "logmel_delta" or not cuda_kernel:
            return (f"ssa_fast._C has no CUDA kernel for {op} (it was built without a CUDA torch "
                    "and compiler, or the op has none)")
        if device != "cuda":
            return f"the cuda backend runs CUDA tensors only, got a tensor on {on}"
        if dtype not in HALF_OR_F32:
            return f"the cuda backend computes float32, got {dtype}"
    if backend == "triton":
        if dtype not in HALF_OR_F32:
            return f"the triton backend computes float32, got {dtype}"
        if not triton_installed:
            return NO_TRITON
        if not (device == "cuda" or (device == "cpu" and interpret)):
            return ("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 for CPU "
                    f"tensors), got a tensor on {on}")
    if backend == "cpp" and device != "cpu":
        return f"the cpp backend runs CPU tensors only, got a tensor on {on}"
    return None


def _automatic(op, device, dtype, machine, samples, with_cuda):
    if device == "cpu":
        return "cpp", []
    if device != "cuda":
        return "reference", []
    if with_cuda and _unavailable("cuda", op, device, dtype, machine) is None:
        return "cuda", []
    if op == "logmel_delta" and samples > TRITON_MAX_SAMPLES:
        return "reference", []  # cuFFT beats the Triton kernel on long batches
    why = _unavailable("triton", op, device, dtype, machine)
    if why is None:
        return "triton", []
    return "reference", [(f"ssa_fast: using the reference backend on cuda: {why}", "op")]


def expected(op, device, dtype, request, machine, n_fft=None, samples=None):
    """(backend or error, warnings) of one call."""
    if request is not None:
        why = _unavailable(request, op, device, dtype, machine)
        if why is not None:
            return (f"BackendUnavailableError: {op}: backend {request!r} is unavailable: {why}",
                    [])
        name, said = request, []
    else:
        name, said = _automatic(op, device, dtype, machine, samples, True)
    # (the n_fft the CUDA kernel takes, 256 .. 2048, are the header's: test_logmel_cuda_source)
    if name == "cuda" and not (CUDA_MIN_FFT <= n_fft <= CUDA_MAX_FFT and n_fft & (n_fft - 1) == 0):
        # (every warning names the line that called the op: until ssa_fast._warn, the one above
        # it where an explicit request fell back, and the first frame of a public op calling
        # another inside the library where the automatic choice did)
        name, said = _automatic(op, device, dtype, machine, samples, False)
        if request is not None:
            said.append((f"ssa_fast: logmel_delta with n_fft={n_fft} runs on the {name} "
                         "backend: the cuda kernel needs n_fft a power of two in "
                         f"[{CUDA_MIN_FFT}, {CUDA_MAX_FFT}]", "op"))
    return name, said


def _situations():
    for machine, device, dtype, request in itertools.product(MACHINES, DEVICES, DTYPES,
                                                              REQUESTS):
        hows = ("arg", "context", "env") if request is not None and dtype == "f32" else ("arg",)
        for how in hows:
            common = (device, DTYPES[dtype])
            # (ssa_attention computes in float32 or float64, whatever the inputs: f16 = bf16)
            if dtype != "f16":
                yield ("ssa_attention", how, request, machine, (), (_ssa, *common))
            yield "l1_project_", how, request, machine, (), (_l1, *common)
            for n_fft, samples in itertools.product(N_FFTS, SIZES):
                if device != "cuda" and samples != SIZES[0]:
                    continue  # (the size matters on CUDA only)
                yield ("logmel_delta", how, request, machine, (n_fft, samples),
                       (_logmel, *common, n_fft, samples))


def test_backend_choice_in_every_situation():
    wrong, seen = [], set()
    for op, how, request, machine, sizes, (call, device, dtype, *rest) in _situations():
        spec_dtype = (torch.float64 if dtype == torch.float64 else torch.float32) \
            if op == "ssa_attention" else dtype
        want = expected(op, device, spec_dtype, request, machine, *sizes)
        got = _outcome(call, how, request, machine, device, dtype, *rest)
        seen.add(got[0].split(":")[0])
        if got != want:
            wrong.append(f"{op} on {device} {dtype}, {request!r} by {how}, sizes {sizes}, "
                         f"machine {machine}:\n  expected {want}\n  got      {got}")
    assert not wrong, f"{len(wrong)} situations differ:\n" + "\n".join(wrong[:10])
    # (no constant table: every backend is chosen somewhere, and refused somewhere)
    assert seen == {*REQUESTS[1:], "BackendUnavailableError"}, seen
