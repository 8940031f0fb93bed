"""The autograd boundary of Self Speaker Attention.

Around the fused core (scores -> softmax -> weighted sums over the 2T rows) only small matrix
products remain, done here in torch: q = h_em^T w_q, qk = q W_k^T, c = p W_v, and their gradients.

Dtype rule (the one place it is decided, for every backend but the reference): the op computes in
float32 (float64 when any input is float64) with autocast off inside, whatever the input dtypes;
c and alpha come back in the dtype of h_em and h_sp (promoted), each gradient in the dtype of its
input. So bf16 activations under autocast, bf16 inputs without autocast and mixed bf16 / float32
inputs all take the same path, in the forward and in the backward (which autocast never reaches).
The kernels below this boundary only ever see float32 / float64 tensors.
"""

from __future__ import annotations

import os

import torch

from ..._backend import constant_under_compile
from .._dispatch import BackendTable, Impl
from .reference import combine_outputs, ssa_attention_fast

# backend -> (core forward, core backward); the core is (h_em, h_sp, qk_em, qk_sp) ->
# (p_em, p_sp, alpha, lse), see reference.py.
CORE = BackendTable("ssa_attention", __package__, {
    "reference": Impl("reference.ssa_core_reference", "reference.ssa_core_backward_reference"),
    "cpp": Impl("native.ssa_core_fwd_native", "native.ssa_core_bwd_native"),
    "triton": Impl("triton.ssa_core_fwd_triton_op", "triton.ssa_core_bwd_triton_op"),
})


def refuse_double_backward(backend: str) -> None:
    """A backward run with ``create_graph=True`` (a gradient penalty, a Hessian-vector
    product) differentiates these backwards again, whose kernels have no derivative of their
    own: their outputs counted as constants and the second-order gradient came out wrong (5x
    too small in a gradient-penalty test, with only a generic torch warning). Refused, naming
    the backend that has one. (Not under torch.compile, which traces the backward in grad mode
    for its own joint graph.)"""
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(f"ssa_attention: the {backend} backend has no double backward "
                           "(a backward with create_graph=True differentiates its gradient "
                           "again); use backend='reference', whose gradient is differentiable")


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


class SSAAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine, backend):
        inputs = (h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp)
        work = compute_dtype(*inputs)
        with torch.autocast(h_em.device.type, enabled=False):
            he, hs, wq, wke, wks, wve, wvs = (t.to(work) for t in inputs)
            q = torch.einsum("btd,t->bd", he, wq)  # (B, d)
            qk_em, qk_sp = q @ wke.T, q @ wks.T
            p_em, p_sp, alpha, _ = CORE.forward(backend)(he, hs, qk_em, qk_sp, scale)
            c = combine_outputs(p_em @ wve, p_sp @ wvs, combine)
        # The inputs are saved as they came (a float32 copy of bf16 activations would double
        # their memory); the small intermediates in the compute dtype.
        ctx.save_for_backward(*inputs, q, qk_em, qk_sp, p_em, p_sp, alpha)
        ctx.scale, ctx.combine, ctx.backend, ctx.work = scale, combine, backend, work
        out = torch.promote_types(h_em.dtype, h_sp.dtype)
        return c.to(out), alpha.to(out)

    @staticmethod
    def backward(ctx, dc, dalpha):
        refuse_double_backward(ctx.backend)
        *inputs, q, qk_em, qk_sp, p_em, p_sp, alpha = ctx.saved_tensors
        work = ctx.work
        h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp = (t.to(work) for t in inputs)
        B, T, d = h_em.shape
        dc = q.new_zeros(B, 2 * d if ctx.combine == "concat" else d) if dc is None else dc.to(work)
        dalpha = alpha.new_zeros(alpha.shape) if dalpha is None else dalpha.to(work)
        dc_em, dc_sp = (dc[:, :d], dc[:, d:]) if ctx.combine == "concat" else (dc, dc)
        dw_v_em, dw_v_sp = p_em.T @ dc_em, p_sp.T @ dc_sp
        dp_em, dp_sp = dc_em @ w_v_em.T, dc_sp @ w_v_sp.T
        dh_em, dh_sp, dqk_em, dqk_sp = CORE.backward(ctx.backend)(
            h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp, dalpha, ctx.scale)
        # qk = q W_k^T and q = h_em^T w_q
        dq = dqk_em @ w_k_em + dqk_sp @ w_k_sp
        dw_k_em, dw_k_sp = dqk_em.T @ q, dqk_sp.T @ q
        dh_em = dh_em + w_q[None, :, None] * dq[:, None, :]
        dw_q = torch.einsum("btd,bd->t", h_em, dq)
        grads = (dh_em, dh_sp, dw_q, dw_k_em, dw_k_sp, dw_v_em, dw_v_sp)
        return (*(g.to(t.dtype) for g, t in zip(grads, inputs, strict=True)), None, None, None)


# The whole op in one Triton kernel per direction (design.md section 10), for batches that fit in
# one wave of programs: the same dtype rule, with the conversions done by the kernels' loads and
# stores (h in float32 or a half type, read as float32; gradients stored in each input's dtype).
FUSED = BackendTable("ssa_attention", __package__, {
    "triton": Impl("triton.ssa_fused_fwd_triton_op", "triton.ssa_fused_bwd_triton_op"),
})
_HALF = (torch.float32, torch.bfloat16, torch.float16)


