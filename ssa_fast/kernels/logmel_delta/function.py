"""The autograd boundary of the 3-D log-Mel.

The fast backends compute the forward; the gradient with respect to the waveform is the reference
chain's (recomputed in backward), so features stay differentiable whichever backend produced them.

Dtype rule (the one place it is decided): features are computed in the waveform's dtype when it
is float32 or float64, in float32 for half inputs, with autocast off (a bf16 mel product would
change the features, which are data, not activations); the output has that compute dtype and the
gradient the waveform's own dtype. The triton backend runs float32 only (``_backend`` refuses
float64 for it).
"""

from __future__ import annotations

import torch

from .._dispatch import BackendTable, Impl

# The CUDA kernel's shared-memory FFT takes n_fft a power of two in [CUDA_MIN_FFT, CUDA_MAX_FFT]:
# kMinFft and kMaxFft of csrc/cuda/logmel_delta_tile.cuh (tests/kernels/test_logmel_cuda_source.py
# checks that they agree).
CUDA_MIN_FFT, CUDA_MAX_FFT = 256, 2048
# On CUDA without the CUDA kernel, the Triton kernel (one launch) wins on short input, the
# reference (cuFFT and ~20 launches) from about this many samples per call. On an H200
# (benchmarks/RESULTS.md): 3 s x 1, Triton 0.34 ms against 1.17; 3 s x 512, 3.6 ms against 1.6;
# both linear in the batch beyond, which puts the crossing near 7e6 samples. (Measured with the
# Triton kernel before its banded mel sum and scratch-slot deltas, which a GPU has not yet timed:
# benchmarks/RESULTS.md, "Left for a GPU".)
TRITON_MAX_SAMPLES = 6_000_000


def cuda_fft_size(n_fft: int) -> bool:
    """Whether the CUDA kernel's FFT covers `n_fft`."""
    return CUDA_MIN_FFT <= n_fft <= CUDA_MAX_FFT and n_fft & (n_fft - 1) == 0


def _supports(backend: str, n_fft: int) -> str | None:
    if backend == "cuda" and not cuda_fft_size(n_fft):
        return f"the cuda kernel needs n_fft a power of two in [{CUDA_MIN_FFT}, {CUDA_MAX_FFT}]"
    return None


def _prefers(backend: str, samples: int) -> bool:
    return backend != "triton" or samples <= TRITON_MAX_SAMPLES


# The CUDA kernel runs where it is built and takes the n_fft (the automatic choice on CUDA): it
# passed the suite's log-Mel tests on an H200 and is the fastest backend there at every
# benchmarked size, 2x the reference and 1.4-4.5x Triton (benchmarks/RESULTS.md). Asked for with
# another n_fft, the call runs on the automatic choice among the others, said.
KERNELS = BackendTable("logmel_delta", __package__, {
    "reference": Impl("reference.logmel_delta_reference",
                      "reference.logmel_delta_backward_reference"),
    "cpp": Impl("native.logmel_delta_native", "reference.logmel_delta_backward_reference"),
    "triton": Impl("triton.logmel_delta_triton_op", "reference.logmel_delta_backward_reference"),
    # csrc/cuda/logmel_delta.cu: the same native op as cpp, which the dispatcher sends to the
    # CUDA kernel for CUDA tensors
    "cuda": Impl("native.logmel_delta_native", "reference.logmel_delta_backward_reference"),
}, supports=_supports, prefers=_prefers)


class LogMelDeltaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, waveform, lengths, window, mel_fb, hop_length, center, amin, backend):
        ctx.save_for_backward(waveform, lengths, window, mel_fb)
        ctx.params, ctx.backend = (hop_length, center, amin), backend
        return KERNELS.forward(backend)(waveform, lengths, window, mel_fb, hop_length, center,
                                        amin)

    @staticmethod
    def backward(ctx, grad_out):
        waveform, lengths, window, mel_fb = ctx.saved_tensors
        if torch.is_grad_enabled() and not torch.compiler.is_compiling():
            # create_graph=True (a gradient penalty, a Hessian-vector product): the gradient
            # must be differentiable, so it is the reference chain's, recomputed in this graph
            # (every backend's backward is that chain's gradient; computed detached, it
            # counted as a constant and the second-order gradient came out ~100x too small)
            from .reference import logmel_delta_reference

            y = logmel_delta_reference(waveform, lengths, window, mel_fb, *ctx.params)
            (grad,) = torch.autograd.grad(y, waveform, grad_out.to(y.dtype), create_graph=True)
        else:
            grad = KERNELS.backward(ctx.backend)(grad_out.to(waveform.dtype), waveform, lengths,
                                                 window, mel_fb, *ctx.params)
        return grad, None, None, None, None, None, None, None


def logmel_delta_apply(backend: str, waveform, lengths, window, mel_fb, hop_length, center,
                       amin):
    """Run the 3-D log-Mel on `backend` under the dtype rule above; the reference is plain torch
    differentiated by autograd, and a waveform that needs no gradient (inference, training
    data) skips the autograd Function (no context, nothing saved)."""
    dtype = waveform.dtype
    work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    x, window, mel_fb = waveform.to(work), window.to(work), mel_fb.to(work)
    with torch.autocast(waveform.device.type, enabled=False):
        if backend == "reference" or not x.requires_grad:
            out = KERNELS.forward(backend)(x, lengths, window, mel_fb, hop_length, center, amin)
        else:
            out = LogMelDeltaFunction.apply(x, lengths, window, mel_fb, hop_length, center, amin,
                                            backend)
    return out
