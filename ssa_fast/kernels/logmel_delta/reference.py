"""Pure-torch reference of the 3-D log-Mel: the executable specification (design.md section 2).

For a waveform x of one item (L samples) with frames t = 0 .. T-1:

    X_t[f]   = sum_k x[t * hop + k - off] * w[k] * exp(-2 pi i f k / n_fft)
               (x = 0 outside [0, L); off = n_fft // 2 if center else 0)
    S_t[m]   = sum_f fb[m, f] * |X_t[f]|^2
    c_t[m]   = ln(max(S_t[m], amin))
    d_t      = sum_{n=1,2} n * (c_{clamp(t+n)} - c_{clamp(t-n)}) / 10         (clamp to [0, T-1])
    dd_t     = the same regression applied to d
    out      = stack(c, d, dd)                                   -> (3, T, n_mels)

This is the "eager reference chain" (torch.stft, matmul, log, shifted sums) and runs in any float
dtype on any device; with ``lengths`` each item is computed alone, so batch padding never leaks.
"""

from __future__ import annotations

import torch


def delta(c: torch.Tensor) -> torch.Tensor:
    """HTK regression delta (N = 2) along dim -2 of ``(..., T, M)``, edges replicated."""
    T = c.shape[-2]
    idx = torch.arange(T, device=c.device)

    def at(shift: int) -> torch.Tensor:
        return c.index_select(-2, (idx + shift).clamp(0, T - 1))

    return ((at(1) - at(-1)) + 2.0 * (at(2) - at(-2))) / 10.0


def _chain(x: torch.Tensor, window: torch.Tensor, mel_fb: torch.Tensor, hop_length: int,
           center: bool, amin: float) -> torch.Tensor:
    n_fft = window.shape[-1]
    spec = torch.stft(x, n_fft, hop_length=hop_length, win_length=n_fft, window=window,
                      center=center, pad_mode="constant", return_complex=True)  # (B, F, T)
    power = spec.real.square() + spec.imag.square()
    mel = torch.matmul(mel_fb, power)  # (B, M, T)
    c = torch.log(torch.clamp(mel, min=amin)).transpose(-1, -2)  # (B, T, M)
    d = delta(c)
    return torch.stack((c, d, delta(d)), dim=1)  # (B, 3, T, M)


def logmel_delta_reference(
    waveform: torch.Tensor,  # (B, N)
    lengths: torch.Tensor | None,  # (B,) samples per item, or None for all N
    window: torch.Tensor,  # (n_fft,) centred, zero-padded
    mel_fb: torch.Tensor,  # (n_mels, n_fft // 2 + 1)
    hop_length: int,
    center: bool,
    amin: float,
) -> torch.Tensor:  # (B, 3, T, n_mels)
    window = window.to(waveform)
    mel_fb = mel_fb.to(waveform)
    if lengths is None:
        return _chain(waveform, window, mel_fb, hop_length, center, amin)
    n_fft = window.shape[-1]
    B, N = waveform.shape
    T = frame_count(N, n_fft, hop_length, center)
    out = waveform.new_zeros(B, 3, T, mel_fb.shape[0])
    for b, n in enumerate(lengths.tolist()):
        t = frame_count(n, n_fft, hop_length, center)
        out[b, :, :t] = _chain(waveform[b:b + 1, :n], window, mel_fb, hop_length, center, amin)[0]
    return out


def logmel_delta_backward_reference(grad_out, waveform, lengths, window, mel_fb, hop_length,
                                    center, amin):  # -> (B, N), the gradient w.r.t. waveform
    """Gradient of the reference chain with respect to the waveform (recomputed): what every
    backend's backward returns, so features stay differentiable whichever backend made them."""
    with torch.enable_grad():
        x = waveform.detach().requires_grad_(True)
        y = logmel_delta_reference(x, lengths, window, mel_fb, hop_length, center, amin)
        (grad,) = torch.autograd.grad(y, x, grad_out)
    return grad


def frame_count(n, n_fft: int, hop_length: int, center: bool):
    """Frames of an n-sample signal (torch.stft / librosa convention: every frame inside the
    signal, padded by ``n_fft // 2`` on both sides when centred, so an odd n_fft has one sample
    less of room than an even one); `n` an int or a tensor of per-item lengths. Fewer than n_fft
    samples give 0 frames when center=False."""
    padded = n + 2 * (n_fft // 2) if center else n
    frames = 1 + (padded - n_fft) // hop_length
    return frames.clamp(min=0) if isinstance(frames, torch.Tensor) else max(frames, 0)


def logmel_delta_fake(waveform, lengths, window, mel_fb, hop_length, center, amin, dtype=None):
    """The fake (meta) kernel of the registered ops: the output's shape (B, 3, T, n_mels) and
    dtype, without computing it; registered for the native op (native.py, the waveform's dtype)
    and for the Triton one (triton.py, float32)."""
    T = frame_count(waveform.shape[1], window.shape[0], hop_length, center)
    return waveform.new_empty(waveform.shape[0], 3, T, mel_fb.shape[0],
                              dtype=dtype or waveform.dtype)
