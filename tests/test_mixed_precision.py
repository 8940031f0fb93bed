"""bf16 on every backend: a training step of every model under autocast, the fused ops with bf16
and mixed-dtype inputs without autocast, and the log-Mel's "features are not autocast" rule.

CPU autocast here; the same code paths serve CUDA autocast (the autograd boundaries switch
autocast off for the device of their inputs, whichever it is).

Tolerances are not guessed: the error of a fast backend's bf16 step (against the float32
reference step) must be at most twice the error of the reference backend's own bf16 step, plus a
small floor, per parameter.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import device_for

import ssa_fast
from ssa_fast.kernels.ssa_attention import ssa_attention_literal
from ssa_fast.models import ACRNN, SSACRNN

FRAMES, MELS, BATCH = 16, 40, 6
MODELS = ("acrnn", "acrnn-r", "ssa-crnn-r")


def _model(kind: str, backend: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "ssa-crnn-r":
        return SSACRNN(4, 3, "small", segment_frames=FRAMES, l1_constraint=True, backend=backend)
    return ACRNN(4, "small", l1_constraint=kind == "acrnn-r", backend=backend)


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 3, FRAMES, MELS, generator=g)
    return x, torch.arange(BATCH) % 4, torch.arange(BATCH) % 3


def train_step(model, bf16: bool, device: str = "cpu"):
    """One step as the training loop takes it: (loss, {name: grad}, {name: param after})."""
    model = model.to(device).train()
    x, y, s = (t.to(device) for t in _batch())
    opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
    with torch.autocast(torch.device(device).type, torch.bfloat16, enabled=bf16):
        out = model(x)
        loss = F.cross_entropy(out.emotion_logits.float(), y)
        if out.speaker_logits is not None:
            loss = loss + F.cross_entropy(out.speaker_logits.float(), s)
    opt.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().cpu().clone() for n, p in model.named_parameters()}
    opt.step()
    model.project_(out)
    params = {n: p.detach().cpu().clone() for n, p in model.named_parameters()}
    return loss.detach().cpu(), grads, params


def _rel_errors(grads, truth):
    """||g - truth|| / ||truth|| per parameter. A gradient that is zero in exact arithmetic (the
    bias of the linear layer before BatchNorm: ~1e-7 in float32) is measured against a
    thousandth of the whole model's gradient instead of its own rounding noise."""
    floor = 1e-3 * torch.cat([t.double().flatten() for t in truth.values()]).norm()
    return {n: float((grads[n].double() - truth[n].double()).norm()
                     / torch.maximum(truth[n].double().norm(), floor)) for n in truth}


@pytest.fixture(scope="module")
def fp32_and_reference_bf16():
    """Per model: the float32 reference step, the reference backend's bf16 step errors against
    it, and the reference backend's bf16 gradients themselves."""
    out = {}
    for kind in MODELS:
        _, truth, _ = train_step(_model(kind, "reference"), bf16=False)
        loss, grads, _ = train_step(_model(kind, "reference"), bf16=True)
        assert torch.isfinite(loss)
        out[kind] = truth, _rel_errors(grads, truth), grads
    return out


@pytest.mark.parametrize("kind", MODELS)
def test_bf16_training_step(kind, backend, fp32_and_reference_bf16):
    truth, ref_err, ref_grads = fp32_and_reference_bf16[kind]
    dev = device_for(backend)
    loss, grads, params = train_step(_model(kind, backend), bf16=True, device=dev)
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p).all() for p in params.values())
    err = _rel_errors(grads, truth)
    # bf16 keeps 8 bits of mantissa (relative rounding 2^-9 = 0.002); the reference's own error
    # over a whole network is a few times that, the floor covers the smallest tensors.
    bad = {n: (round(err[n], 4), round(ref_err[n], 4)) for n in truth
           if not err[n] <= 2 * ref_err[n] + 0.02}
    assert not bad, f"bf16 gradients further from float32 than the reference's: {bad}"
    # the bf16 step is a real bf16 step: the reference's own error is far above float32 rounding
    assert max(ref_err.values()) > 1e-3
    # and the tight check: the same bf16 step on the reference backend. Away from the fused
    # ops the two run the same bf16 torch code, so they differ only where the fused ops (fp32
    # inside) and the reference (autocast's per-op dtypes) round differently.
    # (not the bias of the linear layer before BatchNorm: its gradient is zero in exact
    # arithmetic, so both sides hold only rounding noise)
    same = _rel_errors(grads, ref_grads)
    far = {n: round(same[n], 4) for n in same
           if not same[n] <= 0.05 and not n.endswith("trunk.linear.bias")}
    assert not far, f"bf16 gradients differ from the reference backend's bf16 step: {far}"
    if kind != "acrnn":  # the projection ran: every class row has the same L1 norm
        name = "emotion_classifier.weight" if kind == "ssa-crnn-r" else "classifier.weight"
        norms = params[name].abs().sum(1)
        torch.testing.assert_close(norms, norms[0].expand_as(norms), rtol=1e-4, atol=0)


