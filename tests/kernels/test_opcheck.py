"""torch.library.opcheck on every registered op of the library, backward ops included, with the
layouts autograd really hands over: gradients that are column slices (the backward of a concat),
stride-0 expansions (the backward of a sum), transposed / permuted activations.

opcheck compares the fake (meta) kernel's shapes, dtypes and strides with the real kernel's, runs
the op under FakeTensorMode and through AOTAutograd, which is what torch.compile does with it.
"""

import pytest
import torch
from helpers import device_for

import ssa_fast
import ssa_fast.kernels.l1_project
import ssa_fast.kernels.ssa_attention  # noqa: F401  (the ops' packages register the fake kernels)
from ssa_fast.kernels.logmel_delta.filters import analysis_window, mel_filterbank

B, T, D = 3, 7, 8


def _ops(backend):
    if backend not in ssa_fast.available_backends(device_for(backend)):
        pytest.skip(f"{backend} unavailable here")
    if backend == "cpp":
        ops = torch.ops.ssa_fast
        return dict(fwd=ops.ssa_core_fwd.default, bwd=ops.ssa_core_bwd.default,
                    logmel=ops.logmel_delta.default, l1=ops.l1_project_.default)
    from ssa_fast.kernels.l1_project import triton as l1
    from ssa_fast.kernels.logmel_delta import triton as lm
    from ssa_fast.kernels.ssa_attention import triton as ssa

    return dict(fwd=ssa.ssa_core_fwd_triton_op, bwd=ssa.ssa_core_bwd_triton_op,
                logmel=lm.logmel_delta_triton_op, l1=l1.l1_project_triton_op_)


def _layout(t: torch.Tensor, how: str) -> torch.Tensor:
    """The same values in another memory layout."""
    if how == "contiguous":
        return t.contiguous()
    if how == "permuted":  # stored transposed, read back through a permutation
        dims = list(range(t.dim()))[::-1]
        return t.permute(*dims).contiguous().permute(*dims)
    if how == "slice":  # a column slice of a wider tensor (the backward of torch.cat)
        wide = torch.cat([t, torch.zeros_like(t)], dim=-1)
        return wide[..., :t.shape[-1]]
    raise ValueError(how)


LAYOUTS = ["contiguous", "permuted", "slice"]
BACKENDS = ["cpp", "triton"]


def _core_inputs(dev, how, seed=0):
    g = torch.Generator().manual_seed(seed)
    h_em, h_sp = (torch.randn(B, T, D, generator=g) for _ in range(2))
    qk_em, qk_sp = (torch.randn(B, D, generator=g) for _ in range(2))
    return [_layout(t.to(dev), how) for t in (h_em, h_sp, qk_em, qk_sp)]


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ssa_core_forward_op(backend, how):
    ops = _ops(backend)
    torch.library.opcheck(ops["fwd"], (*_core_inputs(device_for(backend), how), 0.4))


@pytest.mark.parametrize("how", LAYOUTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_ssa_core_backward_op(backend, how):
    ops = _ops(backend)
    dev = device_for(backend)
    h_em, h_sp, qk_em, qk_sp = _core_inputs(dev, how, seed=1)
    p_em, p_sp, alpha, _ = ops["fwd"](h_em, h_sp, qk_em, qk_sp, 0.4)
    g = torch.Generator().manual_seed(2)
    dc = torch.randn(B, 2 * D, generator=g).to(dev)
    dp_em, dp_sp = dc[:, :D], dc[:, D:]  # what the backward of the concat hands over
    dalpha = {"contiguous": torch.randn(B, 2 * T, generator=g).to(dev),
              "permuted": _layout(torch.randn(B, 2 * T, generator=g).to(dev), "permuted"),
              "slice": torch.full((1, 1), 0.5, device=dev).expand(B, 2 * T)}[how]  # sum()'s
    torch.library.opcheck(ops["bwd"], (h_em, h_sp, qk_em, qk_sp, alpha, p_em, p_sp, dp_em, dp_sp,
                                       dalpha, 0.4))


@pytest.mark.parametrize("with_lengths", [True, False])
@pytest.mark.parametrize("how", ["contiguous", "slice"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_logmel_op(backend, how, with_lengths):
    ops = _ops(backend)
    dev = device_for(backend)
    g = torch.Generator().manual_seed(3)
    x = _layout((0.3 * torch.randn(2, 2401, generator=g)).to(dev), how)
    lengths = torch.tensor([2401, 1500], device=dev) if with_lengths else None
    if backend == "cpp" and lengths is None:
        lengths = torch.full((2,), 2401, device=dev)  # the native op takes lengths always
    window = analysis_window("hamming", 400, 512).float().to(dev)
    fb = mel_filterbank(16000, 512, 40).float().to(dev)
    torch.library.opcheck(ops["logmel"], (x, lengths, window, fb, 160, True, 1e-10))


@pytest.mark.parametrize("how", ["contiguous", "permuted"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_l1_project_op(backend, how):
    ops = _ops(backend)
    dev = device_for(backend)
    g = torch.Generator().manual_seed(4)
    weight = torch.randn(5, 32, generator=g).to(dev)  # projected in place: contiguous
    x = _layout(torch.randn(7, 32, generator=g).to(dev), how)
    torch.library.opcheck(ops["l1"], (weight, x))


@pytest.mark.parametrize("combine_sum", [False, True])
@pytest.mark.parametrize("how", ["contiguous", "permuted", "slice"])
def test_ssa_one_launch_ops(how, combine_sum):
    """The one-launch SSA ops (forward and backward) against their fake kernels, with inputs and
    output gradients in other layouts (a broadcast dalpha for "slice", as alpha.sum() gives)."""
    _ops("triton")
    from ssa_fast.kernels.ssa_attention import triton as ssa

    dev = device_for("triton")
    g = torch.Generator().manual_seed(5)
    h_em, h_sp = (_layout(torch.randn(B, T, D, generator=g).to(dev), how) for _ in range(2))
    w_q = torch.randn(T, generator=g).to(dev)
    ws = [_layout(torch.randn(D, D, generator=g).to(dev), how) for _ in range(4)]
    args = (h_em, h_sp, w_q, *ws, 0.4, combine_sum)
    torch.library.opcheck(ssa.ssa_fused_fwd_triton_op, args)
    c, alpha, saved = ssa.ssa_fused_fwd_triton_op(*args)
    dc = _layout(torch.randn(c.shape, generator=g).to(dev), how)
    dalpha = {"contiguous": torch.randn(B, 2 * T, generator=g).to(dev),
              "permuted": _layout(torch.randn(B, 2 * T, generator=g).to(dev), "permuted"),
              "slice": torch.full((1, 1), 0.5, device=dev).expand(B, 2 * T)}[how]
    torch.library.opcheck(ssa.ssa_fused_bwd_triton_op, (h_em, h_sp, w_q, *ws, saved, alpha, dc,
                                                         dalpha, 0.4, combine_sum))
