"""A warning of the library names the line of the caller's code that led to it, whatever the
path through the library (a public op calling another, an nn.Module's __call__). The explicit
requests that fall back: tests/test_backend_choice.py; the feature cache and archive prediction:
their own tests."""

import inspect
import warnings

import pytest
import torch

from ssa_fast import _backend, _warn
from ssa_fast.features import LogMelDelta
from ssa_fast.kernels.l1_project import l1_project_
from ssa_fast.kernels.logmel_delta import logmel_delta
from ssa_fast.kernels.ssa_attention import ssa_attention


def _line() -> int:
    return inspect.currentframe().f_back.f_lineno


@pytest.fixture
def no_extension(monkeypatch):
    """The CPU's automatic choice (cpp) cannot run: it falls back to the reference, warning."""
    monkeypatch.setattr(_backend, "_warned", set())
    monkeypatch.setitem(_backend._status, "ssa_fast._C", (False, "pretend it is not built"))


def _one(caught, line):
    assert [str(w.message) for w in caught] == [
        "ssa_fast: using the reference backend on cpu: pretend it is not built"]
    assert (caught[0].filename, caught[0].lineno) == (__file__, line)


def _ssa_inputs(B=2, T=5, d=4):
    g = torch.Generator().manual_seed(0)
    return ([torch.randn(B, T, d, generator=g) for _ in range(2)] + [torch.randn(T, generator=g)]
            + [torch.randn(d, d, generator=g) for _ in range(4)])


@pytest.mark.parametrize("path", ["logmel_delta", "module", "ssa_attention", "l1_project_"])
def test_the_automatic_fallback_names_the_calling_line(no_extension, path):
    x = torch.randn(2, 4000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if path == "logmel_delta":  # (through logmel_delta_with_bank)
            logmel_delta(x); line = _line()  # noqa: E702
        elif path == "module":  # (through nn.Module.__call__ and forward)
            LogMelDelta()(x); line = _line()  # noqa: E702
        elif path == "ssa_attention":
            ssa_attention(*_ssa_inputs()); line = _line()  # noqa: E702
        else:
            l1_project_(torch.randn(3, 8), torch.randn(5, 8)); line = _line()  # noqa: E702
    _one(caught, line)


def test_the_last_frame_when_every_frame_is_inside(monkeypatch):
    """Called with no frame outside (the skipped prefixes cover everything): the outermost frame,
    never a made-up location."""
    monkeypatch.setattr(_warn, "_INSIDE", ("",))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn.warn("x")
    outermost = inspect.currentframe()
    while outermost.f_back is not None:
        outermost = outermost.f_back
    assert caught[0].filename == outermost.f_code.co_filename


def test_under_torch_compile_the_warning_is_the_only_one_and_names_the_compiled_line(
        no_extension):
    """Traced, the warning runs eagerly (a graph break) and still names the caller's line;
    dynamo adds no warning of its own about the frame walk."""
    def step(*inputs):
        return ssa_attention(*inputs)[0].sum()

    line = inspect.getsourcelines(step)[1] + 1
    compiled = torch.compile(step, backend="eager")
    inputs = _ssa_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = compiled(*inputs)
    _one(caught, line)
    torch.testing.assert_close(out, step(*inputs))
