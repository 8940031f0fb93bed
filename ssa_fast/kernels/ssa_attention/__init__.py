"""Self Speaker Attention (design.md section 5): public function and input validation."""

from __future__ import annotations

import math

import torch

from ... import _backend
from . import native as _native  # noqa: F401  (registers the fake kernels of the native ops)
from .function import CORE, compute_dtype, ssa_attention_apply
from .reference import ssa_attention_literal

__all__ = ["ssa_attention", "ssa_attention_literal"]

COMBINES = ("concat", "sum")


def _check_tensor(t, name: str, shape: tuple, like: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {t.dtype}")
    if t.device != like.device:
        raise ValueError(f"{name} is on {t.device} but h_em is on {like.device}")


def ssa_attention(h_em: torch.Tensor, h_sp: torch.Tensor, w_q: torch.Tensor,
                  w_k_em: torch.Tensor, w_k_sp: torch.Tensor, w_v_em: torch.Tensor,
                  w_v_sp: torch.Tensor, *, scale: float | None = None, combine: str = "concat",
                  backend: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Self Speaker Attention of the emotion BLSTM output over itself and the speaker's.

    Args:
        h_em, h_sp: ``(B, T, d)`` outputs of the emotion and speaker BLSTMs.
        w_q: ``(T,)`` frame weighting that forms the query ``q = h_em^T w_q``.
        w_k_em, w_k_sp, w_v_em, w_v_sp: ``(d, d)`` key / value maps, applied as ``h @ W``.
        scale: score scale, default ``1 / sqrt(T)`` (the paper's).
        combine: ``"concat"`` -> c ``(B, 2d)`` = [c_em ; c_sp]; ``"sum"`` -> ``(B, d)``.
        backend: ``None`` (automatic), ``"reference"``, ``"cpp"`` or ``"triton"``.

    Returns:
        ``(c, alpha)`` with alpha ``(B, 2T)``: softmax weights, the T self rows first.
    """
    if not isinstance(h_em, torch.Tensor):
        raise TypeError(f"h_em must be a torch.Tensor of shape (B, T, d), got "
                        f"{type(h_em).__name__}")
    if h_em.dim() != 3:
        raise ValueError(f"h_em must be a tensor of shape (B, T, d), got {tuple(h_em.shape)}")
    B, T, d = h_em.shape
    if B == 0 or T == 0 or d == 0:
        raise ValueError(f"h_em must be non-empty, got shape {tuple(h_em.shape)}")
    _check_tensor(h_em, "h_em", (B, T, d), h_em)
    _check_tensor(h_sp, "h_sp", (B, T, d), h_em)
    _check_tensor(w_q, "w_q", (T,), h_em)
    for name, w in (("w_k_em", w_k_em), ("w_k_sp", w_k_sp), ("w_v_em", w_v_em),
                    ("w_v_sp", w_v_sp)):
        _check_tensor(w, name, (d, d), h_em)
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    if scale is None:
        scale = 1.0 / math.sqrt(T)
    else:  # (a number, a 0-d tensor or array; float()'s own errors named nothing)
        try:
            if isinstance(scale, bool):
                raise TypeError("a bool")
            scale = float(scale)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"scale must be a real number (or None: 1 / sqrt(T)), got "
                            f"{type(scale).__name__} {scale!r}") from None
    if not math.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")

    # the backend is chosen for the dtype the op computes in (function.py's rule), which any
    # input can raise to float64, not for h_em's alone
    work = compute_dtype(h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp)
    name = _backend.resolve(CORE, h_em.device, backend, work)
    return ssa_attention_apply(name, h_em, h_sp, w_q, w_k_em, w_k_sp, w_v_em, w_v_sp, scale,
                               combine)
