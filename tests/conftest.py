"""Test configuration.

Triton kernels run on the CPU through Triton's interpreter unless a CUDA GPU is present; the
variable must be set before any @triton.jit runs, hence before ssa_fast is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import ssa_fast  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def backends_for_tests(op: str | None = None) -> list[str]:
    """Every backend that can run here (the reference always can); with `op`, also the ones
    only some ops have (the hand-written CUDA kernels)."""
    cpu = ssa_fast.available_backends("cpu", op)
    gpu = ssa_fast.available_backends("cuda", op) if torch.cuda.is_available() else []
    return sorted(set(cpu) | set(gpu))


def device_for(backend: str) -> str:
    gpu = backend in ("triton", "cuda") and torch.cuda.is_available()
    return "cuda" if gpu else "cpu"


def speech_like(n: int, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """A voiced-speech-like float64 signal: gliding f0 with formant-weighted harmonics, syllable
    envelope, breath noise, a stretch of exact silence and a near-silent tail."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 20 * rng.standard_normal()
    phase = 2 * np.pi * np.cumsum(f0) / sr
    formants = (500 + 200 * rng.random(), 1500 + 300 * rng.random(), 2500 + 300 * rng.random())
    y = np.zeros(n)
    for h in range(1, 40):
        fh = h * f0.mean()
        if fh > sr / 2:
            break
        gain = sum(np.exp(-((fh - fc) / 180.0) ** 2) for fc in formants) + 0.02
        y += gain / h * np.sin(h * phase)
    envelope = 0.5 * (1 + np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6))) ** 2
    y = 0.3 * y * envelope + 0.01 * rng.standard_normal(n)
    if n > 4000:
        y[n // 3: n // 3 + 1600] = 0.0  # a pause
        y[-800:] *= 1e-4  # fading out
    return y


def noise(n: int, seed: int = 0) -> np.ndarray:
    return 0.3 * np.random.default_rng(seed).standard_normal(n)


@pytest.fixture(params=backends_for_tests())
def backend(request):
    return request.param
