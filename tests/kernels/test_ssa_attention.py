"""ssa_attention: every backend against the paper-literal reference, values and gradients."""

import math

import pytest
import torch
from helpers import device_for, fresh_dispatch

import ssa_fast
from ssa_fast.kernels.ssa_attention import ssa_attention_literal

SHAPES = [(1, 1, 5), (5, 1, 16), (2, 7, 20), (1, 33, 17), (3, 64, 48), (2, 150, 256)]


def make_inputs(B, T, d, dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    h_em = torch.randn(B, T, d, generator=g, dtype=torch.float64)
    h_sp = torch.randn(B, T, d, generator=g, dtype=torch.float64)
    w_q = torch.randn(T, generator=g, dtype=torch.float64)
    ws = [torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d) for _ in range(4)]
    return [t.to(device, dtype) for t in (h_em, h_sp, w_q, *ws)]


def run_with_grads(fn, inputs, gc, ga):
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    c, alpha = fn(*leaves)
    ((c * gc).sum() + (alpha * ga).sum()).backward()
    return c.detach(), alpha.detach(), [t.grad for t in leaves]


def tolerance(backend):
    return (2e-4, 1e-4) if backend == "triton" else (1e-10, 1e-10)  # (rtol, atol)


@pytest.mark.parametrize("combine", ["concat", "sum"])
@pytest.mark.parametrize("B, T, d", SHAPES)
def test_matches_literal_forward_and_backward(backend, B, T, d, combine):
    dev = device_for(backend)
    dtype = torch.float32 if backend == "triton" else torch.float64
    inputs = make_inputs(B, T, d)
    width = 2 * d if combine == "concat" else d
    g = torch.Generator().manual_seed(1)
    gc = torch.randn(B, width, generator=g, dtype=torch.float64)
    ga = torch.randn(B, 2 * T, generator=g, dtype=torch.float64)
    scale = 1 / math.sqrt(T)
    ref = run_with_grads(lambda *a: ssa_attention_literal(*a, scale, combine), inputs, gc, ga)
    ours = run_with_grads(lambda *a: ssa_fast.ssa_attention(*a, combine=combine, backend=backend),
                          [t.to(dev, dtype) for t in inputs], gc.to(dev, dtype),
                          ga.to(dev, dtype))
    rtol, atol = tolerance(backend)
    names = ["c", "alpha"] + [f"grad {n}" for n in ("h_em", "h_sp", "w_q", "w_k_em", "w_k_sp",
                                                      "w_v_em", "w_v_sp")]
    for name, a, b in zip(names, [ours[0], ours[1], *ours[2]], [ref[0], ref[1], *ref[2]],
                          strict=True):
        scale_b = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a.cpu().double() / scale_b, b / scale_b, rtol=rtol,
                                   atol=atol, msg=lambda m, n=name: f"{backend} {n}: {m}")
    assert torch.allclose(ours[1].sum(-1).cpu().double(), torch.ones(B, dtype=torch.float64),
                          atol=1e-5)


def test_custom_scale_and_literal_scale_argument(backend):
    dev = device_for(backend)
    dtype = torch.float32 if backend == "triton" else torch.float64
    inputs = make_inputs(2, 9, 12)
    c_ref, a_ref = ssa_attention_literal(*inputs, 0.37, "concat")
    c, a = ssa_fast.ssa_attention(*[t.to(dev, dtype) for t in inputs], scale=0.37,
                                  backend=backend)
    torch.testing.assert_close(c.cpu().double(), c_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a.cpu().double(), a_ref, rtol=1e-4, atol=1e-6)


def test_batch_equals_stacked_items(backend):
    dev = device_for(backend)
    inputs = [t.float().to(dev) for t in make_inputs(4, 23, 32, seed=5)]
    c, a = ssa_fast.ssa_attention(*inputs, backend=backend)
    for b in range(4):
        cb, ab = ssa_fast.ssa_attention(inputs[0][b:b + 1], inputs[1][b:b + 1], *inputs[2:],
                                        backend=backend)
        torch.testing.assert_close(c[b:b + 1], cb, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a[b:b + 1], ab, rtol=1e-5, atol=1e-7)


