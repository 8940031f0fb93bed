"""The autograd boundary of the 3-D log-Mel.

The fast backends compute the forward; the gradient with respect to the waveform is the reference
chain's (recomputed in backward), so features stay differentiable whichever backend produced them.
"""

from __future__ import annotations

import torch

from .reference import logmel_delta_reference


def run_backend(backend: str, waveform, lengths, window, mel_fb, hop_length, center, amin):
    if backend == "reference":
        return logmel_delta_reference(waveform, lengths, window, mel_fb, hop_length, center, amin)
    if backend == "cpp":
        from .cpp import logmel_delta_cpp

        return logmel_delta_cpp(waveform, lengths, window, mel_fb, hop_length, center, amin)
    from .triton import logmel_delta_triton

    return logmel_delta_triton(waveform, lengths, window, mel_fb, hop_length, center, amin)


class LogMelDeltaFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, waveform, lengths, window, mel_fb, hop_length, center, amin, backend):
        ctx.save_for_backward(waveform, lengths, window, mel_fb)
        ctx.params = (hop_length, center, amin)
        return run_backend(backend, waveform, lengths, window, mel_fb, hop_length, center, amin)

    @staticmethod
    def backward(ctx, grad_out):
        waveform, lengths, window, mel_fb = ctx.saved_tensors
        with torch.enable_grad():
            x = waveform.detach().requires_grad_(True)
            y = logmel_delta_reference(x, lengths, window, mel_fb, *ctx.params)
            (grad,) = torch.autograd.grad(y, x, grad_out)
        return grad, None, None, None, None, None, None, None


def logmel_delta_apply(backend: str, waveform, lengths, window, mel_fb, hop_length, center, amin):
    if backend == "reference" or not waveform.requires_grad:
        return run_backend(backend, waveform, lengths, window, mel_fb, hop_length, center, amin)
    return LogMelDeltaFunction.apply(waveform, lengths, window, mel_fb, hop_length, center, amin,
                                     backend)
