"""The large-batch path of the triton backend's SSA (triton_large.py) against the paper-literal
reference: values and all seven gradients, odd sizes, tiles that do not divide T, every form of
alpha's gradient, half inputs, batch consistency, NaN propagation, and how it is chosen."""

import math

import pytest
import torch
from helpers import device_for, fresh_dispatch
from test_ssa_attention import make_inputs

import ssa_fast
from ssa_fast.kernels._triton_common import ssa_large_launch
from ssa_fast.kernels.ssa_attention import ssa_attention_literal

if "triton" not in ssa_fast.available_backends(device_for("triton")):
    pytest.skip("triton backend unavailable here", allow_module_level=True)

from ssa_fast.kernels.ssa_attention import triton_large as tl_mod  # noqa: E402
from ssa_fast.kernels.ssa_attention.function import (  # noqa: E402
    LARGE_ENV,
    ONE_LAUNCH_ENV,
    SSAAttentionFunction,
)
from ssa_fast.kernels.ssa_attention.triton_large import SSALargeFunction  # noqa: E402

DEV = device_for("triton")
NAMES = ["c", "alpha"] + [f"grad {n}" for n in ("h_em", "h_sp", "w_q", "w_k_em", "w_k_sp",
                                                  "w_v_em", "w_v_sp")]


