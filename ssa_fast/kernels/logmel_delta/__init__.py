"""3-D log-Mel features (static, delta, delta-delta): public function and input validation."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

from ... import _backend
from ..logmel_params import (  # noqa: F401 (also this module's names)
    AMIN_LOWEST,
    DEFAULTS,
    WINDOWS,
    check_amin,
    check_params,
)
from . import native as _native  # noqa: F401  (registers the fake kernels of the native ops)
from .filters import analysis_window, mel_filterbank
from .function import KERNELS, logmel_delta_apply
from .reference import frame_count

__all__ = ["DEFAULTS", "check_params", "frame_count", "logmel_delta", "logmel_delta_with_bank",
           "validate_waveform"]


# a (B, N) batch of waveforms of at most this many samples, more of them than samples: the
# (samples, channels) array of a multichannel file, not waveforms
MAX_CHANNELS = 8
MAX_SAMPLE = 1e15  # |x| beyond this overflows the float32 power spectrum (n_fft 512 frames)


def validate_waveform(waveform, name: str = "waveform",
                      check_values: bool | None = None, batch: bool = False) -> torch.Tensor:
    """Return `waveform` as a float tensor of shape (N,) or (B, N), or raise a clear error.

    ``check_values`` (default: on for CPU tensors, off for GPU tensors) rejects NaN / Inf samples
    and samples beyond ``MAX_SAMPLE``. Reading the verdict back would synchronise the GPU on every
    call, so on a GPU it is off unless asked for: NaN / Inf samples then give non-finite features
    in the frames that hold them. (``ssa_fast.audio.load`` checks every file it reads.)
    A (B, N) array with more rows than columns and at most MAX_CHANNELS columns is refused as
    the (samples, channels) array of a multichannel file, unless ``batch`` (a call with
    lengths: the caller says it is a batch)."""
    if isinstance(waveform, np.ndarray):  # (ascontiguousarray would turn a 0-d array into 1-d)
        if not waveform.dtype.isnative:  # (big-endian samples: torch takes native order only)
            waveform = waveform.astype(waveform.dtype.newbyteorder("="))
        waveform = torch.from_numpy(np.require(waveform, requirements="C"))
    if not isinstance(waveform, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, "
                        f"got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of samples in [-1, 1], got dtype "
                        f"{waveform.dtype}; scale integer PCM first (ssa_fast.audio.load does)")
    if waveform.dtype in (torch.float16, torch.bfloat16):
        waveform = waveform.float()
    if waveform.dim() not in (1, 2):
        raise ValueError(f"{name} must have shape (N,) or (B, N), got {tuple(waveform.shape)}")
    if waveform.shape[-1] == 0 or waveform.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(waveform.shape)}); at least one sample is "
                         "needed")
    if not batch and waveform.dim() == 2 and waveform.shape[0] > waveform.shape[1] and \
            waveform.shape[1] <= MAX_CHANNELS:  # (with lengths the caller says it is a batch)
        raise ValueError(f"{name} of shape {tuple(waveform.shape)} looks like (samples, "
                         "channels), as soundfile reads a multichannel file: pass (B, N) "
                         f"waveforms, e.g. the channels as a batch ({name}.T) or mixed down "
                         f"({name}.mean(1))")
    if check_values is None:
        check_values = waveform.device.type == "cpu"
    if not check_values:
        return waveform
    # One pass (aminmax propagates NaN and shows +-Inf); the count only on failure.
    lo, hi = torch.stack(torch.aminmax(waveform)).tolist()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        bad = int((~torch.isfinite(waveform)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf sample(s)")
    if max(-lo, hi) > MAX_SAMPLE:  # the power spectrum would overflow float32
        raise ValueError(f"{name} has samples up to {max(-lo, hi):.3g}; expected audio in about "
                         f"[-1, 1] (at most {MAX_SAMPLE:g})")
    return waveform


def _validate_lengths(lengths, waveform: torch.Tensor, n_fft: int, center: bool) -> torch.Tensor:
    if waveform.dim() != 2:
        raise ValueError("lengths is only accepted with a batched waveform of shape (B, N), got "
                         f"shape {tuple(waveform.shape)}")
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must hold integers, got dtype {lengths.dtype}")
    B, N = waveform.shape
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) to match waveform "
                         f"{tuple(waveform.shape)}, got {tuple(lengths.shape)}")
    # Checked where the values live: lengths given on the host (a list, a CPU tensor: the usual
    # case) cost the GPU path no synchronisation; only lengths already on a GPU are read back.
    values = lengths.to("cpu", torch.int64)
    low = n_fft if not center else 1
    if bool((values < low).any()) or bool((values > N).any()):
        raise ValueError(f"lengths must lie in [{low}, {N}] (samples per item; at least n_fft when "
                         f"center=False), got {values.tolist()}")
    if lengths.device == waveform.device:
        return lengths.to(torch.int64)
    if waveform.is_cuda:  # a pinned copy makes the upload asynchronous
        values = values.pin_memory()
    return values.to(waveform.device, non_blocking=True)


# Host-side set-up (numpy), kept out of torch.compile graphs.
@_backend.eager_under_compile
@lru_cache(maxsize=64)
def _cached_bank(sample_rate, n_fft, n_mels, fmin, fmax, htk, device, dtype):
    return mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, htk).to(device, dtype)


@_backend.eager_under_compile
@lru_cache(maxsize=64)
def _cached_window(window, win_length, n_fft, device, dtype):
    return analysis_window(window, win_length, n_fft).to(device, dtype)


def logmel_delta_with_bank(
    waveform: torch.Tensor,  # (N,) or (B, N), validated
    window: torch.Tensor,  # (n_fft,) centred window
    mel_fb: torch.Tensor,  # (n_mels, n_fft // 2 + 1)
    hop_length: int,
    center: bool = True,
    amin: float = 1e-10,
    lengths=None,
    backend: str | None = None,
):
    """:func:`logmel_delta` with a ready window and filterbank (what :class:`LogMelDelta` calls)."""
    n_fft = window.shape[-1]
    if mel_fb.dim() != 2 or mel_fb.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"mel_fb must have shape (n_mels, {n_fft // 2 + 1}) for n_fft={n_fft}, "
                         f"got {tuple(mel_fb.shape)}")
    check_amin(amin)
    single = waveform.dim() == 1
    x = waveform.unsqueeze(0) if single else waveform
    if not center and x.shape[-1] < n_fft:
        raise ValueError(f"waveform has {x.shape[-1]} samples, fewer than n_fft={n_fft}, which "
                         "center=False needs for one frame")
    lens = None if lengths is None else _validate_lengths(lengths, waveform, n_fft, center)

    name = _backend.resolve(KERNELS, x.device, backend, x.dtype, size=x.numel(), n_fft=n_fft)
    window = window.to(x.device, x.dtype)
    mel_fb = mel_fb.to(x.device, x.dtype)
    out = logmel_delta_apply(name, x, lens, window, mel_fb, int(hop_length), bool(center),
                             float(amin))
    if single:
        return out[0]
    if lens is None:
        return out
    return out, frame_count(lens, n_fft, hop_length, center)


def logmel_delta(
    waveform,
    sample_rate: int = DEFAULTS.sample_rate,
    n_fft: int = DEFAULTS.n_fft,
    win_length: int = DEFAULTS.win_length,
    hop_length: int = DEFAULTS.hop_length,
    n_mels: int = DEFAULTS.n_mels,
    fmin: float = DEFAULTS.fmin,
    fmax: float | None = DEFAULTS.fmax,
    window: str | torch.Tensor = DEFAULTS.window,
    center: bool = DEFAULTS.center,
    htk: bool = DEFAULTS.htk,
    amin: float = DEFAULTS.amin,
    lengths=None,
    backend: str | None = None,
):
    """3-D log-Mel: static log-Mel, delta and delta-delta (design.md section 2).

    Args:
        waveform: ``(N,)`` or ``(B, N)`` float samples at ``sample_rate`` (a numpy array works too).
        sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax, htk: STFT and mel-bank
            parameters, as ``librosa.feature.melspectrogram`` (``fmax=None`` means sr / 2).
        window: ``"hamming"`` (periodic, default) or ``"hann"``, or a tensor of ``win_length``.
        center: pad ``n_fft // 2`` zeros on both sides (frames ``T = 1 + N // hop_length``;
            ``1 + (N - 1) // hop_length`` for an odd n_fft, as librosa).
        amin: floor of the mel power before ``ln``.
        lengths: ``(B,)`` samples per item for a batch of different lengths; frames past an
            item's end are zero and each item equals its own unbatched result.
        backend: ``None`` (automatic), ``"reference"``, ``"cpp"``, ``"triton"`` or ``"cuda"``
            (the fused CUDA kernel; an n_fft its FFT does not take, see
            ``function.CUDA_MIN_FFT``, runs on the automatic choice among the others, with a
            warning).

    Returns:
        ``(3, T, n_mels)`` or ``(B, 3, T, n_mels)``; with ``lengths``, the pair
        ``(features, frame_lengths)``.
    """
    waveform = validate_waveform(waveform, batch=lengths is not None)
    sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax = check_params(
        sample_rate, n_fft, win_length, hop_length, n_mels, fmin, fmax, window)
    if isinstance(window, torch.Tensor):
        win = analysis_window(window, win_length, n_fft)
    else:
        win = _cached_window(window, win_length, n_fft, waveform.device, waveform.dtype)
    fb = _cached_bank(sample_rate, n_fft, n_mels, fmin, fmax, bool(htk),
                      waveform.device, waveform.dtype)
    return logmel_delta_with_bank(waveform, win, fb, hop_length, center, amin, lengths, backend)