def test_triton_splits_over_time_agree():
    if "triton" not in ssa_fast.available_backends(device_for("triton")):
        pytest.skip("triton backend unavailable here")
    from ssa_fast.kernels.ssa_attention.reference import (
        ssa_core_backward_reference,
        ssa_core_reference,
    )
    from ssa_fast.kernels.ssa_attention.triton import ssa_core_bwd_triton, ssa_core_fwd_triton

    dev = device_for("triton")
    g = torch.Generator().manual_seed(3)
    B, T, d = 2, 45, 24
    h_em, h_sp = (torch.randn(B, T, d, generator=g) for _ in range(2))
    qk_em, qk_sp, dp_em, dp_sp = (torch.randn(B, d, generator=g) for _ in range(4))
    dalpha = torch.randn(B, 2 * T, generator=g)
    ref = ssa_core_reference(h_em.double(), h_sp.double(), qk_em.double(), qk_sp.double(), 0.2)
    ref_b = ssa_core_backward_reference(h_em.double(), h_sp.double(), qk_em.double(),
                                        qk_sp.double(), ref[2], ref[0], ref[1], dp_em.double(),
                                        dp_sp.double(), dalpha.double(), 0.2)
    on = [t.to(dev) for t in (h_em, h_sp, qk_em, qk_sp)]
    for splits, block_t in [(1, 16), (2, 8), (3, 16), (45, 1), (7, 4)]:
        out = ssa_core_fwd_triton(*on, 0.2, splits=splits, block_t=block_t)
        for a, b in zip(out, ref, strict=True):
            torch.testing.assert_close(a.cpu().double(), b, rtol=1e-4, atol=1e-5)
        grads = ssa_core_bwd_triton(*on, out[2], out[0], out[1], dp_em.to(dev), dp_sp.to(dev),
                                    dalpha.to(dev), 0.2, splits=splits, block_t=block_t)
        for a, b in zip(grads, ref_b, strict=True):
            torch.testing.assert_close(a.cpu().double(), b, rtol=1e-4, atol=1e-5)


def test_gradcheck_cpp_float64():
    inputs = [t.requires_grad_(True) for t in make_inputs(2, 5, 6, seed=2)]
    for combine in ("concat", "sum"):
        assert torch.autograd.gradcheck(
            lambda *a, c=combine: ssa_fast.ssa_attention(*a, combine=c, backend="cpp"),
            inputs, atol=1e-7)


