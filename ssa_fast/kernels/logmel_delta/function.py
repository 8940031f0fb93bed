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

KERNELS = BackendTable(__package__, {
    "reference": Impl("reference.logmel_delta_reference",
                      "reference.logmel_delta_backward_reference"),
    "cpp": Impl("cpp.logmel_delta_cpp", "reference.logmel_delta_backward_reference"),
    "triton": Impl("triton.logmel_delta_triton_op", "reference.logmel_delta_backward_reference"),
    # csrc/cuda/logmel_delta.cu through the native op's wrapper (it dispatches on the device)
    "cuda": Impl("cpp.logmel_delta_cpp", "reference.logmel_delta_backward_reference"),
})


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
