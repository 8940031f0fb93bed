"""torch.compile (inductor, CPU) of a whole training step on every backend: forward, loss,
backward, optimiser step and the L1 projection, against the same step run eagerly.

Where the graph breaks (torch._dynamo.explain of this step, small preset, torch 2.13): 6 graphs,
5 breaks. Each nn.LSTM call breaks the graph (Dynamo does not trace RNNs unless
torch._dynamo.config.allow_rnn is set), so a CRNN trunk is compiled as "convolutions ..
BatchNorm" | the LSTM run eagerly | "attention .. classifier"; the SSA-CRNN forward alone is 3
graphs with 2 breaks, one per trunk. The step adds one break at optimizer.zero_grad (Dynamo
leaves it to eager on purpose); loss.backward runs the backward graphs AOTAutograd compiled with
the forward ones, the optimiser step is one compiled graph and the L1 projection another. The
fused ops never break a graph: they are registered custom ops. With allow_rnn=True the model's
forward compiles as one graph (fullgraph=True, checked once by hand), at several times the
compile time, so the library leaves the default.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import device_for, fresh_dispatch

import ssa_fast
from ssa_fast.models import SSACRNN
from ssa_fast.models.presets import Preset

FRAMES = 16


# The small preset's topology with two convolutions: the same graph structure (conv, pool, BN,
# LSTM, attention, SSA, projection), a third of the compile time.
PRESET = Preset(conv1_channels=8, conv_channels=8, n_convs=2, linear=16, lstm_hidden=8,
                embedding=8)
LR = 1e-3


def _model(backend):
    return SSACRNN(4, 3, PRESET, segment_frames=FRAMES, l1_constraint=True, backend=backend)


def _setup(backend):
    if backend not in ssa_fast.available_backends(device_for(backend)):
        pytest.skip(f"{backend} unavailable here")
    dev = device_for(backend)
    torch.manual_seed(0)
    model = _model(backend).to(dev)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, FRAMES, 40, generator=g).to(dev)
    y, s = (torch.arange(6) % 4).to(dev), (torch.arange(6) % 3).to(dev)
    return model, x, y, s


def make_step(model, opt):
    def step(x, y, s):
        out = model(x)
        loss = F.cross_entropy(out.emotion_logits, y) + F.cross_entropy(out.speaker_logits, s)
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.project_(out)
        return loss.detach()

    return step


@pytest.mark.slow
def test_compiled_training_step_matches_eager(backend):
    model, x, y, s = _setup(backend)
    twin = _model(backend).to(x.device)
    twin.load_state_dict(model.state_dict())
    eager = make_step(model, torch.optim.NAdam(model.parameters(), lr=LR))
    compiled = torch.compile(make_step(twin, torch.optim.NAdam(twin.parameters(), lr=LR)))
    steps = 2  # the second call runs the cached graphs
    for _ in range(steps):
        le, lc = eager(x, y, s), compiled(x, y, s)
        torch.testing.assert_close(lc, le, rtol=1e-4, atol=1e-5)
        for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-5,
                                       msg=lambda m, name=name: f"{name}: {m}")
    # NAdam's first steps move every weight by about +-lr whatever its gradient's size, so an
    # entry whose gradient is zero up to rounding (the bias before BatchNorm) may move either
    # way: only those get the loose bound; every other weight must match closely (a skipped
    # optimiser step would be off by ~lr).
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        noise_only = name.endswith("trunk.linear.bias")
        torch.testing.assert_close(b, a, rtol=0 if noise_only else 1e-4,
                                   atol=2 * steps * LR if noise_only else 1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
    norms = twin.emotion_classifier.weight.abs().sum(1)  # the projection ran inside
    torch.testing.assert_close(norms, norms[0].expand_as(norms), rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", ["cpp", None], ids=["cpp", "automatic"])
def test_graph_breaks_are_the_lstms_only(backend):
    """With the automatic choice (what the CLI runs) too: reading the choice in force
    (use_backend's context variable) once broke the graph in every fused op."""
    model, x, _, _ = _setup("cpp")
    model.ssa.backend = backend
    explained = torch._dynamo.explain(model)(x)
    assert explained.graph_break_count == 2  # the two trunks' LSTMs
    for reason in explained.break_reasons:
        frame = reason.user_stack[-1]
        assert frame.filename.endswith("models/layers.py") and "self.lstm(" in frame.line, reason


@pytest.mark.parametrize("backend", ["cpp", "triton"])
def test_logmel_compiles_to_one_op(backend):
    """The log-Mel launcher (FFT, padding and kernel for triton) is one opaque node in the
    graph, and the compiled features equal the eager ones."""
    from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank
    from ssa_fast.kernels.logmel_delta.function import logmel_delta_apply

    if backend not in ssa_fast.available_backends(device_for(backend)):
        pytest.skip(f"{backend} unavailable here")
    dev = device_for(backend)
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(2, 4000, generator=g)).to(dev)
    lengths = torch.tensor([4000, 2500], device=dev)
    window = analysis_window("hamming", 400, 512).float().to(dev)
    fb = mel_filterbank(16000, 512, 40).float().to(dev)

    def features(t):
        return logmel_delta_apply(backend, t * 0.5, lengths, window, fb, 160, True, 1e-10) + 1

    graphs = []

    def record(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fresh_dispatch()  # compiled before any eager call, as in a new process
    torch.compile(features, backend=record, fullgraph=True)(x)
    targets = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
    native = [t for t in targets if "ssa_fast" in t]
    assert len(native) == 1 and not any("fft" in t for t in targets), targets
    torch.testing.assert_close(torch.compile(features, fullgraph=True)(x), features(x))


def _unresolvable_while_tracing(monkeypatch):
    """Make every dispatcher query and import that the backend choice could make raise inside a
    traced region, as the CUDA-kernel query did under fake tensors on torch 2.11 ("operator
    ssa_fast::ssa_attention does not exist"); outside tracing they work as usual."""
    import importlib

    from torch._guards import TracingContext

    from ssa_fast import _backend

    def guarded(fn, ours=lambda args: True):
        def call(*args, **kwargs):
            if TracingContext.try_get() is not None and ours(args):
                raise RuntimeError(f"{fn.__name__}{args} called while tracing")
            return fn(*args, **kwargs)
        return call

    def ours(args):  # (dynamo itself asks the dispatcher and imports while it traces)
        name = str(args[0])
        return name.startswith(("ssa_fast::", "triton")) or name == "ssa_fast._C"

    # (fake tensors ask it too, by DispatchKey: only the by-name CUDA query is the library's)
    monkeypatch.setattr(torch._C, "_dispatch_has_kernel_for_dispatch_key",
                        guarded(torch._C._dispatch_has_kernel_for_dispatch_key,
                                lambda args: ours(args) and args[1] == "CUDA"))
    monkeypatch.setattr(torch._C, "_dispatch_get_registrations_for_dispatch_key",
                        guarded(torch._C._dispatch_get_registrations_for_dispatch_key))
    monkeypatch.setattr(importlib, "import_module", guarded(importlib.import_module, ours))
    # as in a fresh process: nothing probed yet but the extension (loaded with ssa_fast.kernels)
    monkeypatch.setattr(_backend, "_status",
                        {k: v for k, v in _backend._status.items() if k == "ssa_fast._C"})
    return _backend


def test_backend_choice_queries_nothing_while_tracing(monkeypatch):
    """The automatic choice for CUDA tensors, made inside a compiled caller once the device was
    prepared (what the training loop does before torch.compile), is plain Python: no dispatcher
    query, no import (the class of the torch 2.11 crash of --compile on CUDA)."""
    from ssa_fast.kernels.l1_project.function import KERNELS as l1_project
    from ssa_fast.kernels.logmel_delta.function import KERNELS as logmel_delta
    from ssa_fast.kernels.ssa_attention.function import CORE as ssa_attention

    _backend = _unresolvable_while_tracing(monkeypatch)
    cuda = torch.device("cuda")
    _backend.prepare(cuda)
    # each op's rules, with the parameters its own rules read
    ops = ((ssa_attention, {}), (l1_project, {}), (logmel_delta, {"n_fft": 512}))
    eager = [_backend.resolve(op, cuda, None, torch.float32, 1000, **call) for op, call in ops]

    def choose(x):
        names = [_backend.resolve(op, cuda, None, torch.float32, 1000, **call)
                 for op, call in ops]
        return x + 1, names

    torch._dynamo.reset()
    _, traced = torch.compile(choose, backend="eager", fullgraph=True)(torch.zeros(2))
    assert traced == eager
    assert not _backend.cuda_kernel_registered("ssa_attention")  # no native op of that name


@pytest.mark.slow
def test_compiled_training_loop_step_queries_nothing_while_tracing(monkeypatch):
    """The training loop's compiled step (the automatic backend choice, as the CLI runs it)
    with every backend query made unresolvable while tracing: it trains, and its losses equal
    the eager step's."""
    from ssa_fast.train.loop import TrainConfig, _step_model, train_step

    _unresolvable_while_tracing(monkeypatch)
    torch._dynamo.reset()
    _, x, y, s = _setup("cpp")
    model, twin = _model(None), _model(None)
    twin.load_state_dict(model.state_dict())
    losses = []
    for m, compile in ((model, False), (twin, "default")):
        cfg = TrainConfig(model="ssa-crnn-r", compile=compile)
        opt = torch.optim.NAdam(m.parameters(), lr=LR)
        step_model = _step_model(m, cfg)
        losses.append([train_step(step_model, m, opt, x, y, s).loss for _ in range(2)])
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-4, atol=1e-5)