@pytest.mark.parametrize("backend_name", ["cpp", "triton"])
def test_torch_compile_fullgraph(backend_name):
    if backend_name not in ssa_fast.available_backends(device_for(backend_name)):
        pytest.skip(f"{backend_name} unavailable here")
    dev = device_for(backend_name)
    inputs = [t.float().to(dev) for t in make_inputs(3, 10, 16, seed=6)]

    def loss(*a):
        c, alpha = ssa_fast.ssa_attention(*a, backend=backend_name)
        return (c.square().sum() + alpha[:, :3].sum()) * 0.5

    fresh_dispatch()  # compiled first, as in a new process (the lookup cache once broke this)
    compiled = torch.compile(loss, fullgraph=True)
    eager_leaves = [t.clone().requires_grad_(True) for t in inputs]
    comp_leaves = [t.clone().requires_grad_(True) for t in inputs]
    le, lc = loss(*eager_leaves), compiled(*comp_leaves)
    le.backward()
    lc.backward()
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
    for a, b in zip(comp_leaves, eager_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_bf16_inputs_run_and_stay_close(backend):
    dev = device_for(backend)
    inputs = make_inputs(2, 12, 16, seed=8)
    c_ref, _ = ssa_attention_literal(*inputs, 1 / math.sqrt(12), "concat")
    c, alpha = ssa_fast.ssa_attention(*[t.to(dev, torch.bfloat16) for t in inputs],
                                      backend=backend)
    assert c.dtype == torch.bfloat16 and alpha.dtype == torch.bfloat16
    assert (c.cpu().double() - c_ref).abs().max() < 0.1 * c_ref.abs().max()


@pytest.mark.parametrize("mutate, error, match", [
    (lambda a: a.__setitem__(0, a[0][..., :-1]), ValueError, r"h_sp must have shape"),
    (lambda a: a.__setitem__(2, a[2][:-1]), ValueError, r"w_q must have shape \(7,\)"),
    (lambda a: a.__setitem__(3, a[3][:, :-1]), ValueError, r"w_k_em must have shape \(20, 20\)"),
    (lambda a: a.__setitem__(6, a[6].long()), TypeError, "w_v_sp must be floating"),
    (lambda a: a.__setitem__(1, "h"), TypeError, "h_sp must be a torch.Tensor"),
    (lambda a: a.__setitem__(0, a[0][0]), ValueError, r"h_em must be a tensor of shape"),
])
def test_bad_input(mutate, error, match):
    args = make_inputs(2, 7, 20)
    mutate(args)
    with pytest.raises(error, match=match):
        ssa_fast.ssa_attention(*args)


def test_bad_options():
    args = make_inputs(2, 7, 20)
    with pytest.raises(ValueError, match="combine"):
        ssa_fast.ssa_attention(*args, combine="mean")
    with pytest.raises(ValueError, match="scale"):
        ssa_fast.ssa_attention(*args, scale=float("nan"))
    for bad in ("abc", torch.ones(2), True):  # (float()'s own errors named nothing)
        with pytest.raises(TypeError, match="scale must be a real number"):
            ssa_fast.ssa_attention(*args, scale=bad)
    import decimal

    import numpy as np
    want, _ = ssa_fast.ssa_attention(*args, scale=0.5)
    for ok in (torch.tensor(0.5), np.array(0.5), np.float32(0.5), decimal.Decimal("0.5")):
        torch.testing.assert_close(ssa_fast.ssa_attention(*args, scale=ok)[0], want)
    with pytest.raises(ValueError, match="non-empty"):
        ssa_fast.ssa_attention(*make_inputs(0, 7, 20))


def test_mixed_float32_float64_inputs_pick_a_backend_for_the_compute_dtype():
    """A float64 weight makes the op compute in float64 (function.py's rule): the backend is
    chosen for that dtype, so the triton backend (float32 only) is refused up front instead of
    failing inside on a dtype mismatch, and the automatic choice runs and matches float64."""
    torch.manual_seed(0)
    B, T, d = 2, 5, 8
    h = torch.randn(B, T, d)
    w = [torch.randn(d, d, dtype=torch.float64) for _ in range(4)]
    wq = torch.randn(T)
    if "triton" in ssa_fast.available_backends("cpu"):
        with pytest.raises(ssa_fast.BackendUnavailableError, match="float64"):
            ssa_fast.ssa_attention(h, h, wq, *w, backend="triton")
    c, _ = ssa_fast.ssa_attention(h, h, wq, *w)
    c64, _ = ssa_fast.ssa_attention(h.double(), h.double(), wq.double(), *w, backend="reference")
    assert torch.allclose(c.double(), c64, atol=1e-5)


@pytest.mark.parametrize("dtypes", [(torch.bfloat16, torch.float32), (torch.float32, torch.float64),
                                    (torch.float16, torch.float32)])
def test_mixed_dtypes_follow_one_rule_on_every_backend(backend, dtypes):
    """Activations in one dtype and weights in another (bf16 activations beside float32
    weights, as autocast leaves them): every backend computes in the rule's dtype and returns
    the activations' dtype; the reference raised 'expected scalar type'."""
    h_dtype, w_dtype = dtypes
    if backend == "triton" and torch.float64 in dtypes:
        pytest.skip("the triton backend computes float32 (refused up front: test above)")
    dev = device_for(backend)
    B, T, d = 3, 7, 16
    h_em, h_sp, wq, *w = make_inputs(B, T, d, dtype=torch.float64, seed=5)
    args = [h_em.to(h_dtype), h_sp.to(h_dtype), wq.to(w_dtype), *(x.to(w_dtype) for x in w)]
    args = [a.to(dev).requires_grad_() for a in args]
    c, alpha = ssa_fast.ssa_attention(*args, backend=backend)
    assert c.dtype == alpha.dtype == h_dtype
    (c.float().sum() + alpha.float().square().sum()).backward()
    assert all(a.grad is not None and a.grad.dtype == a.dtype for a in args)
    exact = ssa_fast.ssa_attention(*(a.detach().double().cpu() for a in args),
                                   backend="reference")[0]
    tol = 2e-2 if torch.bfloat16 in dtypes or torch.float16 in dtypes else 1e-5
    torch.testing.assert_close(c.detach().cpu().double(), exact, atol=tol, rtol=tol)


def _triton_or_skip():
    if "triton" not in ssa_fast.available_backends(device_for("triton")):
        pytest.skip("triton backend unavailable here")


@pytest.mark.parametrize("combine", ["concat", "sum"])
@pytest.mark.parametrize("dalpha", ["random", "broadcast", "none"])
def test_triton_one_launch_path_matches_the_two_kernel_path(combine, dalpha):
    """The one-launch kernels (design.md section 10) and the two-kernel path of the triton backend
    give the same values and gradients, whatever output gradients autograd hands over (alpha's
    random, broadcast as from alpha.sum(), or absent)."""
    _triton_or_skip()
    from ssa_fast.kernels.ssa_attention.function import SSAAttentionFunction, SSAFusedFunction

    dev = device_for("triton")
    B, T, d = 3, 19, 24
    inputs = [t.float().to(dev) for t in make_inputs(B, T, d, seed=11)]
    g = torch.Generator().manual_seed(12)
    gc = torch.randn(B, 2 * d if combine == "concat" else d, generator=g).to(dev)
    ga = {"random": torch.randn(B, 2 * T, generator=g).to(dev),
          "broadcast": torch.full((1, 1), 0.3, device=dev).expand(B, 2 * T),
          "none": None}[dalpha]

    def run(apply):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        c, a = apply(*leaves, T ** -0.5, combine)
        outs, grads = ([c, a], [gc, ga]) if ga is not None else ([c], [gc])
        torch.autograd.backward(outs, grads)
        return [c.detach(), a.detach()] + [t.grad for t in leaves]

    one = run(SSAFusedFunction.apply)
    two = run(lambda *a: SSAAttentionFunction.apply(*a, "triton"))
    for x, y in zip(one, two, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


# Tensor operations that launch no kernel (allocations, views, metadata).
_NO_KERNEL = ("aten.empty", "aten.detach", "aten.promote_types", "aten.unbind", "aten.expand",
              "aten.view", "aten.alias", "aten.t.", "aten.transpose", "aten.select")


def test_triton_training_batch_runs_one_kernel_per_direction(monkeypatch):
    """At a batch of at most one program per SM the triton backend's forward is one Triton launch
    and no other kernel, its backward one Triton launch and the zeroing of its two counters (a
    memset): what the GPU pays in launches per call, checked here by counting."""
    _triton_or_skip()
    from torch.utils._python_dispatch import TorchDispatchMode

    from ssa_fast.kernels.ssa_attention import triton as tr

    launches: list[str] = []
    in_kernel = [False]  # (Triton's interpreter runs torch operations of its own in a launch)

    class Counting:
        def __init__(self, name):
            self.name, self.kernel = name, getattr(tr, name)

        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                launches.append(self.name)
                in_kernel[0] = True
                try:
                    return self.kernel[grid](*args, **kwargs)
                finally:
                    in_kernel[0] = False
            return launch

    for name in ("_ssa_fused_fwd_kernel", "_ssa_fused_bwd_kernel", "_ssa_fwd_kernel",
                 "_ssa_bwd_kernel"):
        monkeypatch.setattr(tr, name, Counting(name))

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not in_kernel[0] and not str(func).startswith(_NO_KERNEL):
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    dev = device_for("triton")
    B, T, d = 2, 9, 16
    leaves = [t.float().to(dev).requires_grad_(True) for t in make_inputs(B, T, d, seed=4)]
    g = torch.Generator().manual_seed(4)
    gc, ga = torch.randn(B, 2 * d, generator=g).to(dev), torch.randn(B, 2 * T, generator=g).to(dev)
    with Ops() as fwd:
        c, a = ssa_fast.ssa_attention(*leaves, backend="triton")
    assert fwd.ops == ["ssa_fast.ssa_fused_fwd_triton.default"] and launches == [
        "_ssa_fused_fwd_kernel"]
    with Ops() as bwd:
        torch.autograd.backward([c, a], [gc, ga])
    assert bwd.ops == ["ssa_fast.ssa_fused_bwd_triton.default"]
    assert launches == ["_ssa_fused_fwd_kernel", "_ssa_fused_bwd_kernel"]
    # inside the registered ops (opaque above): allocations, and the counters' zeroing
    with Ops() as inner:
        out = tr.ssa_fused_fwd_triton(*[t.detach() for t in leaves], T ** -0.5, False)
    assert inner.ops == []
    with Ops() as inner:
        tr.ssa_fused_bwd_triton(*[t.detach() for t in leaves], out[2], out[1], gc, ga, T ** -0.5,
                                False)
    assert len(inner.ops) == 1 and "zero" in inner.ops[0], inner.ops


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_triton_one_launch_path_is_cuda_graph_capturable():
    """Forward and backward at the training shape captured in one CUDA graph and replayed on new
    inputs equal eager calls (no host synchronisation, no allocation outside the graph pool)."""
    B, T, d = 40, 150, 256
    leaves = [t.float().cuda().requires_grad_(True) for t in make_inputs(B, T, d, seed=9)]
    gc = torch.randn(B, 2 * d, device="cuda")

    def step():
        c, a = ssa_fast.ssa_attention(*leaves, backend="triton")
        return torch.autograd.grad((c * gc).sum() + a.sum(), leaves)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = step()
    with torch.no_grad():
        for t in leaves:
            t.mul_(0.5)
    graph.replay()
    for got, want in zip(captured, step(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_double_backward_is_exact_or_refused(backend):
    """A gradient penalty (backward with create_graph=True, then the gradient of the penalty)
    differentiated the kernels' backwards, whose outputs counted as constants: on cpp the
    second-order gradient was about 5x too small, with only a generic torch warning. The
    reference's is exact; the kernel backends refuse it, naming the reference."""
    dev = device_for(backend)
    dtype = torch.float32 if backend == "triton" else torch.float64
    inputs = [t.to(dev, dtype).requires_grad_(True) for t in make_inputs(2, 6, 8)]

    def penalty_grad(name):
        c, _ = ssa_fast.ssa_attention(*inputs, backend=name)
        (g,) = torch.autograd.grad(c.square().sum(), inputs[0], create_graph=True)
        return torch.autograd.grad(g.square().sum(), inputs[3])[0]

    if backend == "reference":
        def literal(*x):
            c, _ = ssa_attention_literal(*x, 1 / math.sqrt(6), "concat")  # (T = 6)
            return c
        c = literal(*inputs)
        (g,) = torch.autograd.grad(c.square().sum(), inputs[0], create_graph=True)
        want = torch.autograd.grad(g.square().sum(), inputs[3])[0]
        torch.testing.assert_close(penalty_grad("reference"), want)
    else:
        with pytest.raises(RuntimeError, match=f"the {backend} backend has no double backward"):
            penalty_grad(backend)
    # a plain backward is as it was
    c, _ = ssa_fast.ssa_attention(*inputs, backend=backend)
    c.sum().backward()
    assert all(t.grad is not None for t in inputs)
