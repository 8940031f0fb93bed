"""l1_project_: every backend against the reference and the constraint itself."""

import pytest
import torch
from helpers import device_for

import ssa_fast
from ssa_fast.kernels.l1_project import l1_project_reference_
from ssa_fast.models.layers import Classifier


@pytest.mark.parametrize("K, n, N", [(1, 1, 1), (4, 128, 40), (10, 128, 1), (37, 65, 13),
                                     (300, 128, 40)])
def test_rows_get_the_target_norm_and_keep_their_direction(backend, K, n, N):
    dev = device_for(backend)
    g = torch.Generator().manual_seed(K * n + N)
    W0 = torch.randn(K, n, generator=g) * 3
    if K > 2:
        W0[1] = 0.0  # a zero row stays zero
    x = torch.randn(N, n, generator=g)
    W = W0.clone().to(dev)
    out = ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    assert out is W
    r = N / (K * x.double().abs().sum())
    norms = W.cpu().double().abs().sum(dim=1)
    nonzero = W0.abs().sum(1) > 0
    torch.testing.assert_close(norms[nonzero], torch.full_like(norms[nonzero], float(r)),
                               rtol=1e-5, atol=0)
    assert torch.count_nonzero(W.cpu()[~nonzero]) == 0
    direction = W0[nonzero] / W0[nonzero].abs().sum(1, keepdim=True)
    torch.testing.assert_close(W.cpu()[nonzero] / float(r), direction, rtol=1e-5, atol=1e-7)
    ref = l1_project_reference_(W0.clone(), x)
    torch.testing.assert_close(W.cpu(), ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("x_value", [0.0, float("inf"), float("nan")])
def test_unusable_batch_leaves_weight_unchanged(backend, x_value):
    dev = device_for(backend)
    W0 = torch.randn(4, 16)
    x = torch.full((40, 16), x_value)
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    assert torch.isfinite(W).all()
    torch.testing.assert_close(W.cpu(), W0)


def test_batch_too_small_for_the_target_norm_leaves_weight_unchanged(backend):
    """A batch of denormals: r = N / (K sum |x|) overflows float32, so W is left as it is
    (found by the hostile-input property test: the kernels wrote inf)."""
    dev = device_for(backend)
    W0 = torch.randn(4, 16)
    x = torch.zeros(1, 16)
    x[0, 3] = 1.4e-45
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    torch.testing.assert_close(W.cpu(), W0, rtol=0, atol=0)


def test_row_of_tiny_norm_gets_the_target_without_nan(backend):
    """A row of denormal norm with zeros in it: its factor r / norm overflows float32, and
    0 x inf would be NaN; the zeros stay zero and the row gets the target norm."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(5)
    W0 = torch.randn(3, 16, generator=g)
    W0[1] = 0.0
    W0[1, 2] = 1e-44
    x = torch.randn(40, 16, generator=g)
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    W = W.cpu()
    assert torch.isfinite(W).all()
    assert torch.count_nonzero(W[1]) == 1
    r = 40 / (3 * x.double().abs().sum())
    torch.testing.assert_close(W.double().abs().sum(1), torch.full((3,), float(r),
                               dtype=torch.float64), rtol=1e-5, atol=0)
    torch.testing.assert_close(W, l1_project_reference_(W0.clone(), x), rtol=1e-5, atol=0)


def test_huge_finite_batch_gives_finite_weights(backend):
    dev = device_for(backend)
    W0 = torch.randn(4, 16)
    x = torch.full((40, 16), 3e38)
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    assert torch.isfinite(W).all()
    torch.testing.assert_close(W.cpu(), l1_project_reference_(W0.clone(), x), rtol=1e-4,
                               atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpp"])  # the float64-capable backends
def test_float64_and_parameter_of_linear(backend):
    layer = torch.nn.Linear(128, 4, dtype=torch.float64)
    x = torch.randn(40, 128, dtype=torch.float64)
    ssa_fast.l1_project_(layer.weight, x, backend=backend)
    r = 40 / (4 * x.abs().sum())
    torch.testing.assert_close(layer.weight.abs().sum(1), torch.full((4,), float(r),
                               dtype=torch.float64))
    assert layer.weight.requires_grad and layer.weight.grad is None


def test_bad_input():
    W = torch.randn(4, 16)
    with pytest.raises(ValueError, match="x has 8 features"):
        ssa_fast.l1_project_(W, torch.randn(3, 8))
    with pytest.raises(ValueError, match="weight must be a 2-D"):
        ssa_fast.l1_project_(torch.randn(16), torch.randn(3, 16))
    with pytest.raises(ValueError, match="at least one sample"):
        ssa_fast.l1_project_(W, torch.randn(0, 16))
    with pytest.raises(TypeError, match="floating point"):
        ssa_fast.l1_project_(W, torch.ones(3, 16, dtype=torch.long))
    import numpy as np  # (a right shape, the wrong type: the message named the shape)
    with pytest.raises(TypeError, match="x must be a torch.Tensor, got ndarray"):
        ssa_fast.l1_project_(W, np.zeros((3, 16), np.float32))


def test_non_contiguous_weight_is_projected_in_place(backend):
    dev = device_for(backend)
    storage = torch.randn(64, 6, device=dev)
    W = storage.T  # (6, 64), not contiguous
    x = torch.randn(10, 64, device=dev)
    expected = l1_project_reference_(W.detach().cpu().contiguous(), x.cpu())
    assert ssa_fast.l1_project_(W, x, backend=backend) is W
    torch.testing.assert_close(storage.T.cpu(), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_are_projected_by_every_backend(backend, dtype):
    """The cpp kernel takes float32 / float64 weights: a half-precision one (the automatic
    choice on the CPU) is projected in float32 and written back, in place, as the reference
    projects it (it raised 'weight must be float32 or float64')."""
    dev = device_for(backend)
    if backend == "triton" and dev == "cpu" and dtype == torch.bfloat16:
        pytest.skip("Triton's interpreter has no bfloat16 arithmetic (numpy has none); a GPU "
                    "runs this case")
    g = torch.Generator().manual_seed(7)
    W0, x = torch.randn(4, 32, generator=g).to(dtype), torch.randn(9, 32, generator=g)
    W = W0.clone().to(dev)
    assert ssa_fast.l1_project_(W, x.to(dev), backend=backend) is W and W.dtype == dtype
    expected = l1_project_reference_(W0.float(), x).to(dtype)
    torch.testing.assert_close(W.cpu(), expected, rtol=1e-2, atol=0)
    if dev == "cpu":  # the automatic choice
        W = W0.clone()
        ssa_fast.l1_project_(W, x)
        torch.testing.assert_close(W, expected, rtol=1e-2, atol=0)


def test_an_fp16_weight_is_projected_beside_activations_beyond_its_range(backend):
    """x is cast to the weight's dtype: float32 activations over 65504 became inf in fp16, the
    norm infinite, and the weight was left as it was without a word. It is projected in float32
    and written back."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(3)
    W0, x = torch.randn(4, 16, generator=g).half(), torch.randn(6, 16, generator=g) * 1e5
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    expected = l1_project_reference_(W0.float(), x).half()
    assert not torch.equal(W.cpu(), W0)
    torch.testing.assert_close(W.cpu(), expected, rtol=1e-2, atol=1e-9)


@pytest.mark.parametrize("x_dtype", [torch.float16, torch.float32])
def test_an_fp16_weight_whose_target_norm_it_cannot_hold_stays_as_it_is(backend, x_dtype):
    """A target norm beyond fp16's range (a batch of tiny activations) leaves the weight as it
    is, as in the reference; projected in float32 (the cpp kernel, or a float32 x) it was
    computed there and written back as inf, and the logits became +-inf."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(4)
    W0 = torch.randn(4, 16, generator=g).half()
    x = (torch.rand(8, 16, generator=g) * 1e-7).to(x_dtype)  # r = 8 / (4 sum|x|): ~3e5
    assert 8 / (4 * x.double().abs().sum()) > torch.finfo(torch.float16).max
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    assert torch.equal(W.cpu(), W0)
    clf = Classifier(16, 4, l1_constraint=True, backend=backend).half()
    before = clf.weight.detach().clone()
    clf.to(dev).project_(x.float().to(dev))
    assert torch.equal(clf.weight.detach().cpu(), before)


def test_the_classifier_projects_a_half_weight_beside_activations_beyond_its_range(backend):
    """Classifier.project_ cast x to its weight's dtype before the op could apply its rule:
    fp16 activations over 65504 were infinite and the projection was skipped."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(5)
    clf = Classifier(16, 4, l1_constraint=True, backend=backend).half()
    clf = clf.to(dev)
    before = clf.weight.detach().float().cpu()
    x = torch.randn(6, 16, generator=g) * 1e5
    clf.project_(x.to(dev))
    expected = l1_project_reference_(before.clone(), x).half()
    torch.testing.assert_close(clf.weight.detach().cpu(), expected, rtol=1e-2, atol=1e-9)


@pytest.mark.parametrize("compiled", [False, True])
def test_autograd_sees_the_projection_on_every_backend(backend, compiled):
    """The cpp op did not bump the weight's version counter: a backward through a graph that
    saved the weight before the projection ran with the projected weight, a gradient wrong by
    O(1) without a word, eager or inside torch.compile (the reference and Triton raise
    autograd's in-place error)."""
    dev = device_for(backend)
    w = torch.randn(4, 16, device=dev, requires_grad=True)
    x = torch.randn(6, 16, device=dev)
    z = torch.randn(6, 16, device=dev, requires_grad=True)

    def step(w, z, x):
        out = (z @ w.t()).square().sum()  # saves w for z's gradient
        with torch.no_grad():
            ssa_fast.l1_project_(w, x, backend=backend)
        return out

    if compiled:
        torch._dynamo.reset()
        with pytest.raises(Exception, match="modified by an inplace operation"):
            torch.compile(step)(w, z, x).backward()  # (raised while compiling, or in backward)
        return
    version = w._version
    out = step(w, z, x)
    assert w._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_x_in_the_weights_own_memory_is_read_before_it_is_projected(backend):
    """l1_project_(w, w): Triton's programs each summed all of x while the others rescaled
    their rows of it (row norms 1.3e-4 to 8.9e-4 where all are equal)."""
    dev = device_for(backend)
    w = torch.randn(600, 16, generator=torch.Generator().manual_seed(6)).to(dev)
    expected = l1_project_reference_(w.cpu().clone(), w.cpu().clone())
    ssa_fast.l1_project_(w, w, backend=backend)
    torch.testing.assert_close(w.cpu(), expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_row_holding_nan_or_inf_stays_as_it_is_on_every_backend(backend, bad):
    """The cpp kernel skipped zero rows only: one NaN made its whole row NaN (the reference
    and Triton left it), and on every backend an Inf row became NaN (r / inf x inf)."""
    dev = device_for(backend)
    g = torch.Generator().manual_seed(7)
    W0, x = torch.randn(5, 16, generator=g), torch.randn(8, 16, generator=g)
    W0[2, 3] = bad
    W = W0.clone().to(dev)
    ssa_fast.l1_project_(W, x.to(dev), backend=backend)
    W, rest = W.cpu(), [0, 1, 3, 4]
    torch.testing.assert_close(W[2], W0[2], rtol=0, atol=0, equal_nan=True)
    assert torch.isfinite(W[rest]).all()
    norms = W[rest].abs().sum(1)
    torch.testing.assert_close(norms, torch.full_like(norms, 8 / (5 * float(x.abs().sum()))))
    expected = l1_project_reference_(W0.clone(), x)
    torch.testing.assert_close(W, expected, rtol=1e-5, atol=0, equal_nan=True)
