"""Backend selection: explicit requests, the environment variable, the context manager, and what
happens when the compiled extension or Triton cannot be used."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import ssa_fast
from ssa_fast import _backend


def test_extension_loaded():
    """The compiled extension must import wherever the package was installed (make test does).
    Set SSA_FAST_ALLOW_NO_EXT=1 to run the suite knowingly without it."""
    ok, why = _backend.extension_status()
    if os.environ.get("SSA_FAST_ALLOW_NO_EXT") != "1":
        assert ok, why
    assert ok or why


def test_explicit_argument_beats_context_and_env(monkeypatch):
    monkeypatch.setenv(_backend.ENV_VAR, "cpp")
    assert _backend.resolve("op", torch.device("cpu")) == "cpp"
    with ssa_fast.use_backend("reference"):
        assert _backend.resolve("op", torch.device("cpu")) == "reference"
        assert _backend.resolve("op", torch.device("cpu"), "cpp") == "cpp"
    assert _backend.resolve("op", torch.device("cpu")) == "cpp"


def test_automatic_choice_on_cpu_is_cpp(monkeypatch):
    monkeypatch.delenv(_backend.ENV_VAR, raising=False)
    assert _backend.resolve("op", torch.device("cpu")) == "cpp"


@pytest.mark.parametrize("bad", ["gpu", "CPP", ""])
def test_unknown_backend_names_are_rejected(bad, monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        ssa_fast.logmel_delta(torch.randn(1000), backend=bad or "none")
    with pytest.raises(ValueError, match="use_backend"):
        with ssa_fast.use_backend(bad or "none"):
            pass
    if bad:
        monkeypatch.setenv(_backend.ENV_VAR, bad)
        with pytest.raises(ValueError, match=_backend.ENV_VAR):
            ssa_fast.logmel_delta(torch.randn(1000))


def _run(code: str, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_without_extension_import_works_and_cpp_request_fails():
    """A real interpreter in which ssa_fast._C cannot be imported."""
    proc = _run("""
        import sys, warnings
        sys.modules["ssa_fast._C"] = None  # makes `import ssa_fast._C` raise ImportError
        import torch, ssa_fast
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = ssa_fast.logmel_delta(torch.randn(4000))
            ssa_fast.logmel_delta(torch.randn(4000))
        msgs = [str(w.message) for w in caught if "reference backend" in str(w.message)]
        assert len(msgs) == 1, msgs          # said once
        assert "ssa_fast._C" in msgs[0], msgs
        assert y.shape == (3, 26, 40)
        try:
            ssa_fast.logmel_delta(torch.randn(4000), backend="cpp")
        except ssa_fast.BackendUnavailableError as e:
            assert "cpp" in str(e) and "ssa_fast._C" in str(e), e
            print("OK")
    """, SSA_FAST_BACKEND="")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only refusal of triton")
def test_triton_on_cpu_without_interpreter_fails_clearly():
    proc = _run("""
        import torch, ssa_fast
        try:
            ssa_fast.logmel_delta(torch.randn(4000), backend="triton")
        except ssa_fast.BackendUnavailableError as e:
            assert "TRITON_INTERPRET" in str(e), e
            print("OK")
    """, TRITON_INTERPRET="0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK"


def test_float64_is_not_for_triton():
    """Asked for, triton refuses float64 with the reason; the public ops say so too."""
    if "triton" not in ssa_fast.available_backends("cuda" if torch.cuda.is_available() else "cpu"):
        pytest.skip("triton backend unavailable here")
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ssa_fast.BackendUnavailableError, match="float32, got torch.float64"):
        _backend.resolve("op", dev, "triton", torch.float64)
    assert _backend.resolve("op", dev, "triton", torch.bfloat16) == "triton"
    with pytest.raises(ssa_fast.BackendUnavailableError, match="float64"):
        ssa_fast.logmel_delta(torch.randn(4000, dtype=torch.float64, device=dev),
                              backend="triton")
    with pytest.raises(ssa_fast.BackendUnavailableError, match="float64"):
        ssa_fast.l1_project_(torch.randn(3, 8, dtype=torch.float64, device=dev),
                             torch.randn(5, 8, dtype=torch.float64, device=dev), backend="triton")


def test_compile_marks_without_importing_dynamo():
    """The package marks its probes constant and its host-side set-up eager under torch.compile
    without importing torch._dynamo (about 2 s of every command-line process): importing it,
    its command line and a CPU feature computation leave dynamo unloaded."""
    code = ("import sys, torch, ssa_fast, ssa_fast.cli\n"
            "ssa_fast.logmel_delta(torch.randn(16000))\n"
            "ssa_fast.cli.build_parser()\n"
            "assert 'torch._dynamo' not in sys.modules, 'dynamo imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_constant_mark_is_dynamos_own():
    import torch._dynamo

    def ours():
        return 1

    def dynamos():
        return 1

    _backend.constant_under_compile(ours)
    torch._dynamo.assume_constant_result(dynamos)
    assert vars(ours) == vars(dynamos) == {"_dynamo_marked_constant": True}


def test_eager_under_compile_runs_eagerly_in_a_compiled_caller():
    """Like torch.compiler.disable: the wrapped function stays out of the compiled graphs (it
    runs eagerly between them) and its result flows on; eager calls are plain calls."""
    calls = []

    @_backend.eager_under_compile
    def host_side(n: int) -> torch.Tensor:
        calls.append(n)
        return torch.arange(n, dtype=torch.float32)

    def f(x):
        return x * host_side(x.shape[0]) + 1

    x = torch.ones(5)
    assert torch.equal(f(x), torch.arange(5.0) + 1) and calls == [5]
    graphs = []

    def record(gm, example_inputs):
        graphs.append([str(n.target) for n in gm.graph.nodes])
        return gm.forward

    compiled = torch.compile(f, backend=record)
    for _ in range(3):
        assert torch.equal(compiled(x), torch.arange(5.0) + 1)
    assert calls == [5, 5, 5, 5] and graphs  # each call ran it
    assert not any("arange" in t for g in graphs for t in g), graphs  # traced: in a graph