def _ssa_inputs(seed=3, B=3, T=10, d=12):
    g = torch.Generator().manual_seed(seed)
    h = [torch.randn(B, T, d, generator=g, dtype=torch.float64) for _ in range(2)]
    w_q = torch.randn(T, generator=g, dtype=torch.float64) / T
    ws = [torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) for _ in range(4)]
    return [*h, w_q, *ws]


def _grads_and_outputs(inputs, backend, dev):
    leaves = [t.detach().to(dev).requires_grad_(True) for t in inputs]
    c, alpha = ssa_fast.ssa_attention(*leaves, backend=backend)
    g = torch.Generator().manual_seed(5)
    gc = torch.randn(c.shape, generator=g, dtype=torch.float64)
    ga = torch.randn(alpha.shape, generator=g, dtype=torch.float64)
    # a non-contiguous output gradient, as autograd hands over after a transpose
    gc_t = gc.to(dev, c.dtype).T.contiguous().T
    torch.autograd.backward([c, alpha], [gc_t, ga.to(dev, alpha.dtype)])
    return (c, alpha), [t.grad for t in leaves]


@pytest.mark.parametrize("mixed", [False, True], ids=["all-bf16", "bf16-activations"])
def test_ssa_bf16_inputs_without_autocast(backend, mixed):
    """bf16 inputs (or bf16 activations with float32 weights) outside autocast: the forward
    and the backward follow the op's dtype rule (float32 inside, outputs in the activations'
    dtype, each gradient in its input's dtype) and stay as close to float64 as the reference's
    own bf16 run allows."""
    dev = device_for(backend)
    x64 = _ssa_inputs()
    low = [t.to(torch.bfloat16) if (i < 2 or not mixed) else t.float()
           for i, t in enumerate(x64)]
    # the truth: float64 from the bf16-rounded values
    truth_out, truth_grads = _grads_and_outputs([t.double() for t in low], "reference", "cpu")
    outs, grads = _grads_and_outputs(low, backend, dev)
    assert outs[0].dtype == outs[1].dtype == torch.bfloat16
    for g, t in zip(grads, low, strict=True):
        assert g.dtype == t.dtype and torch.isfinite(g).all()
    ref_outs, ref_grads = _grads_and_outputs([t.to(torch.bfloat16) for t in low], "reference",
                                             "cpu")
    for got, ref, want in zip([*outs, *grads], [*ref_outs, *ref_grads],
                              [*truth_out, *truth_grads], strict=True):
        want = want.detach().double()
        scale = want.norm().clamp_min(1e-12)
        err = float((got.detach().cpu().double() - want).norm() / scale)
        ref_err = float((ref.detach().double() - want).norm() / scale)
        assert err <= 2 * ref_err + 4e-3, (err, ref_err)


def test_ssa_fused_op_under_autocast_matches_float32(backend):
    """Under autocast the fused op computes in float32: with float32 inputs its output equals
    the float32 result to float32 rounding (the reference, plain torch, is autocast's)."""
    if backend == "reference":
        pytest.skip("the reference follows autocast's per-op rules")
    dev = device_for(backend)
    inputs = [t.float().to(dev) for t in _ssa_inputs(seed=7)]
    c32, a32 = ssa_fast.ssa_attention(*inputs, backend=backend)
    with torch.autocast(torch.device(dev).type, torch.bfloat16):
        c, a = ssa_fast.ssa_attention(*inputs, backend=backend)
    assert c.dtype == torch.float32
    torch.testing.assert_close(c, c32, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a, a32, rtol=1e-5, atol=1e-6)
    c_lit, _ = ssa_attention_literal(*[t.double().cpu() for t in inputs],
                                     1 / math.sqrt(inputs[0].shape[1]), "concat")
    torch.testing.assert_close(c.cpu().double(), c_lit, rtol=1e-4, atol=1e-5)


def test_logmel_features_ignore_autocast(backend):
    """Features are data: autocast does not lower their precision, on any backend."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(0)
    x = (0.3 * torch.randn(2, 4000, generator=g)).to(dev)
    plain = ssa_fast.logmel_delta(x, backend=backend)
    with torch.autocast(torch.device(dev).type, torch.bfloat16):
        auto = ssa_fast.logmel_delta(x, backend=backend)
    assert auto.dtype == torch.float32
    torch.testing.assert_close(auto, plain, rtol=0, atol=0)


def test_logmel_bf16_waveform_backward(backend):
    """A bf16 waveform that requires grad: features in float32, the gradient back in bf16,
    equal to the float32 gradient rounded (the op computes in float32 whatever the backend)."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(1)
    x = (0.3 * torch.randn(2, 3000, generator=g)).to(dev, torch.bfloat16)
    leaf = x.clone().requires_grad_(True)
    out = ssa_fast.logmel_delta(leaf, backend=backend)
    assert out.dtype == torch.float32
    gy = torch.randn(out.shape, generator=g).to(dev)
    out.backward(gy.permute(3, 2, 1, 0).contiguous().permute(3, 2, 1, 0))  # non-contiguous
    x32 = x.float().requires_grad_(True)
    ssa_fast.logmel_delta(x32, backend="reference").backward(gy)
    assert leaf.grad.dtype == torch.bfloat16
    assert x32.grad.abs().max() > 0
    torch.testing.assert_close(leaf.grad, x32.grad.to(torch.bfloat16), rtol=0, atol=0)