def small_tiles(monkeypatch, block_t):
    """Tiles of block_t rows (the interpreter's default tile covers T whole): several tiles per
    item, the last one partly masked, and K2 launched over several tiles per item."""
    monkeypatch.setattr(tl_mod, "large_launch", lambda h: ssa_large_launch(
        h.shape[1], h.shape[2], interpret=True)._replace(block_t=block_t,
                                                         block_t_em=max(1, block_t // 2)))


def output_grads(B, T, d, combine, dalpha, seed=1):
    g = torch.Generator().manual_seed(seed)
    gc = torch.randn(B, 2 * d if combine == "concat" else d, generator=g, dtype=torch.float64)
    ga = {"random": torch.randn(B, 2 * T, generator=g, dtype=torch.float64),
          "broadcast": torch.full((1, 1), 0.3, dtype=torch.float64).expand(B, 2 * T),
          "none": None}[dalpha]
    return gc, ga


def run(fn, inputs, gc, ga):
    """c, alpha and the seven input gradients of (c, alpha) -> <c, gc> + <alpha, ga>."""
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    c, a = fn(*leaves)
    outs, grads = ([c, a], [gc, ga]) if ga is not None else ([c], [gc])
    torch.autograd.backward(outs, grads)
    return [c.detach(), a.detach()] + [t.grad for t in leaves]


def large(combine, scale=None):
    def fn(*a):
        s = 1 / math.sqrt(a[0].shape[1]) if scale is None else scale
        return SSALargeFunction.apply(*a, s, combine)
    return fn


def assert_matches(ours, ref, rtol, atol, what=""):
    for name, a, b in zip(NAMES[:len(ours)], ours, ref, strict=True):
        scale_b = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a.cpu().double() / scale_b, b / scale_b, rtol=rtol, atol=atol,
                                   msg=lambda m, n=name: f"{what} {n}: {m}")


@pytest.mark.parametrize("dalpha", ["random", "broadcast", "none"])
@pytest.mark.parametrize("combine", ["concat", "sum"])
@pytest.mark.parametrize("B, T, d, block_t", [
    (1, 1, 5, None), (5, 1, 16, None), (3, 33, 20, 8), (1, 37, 17, 16), (2, 150, 100, 64),
    (4, 64, 48, 16),
])
def test_large_matches_literal(monkeypatch, B, T, d, block_t, combine, dalpha):
    if block_t is not None:
        small_tiles(monkeypatch, block_t)
    inputs = make_inputs(B, T, d, seed=B * 100 + T)
    gc, ga = output_grads(B, T, d, combine, dalpha)
    scale = 1 / math.sqrt(T)
    ref = run(lambda *a: ssa_attention_literal(*a, scale, combine), inputs, gc, ga)
    f = [t.to(DEV, torch.float32) for t in inputs]
    ours = run(large(combine), f, gc.to(DEV, torch.float32),
               None if ga is None else ga.to(DEV, torch.float32))
    assert_matches(ours, ref, 2e-4, 1e-4, f"B={B} T={T} d={d}")
    assert ours[0].dtype == torch.float32 and ours[1].dtype == torch.float32
    assert all(g.dtype == torch.float32 for g in ours[2:])


@pytest.mark.parametrize("combine", ["concat", "sum"])
def test_large_bf16_activations(monkeypatch, combine):
    """h in bfloat16, weights float32 (bf16-autocast training): computed in float32 from the
    bf16 values, so it matches the literal form of the rounded inputs to float32 rounding but
    for the bf16 rounding of the outputs and of h's gradients, which come back in bfloat16."""
    small_tiles(monkeypatch, 16)
    B, T, d = 3, 41, 24
    inputs = make_inputs(B, T, d, seed=21)
    inputs[0], inputs[1] = (t.to(torch.bfloat16).double() for t in inputs[:2])
    gc, ga = output_grads(B, T, d, combine, "random")
    ref = run(lambda *a: ssa_attention_literal(*a, T ** -0.5, combine), inputs, gc, ga)
    args = [t.to(DEV, torch.bfloat16 if i < 2 else torch.float32) for i, t in enumerate(inputs)]
    ours = run(large(combine), args, gc.to(DEV, torch.bfloat16), ga.to(DEV, torch.bfloat16))
    assert [t.dtype for t in ours] == [torch.bfloat16] * 4 + [torch.float32] * 5
    # bf16 outputs: 8 bits of mantissa (2^-8 relative); the float32 ones as in float32
    assert_matches(ours[:4], ref[:4], 1e-2, 1e-2, "bf16")
    # the output gradients were bf16 too (rounded the same way on both sides), so the weights'
    # gradients agree to float32 rounding
    ref_w = run(lambda *a: ssa_attention_literal(*a, T ** -0.5, combine), inputs,
                gc.to(torch.bfloat16).double(), ga.to(torch.bfloat16).double())
    for name, a, b in zip(NAMES[4:], ours[4:], ref_w[4:], strict=True):
        s = b.abs().max().clamp(min=1.0)
        torch.testing.assert_close(a.cpu().double() / s, b / s, rtol=2e-4, atol=1e-4,
                                   msg=lambda m, n=name: f"bf16 {n}: {m}")


def test_large_under_bf16_autocast_equals_float32():
    """Autocast does not reach inside the op: float32 inputs under bf16 autocast give the float32
    results (the dtype rule of function.py)."""
    B, T, d = 5, 12, 16
    inputs = [t.float().to(DEV) for t in make_inputs(B, T, d, seed=3)]
    with torch.autocast(DEV, dtype=torch.bfloat16):
        c_ac, a_ac = SSALargeFunction.apply(*inputs, T ** -0.5, "concat")
    c, a = SSALargeFunction.apply(*inputs, T ** -0.5, "concat")
    assert c_ac.dtype == torch.float32
    torch.testing.assert_close(c_ac, c, rtol=0, atol=0)
    torch.testing.assert_close(a_ac, a, rtol=0, atol=0)


def test_large_agrees_with_two_kernel_path(monkeypatch):
    """The large-batch path and the two-kernel path of the same backend: same values and
    gradients to float32 rounding (several tiles per item)."""
    small_tiles(monkeypatch, 32)
    B, T, d = 7, 150, 64
    inputs = [t.float().to(DEV) for t in make_inputs(B, T, d, seed=13)]
    gc, ga = (t.float().to(DEV) for t in output_grads(B, T, d, "concat", "random", seed=14))
    one = run(large("concat"), inputs, gc, ga)
    two = run(lambda *a: SSAAttentionFunction.apply(*a, T ** -0.5, "concat", "triton"), inputs,
              gc, ga)
    for name, x, y in zip(NAMES, one, two, strict=True):
        s = y.abs().max().clamp(min=1.0)  # (sums over 1050 items and rows: scaled)
        torch.testing.assert_close(x / s, y / s, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, n=name: f"{n}: {m}")


def test_large_item_independent_of_batch(monkeypatch):
    """Item i's output, alpha and gradients of h do not depend on the rest of the batch; the
    weights' gradients are the sums of the items' (B odd, several tiles)."""
    small_tiles(monkeypatch, 16)
    B, T, d = 5, 23, 32
    inputs = [t.float().to(DEV) for t in make_inputs(B, T, d, seed=5)]
    gc, ga = (t.float().to(DEV) for t in output_grads(B, T, d, "sum", "random", seed=6))
    whole = run(large("sum"), inputs, gc, ga)
    weight_sums = [torch.zeros_like(g) for g in whole[4:]]
    for b in range(B):
        sl = slice(b, b + 1)
        item = run(large("sum"), [inputs[0][sl], inputs[1][sl], *inputs[2:]], gc[sl], ga[sl])
        for x, y in zip(item[:4], whole[:4], strict=True):
            torch.testing.assert_close(x, y[sl], rtol=1e-5, atol=1e-6)
        for acc, g in zip(weight_sums, item[4:], strict=True):
            acc += g
    for x, y in zip(weight_sums, whole[4:], strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_large_propagates_nan():
    """A NaN in one item's activations makes that item's output and gradients of h NaN and
    leaves the other items finite, as the other paths do; the weights' gradients (sums over the
    batch) are NaN."""
    B, T, d = 6, 9, 8
    inputs = [t.float().to(DEV) for t in make_inputs(B, T, d, seed=7)]
    inputs[0][2, 4, 1] = float("nan")
    gc, ga = (t.float().to(DEV) for t in output_grads(B, T, d, "concat", "random", seed=8))
    c, a, dh_em, dh_sp, *dw = run(large("concat"), inputs, gc, ga)
    rest = [0, 1, 3, 4, 5]
    for t in (c, a, dh_em, dh_sp):
        assert torch.isfinite(t[rest]).all()
        assert torch.isnan(t[2]).all()
    assert all(torch.isnan(g).any() for g in dw)


class _Counting:
    def __init__(self, launches, name):
        self.launches, self.name, self.kernel = launches, name, getattr(tl_mod, name)

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches.append(self.name)
            return self.kernel[grid](*args, **kwargs)
        return launch


@pytest.mark.parametrize("asked", [False, True])
def test_large_path_is_chosen_only_when_asked(monkeypatch, asked):
    """SSA_FAST_SSA_LARGE=1 sends the batches the one-launch kernels leave (B > the
    interpreter's 4 SMs) to the large-batch path; otherwise the two-kernel path runs, as before.
    Both match the literal form."""
    launches: list[str] = []
    for name in ("_ssa_large_fwd_kernel", "_ssa_large_bwd_rows_kernel",
                 "_ssa_large_bwd_em_kernel"):
        monkeypatch.setattr(tl_mod, name, _Counting(launches, name))
    monkeypatch.delenv(ONE_LAUNCH_ENV, raising=False)  # (on a GPU B = 6 would be theirs)
    if asked:
        monkeypatch.setenv(LARGE_ENV, "1")
    else:
        monkeypatch.delenv(LARGE_ENV, raising=False)
    B, T, d = 6, 10, 12
    inputs = make_inputs(B, T, d, seed=9)
    gc, ga = output_grads(B, T, d, "concat", "random", seed=10)
    ref = run(lambda *a: ssa_attention_literal(*a, T ** -0.5, "concat"), inputs, gc, ga)
    ours = run(lambda *a: ssa_fast.ssa_attention(*a, backend="triton"),
               [t.float().to(DEV) for t in inputs], gc.float().to(DEV), ga.float().to(DEV))
    assert_matches(ours, ref, 2e-4, 1e-4)
    assert launches == (["_ssa_large_fwd_kernel", "_ssa_large_bwd_rows_kernel",
                         "_ssa_large_bwd_em_kernel"] if asked else [])


def test_large_torch_compile_fullgraph(monkeypatch):
    monkeypatch.delenv(ONE_LAUNCH_ENV, raising=False)
    monkeypatch.setenv(LARGE_ENV, "1")
    B, T, d = 5, 10, 16
    inputs = [t.float().to(DEV) for t in make_inputs(B, T, d, seed=6)]

    def loss(*a):
        c, alpha = ssa_fast.ssa_attention(*a, backend="triton")
        return (c.square().sum() + alpha[:, :3].sum()) * 0.5

    launches: list[str] = []
    monkeypatch.setattr(tl_mod, "_ssa_large_fwd_kernel",
                        _Counting(launches, "_ssa_large_fwd_kernel"))
    fresh_dispatch()
    compiled = torch.compile(loss, fullgraph=True)
    eager_leaves = [t.clone().requires_grad_(True) for t in inputs]
    comp_leaves = [t.clone().requires_grad_(True) for t in inputs]
    lc = compiled(*comp_leaves)
    assert launches == ["_ssa_large_fwd_kernel"]  # the compiled graph runs the large path
    le = loss(*eager_leaves)
    le.backward()
    lc.backward()
    torch.testing.assert_close(lc, le, rtol=1e-5, atol=1e-5)
    for a, b in zip(comp_leaves, eager_leaves, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)


def test_large_launch_geometry():
    """Tiles of 64 rows at the benchmark's d = 256 (32 at d = 512, a quarter where rows are not
    64-byte multiples), pipelined; the interpreter takes T whole up to 256 rows."""
    assert ssa_large_launch(150, 256) == (64, 256, 16, 2, 8, 16, 2)
    assert ssa_large_launch(150, 200).qk_stages == 1
    assert ssa_large_launch(150, 512).block_t == 32
    assert ssa_large_launch(150, 64).block_t == 64
    assert ssa_large_launch(150, 100).block_t == 32
    assert ssa_large_launch(5, 256).block_t == 8
    assert ssa_large_launch(150, 256, interpret=True).block_t == 256


def _layout(t, how):
    if how == "permuted":  # stored transposed, read back through a permutation
        dims = list(range(t.dim()))[::-1]
        return t.permute(*dims).contiguous().permute(*dims)
    return t


@pytest.mark.parametrize("how", ["contiguous", "permuted", "broadcast"])
def test_large_ops_opcheck(how):
    """The three registered ops against their fake kernels (what torch.compile runs), inputs in
    other layouts, alpha's gradient contiguous, permuted, broadcast (alpha.sum()'s) or absent;
    h in bfloat16 for the permuted case."""
    B, T, d = 3, 7, 8
    g = torch.Generator().manual_seed(5)
    dtype = torch.bfloat16 if how == "permuted" else torch.float32
    h_em, h_sp = (_layout(torch.randn(B, T, d, generator=g).to(DEV, dtype), how)
                  for _ in range(2))
    w_q = torch.randn(T, generator=g).to(DEV)
    w_k = [_layout(torch.randn(d, d, generator=g).to(DEV), how) for _ in range(2)]
    args = (h_em, h_sp, w_q, *w_k, 0.4)
    torch.library.opcheck(tl_mod.ssa_large_fwd_triton_op, args)
    alpha, saved = tl_mod.ssa_large_fwd_triton_op(*args)
    dp = _layout(torch.randn(2, B, d, generator=g).to(DEV), how)
    for dalpha in (None, {"contiguous": torch.randn(B, 2 * T, generator=g).to(DEV),
                          "permuted": _layout(torch.randn(B, 2 * T, generator=g).to(DEV), how),
                          "broadcast": torch.full((1, 1), 0.5, device=DEV).expand(B, 2 * T)
                          }[how]):
        rows = (h_em, h_sp, saved, alpha, dp, dalpha, 0.4)
        torch.library.opcheck(tl_mod.ssa_large_bwd_rows_triton_op, rows)
    _, dqk, g_em = tl_mod.ssa_large_bwd_rows_triton_op(*rows)
    torch.library.opcheck(tl_mod.ssa_large_bwd_em_triton_op,
                          (h_em, saved, alpha, g_em, dp, _layout(dqk[0], how), w_q))