# The one-launch backward synchronises programs through global-memory counters, which the
# Triton interpreter (programs run one after another) cannot put to the test: on a GPU it runs
# only when asked for until a GPU session has checked it against the float64 reference
# (benchmarks/RESULTS.md, "Left for a GPU"; gpu_lease.sh asks for it).
ONE_LAUNCH_ENV = "SSA_FAST_SSA_ONE_LAUNCH"


@constant_under_compile  # (read once when a compiled caller is traced)
def _one_launch_on_gpu() -> bool:
    return os.environ.get(ONE_LAUNCH_ENV, "0") not in ("", "0")


def fused_applies(backend: str, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp) -> bool:
    """The one-launch kernels take the call: the triton backend, a batch of at most one program
    per SM (``_triton_common.ssa_fused_launch``), h in float32 or a half type, weights float32;
    on a GPU only with SSA_FAST_SSA_ONE_LAUNCH=1 (see above)."""
    if backend != "triton" or h_em.dtype not in _HALF or h_sp.dtype not in _HALF:
        return False
    if h_em.is_cuda and not _one_launch_on_gpu():
        return False
    if any(w.dtype != torch.float32 for w in (w_q, w_k_em, w_k_sp, w_v_em, w_v_sp)):
        return False
    from .._triton_common import ssa_fused_launch

    B, T, d = h_em.shape
    index = (h_em.device.index if h_em.device.index is not None
             else torch.cuda.current_device()) if h_em.is_cuda else -1
    return ssa_fused_launch(B, T, d, sm_count=_sm_count(index)) is not None


@constant_under_compile
def _sm_count(index: int) -> int:
    """Multiprocessors of CUDA device ``index``; the interpreter's stand-in count for -1."""
    from .._triton_common import SSA_INTERPRET_SMS, _sm_count

    return SSA_INTERPRET_SMS if index < 0 else _sm_count(index)


class SSAFusedFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale, combine):
        combine_sum = combine == "sum"
        c, alpha, saved = FUSED.forward("triton")(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em,
                                                  w_v_sp, scale, combine_sum)
        ctx.save_for_backward(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha)
        ctx.scale, ctx.combine_sum = scale, combine_sum
        out = torch.promote_types(h_em.dtype, h_sp.dtype)
        return c.to(out), alpha.to(out)

    @staticmethod
    def backward(ctx, dc, dalpha):
        refuse_double_backward("triton")
        h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha = ctx.saved_tensors
        if dc is None:
            B, _, d = h_em.shape
            dc = alpha.new_zeros(B, d if ctx.combine_sum else 2 * d)
        dh_em, dh_sp, dw_q, dw = FUSED.backward("triton")(
            h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, saved, alpha, dc, dalpha,
            ctx.scale, ctx.combine_sum)
        dw_v_em, dw_v_sp, dw_k_em, dw_k_sp = dw.unbind(0)
        return dh_em, dh_sp, dw_q, dw_k_em, dw_k_sp, dw_v_em, dw_v_sp, None, None


# The large-batch path (triton_large.py, design.md section 10.2): the batches the one-launch
# kernels leave, only when asked for (on the CPU's interpreter too, so that the default path is
# the same everywhere) until a GPU session has measured and checked it (gpu_lease.sh asks).
LARGE_ENV = "SSA_FAST_SSA_LARGE"


@constant_under_compile
def _large_asked() -> bool:
    return os.environ.get(LARGE_ENV, "0") not in ("", "0")


def large_applies(backend: str, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp) -> bool:
    """SSA_FAST_SSA_LARGE=1, the triton backend, h in float32 or a half type, weights float32."""
    return (backend == "triton" and _large_asked() and h_em.dtype in _HALF
            and h_sp.dtype in _HALF
            and all(w.dtype == torch.float32 for w in (w_q, w_k_em, w_k_sp, w_v_em, w_v_sp)))


def ssa_attention_apply(backend: str, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp,
                        scale: float, combine: str):
    """Run SSA on `backend`. The reference is plain torch differentiated by autograd (under
    autocast it follows autocast's own rules: it is the spec, not a fast path); outside autocast,
    inputs of mixed dtypes follow the dtype rule above, as the other backends do."""
    if backend == "reference":
        inputs = (h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp)
        if len({t.dtype for t in inputs}) > 1 and \
                not torch.is_autocast_enabled(h_em.device.type):
            work = compute_dtype(*inputs)
            c, alpha = ssa_attention_fast(*(t.to(work) for t in inputs), scale, combine)
            out = torch.promote_types(h_em.dtype, h_sp.dtype)
            return c.to(out), alpha.to(out)
        return ssa_attention_fast(*inputs, scale, combine)
    if fused_applies(backend, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp):
        with torch.autocast(h_em.device.type, enabled=False):
            return SSAFusedFunction.apply(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp,
                                          scale, combine)
    if large_applies(backend, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp):
        from .triton_large import SSALargeFunction

        return SSALargeFunction.apply(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale,
                                      combine)
    return SSAAttentionFunction.apply(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale,
                                      combine, backend)
