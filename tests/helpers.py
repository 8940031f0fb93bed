"""Shared test helpers: the backends and devices to test, test signals, and the ground truth from
librosa (design.md section 2), in float64.

They live here, not in conftest.py: tests/train has a conftest.py of its own, and a plain
`from conftest import ...` gets whichever conftest pytest imported last.
librosa is imported by the function, not the module: on a machine without it (the GPU image) only
the tests that need the ground truth skip, not every test of the modules importing this one."""

import numpy as np
import pytest
import torch

import ssa_fast

# `ssa-fast cv` options for a test that looks at no figure: the table alone, about 2 s sooner
NO_FIGURES = ["--figure-format", "none"]


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


def librosa_logmel_delta(y: np.ndarray, sample_rate=16000, n_fft=512, win_length=400,
                         hop_length=160, n_mels=40, fmin=0.0, fmax=None, window="hamming",
                         center=True, htk=False, amin=1e-10) -> np.ndarray:
    """(3, T, n_mels) float64."""
    librosa = pytest.importorskip("librosa")
    S = librosa.feature.melspectrogram(
        y=np.asarray(y, dtype=np.float64), sr=sample_rate, n_fft=n_fft, hop_length=hop_length,
        win_length=win_length, window=window, center=center, pad_mode="constant", power=2.0,
        n_mels=n_mels, fmin=fmin, fmax=fmax if fmax is not None else sample_rate / 2, htk=htk)
    c = np.log(np.maximum(S, amin))
    d = librosa.feature.delta(c, width=5, order=1, mode="nearest", axis=-1)
    dd = librosa.feature.delta(d, width=5, order=1, mode="nearest", axis=-1)
    return np.stack([c, d, dd]).transpose(0, 2, 1)


def signal_when(args, ready, sig, *, env=None, timeout=300) -> tuple[int, str]:
    """Run ``args`` (a quiet command: its output is small), send it ``sig`` as soon as
    ``ready()`` holds (polled; an exception counts as not yet, e.g. a checkpoint being
    replaced), and wait for it: (return code, stderr). Fails if it ended before ``ready``."""
    import subprocess
    import time

    def _ready():
        try:
            return ready()
        except Exception:  # noqa: BLE001
            return False

    import signal

    def default_signals():  # as at a terminal, even when the tests run in a background job
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # (bash's `&` starts jobs ignoring SIGINT)

    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=default_signals)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and proc.poll() is None and not _ready():
            time.sleep(0.02)
        assert proc.poll() is None, f"{args[3] if len(args) > 3 else args} ended before the signal"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    return proc.returncode, err


def fresh_dispatch() -> None:
    """Empty every fused op's cache of looked-up implementations and dynamo's caches, so that a
    compile test sees a first call (as in a user's new process), whatever ran before it."""
    import torch._dynamo

    from ssa_fast.kernels.l1_project.function import KERNELS as l1
    from ssa_fast.kernels.logmel_delta.function import KERNELS as logmel
    from ssa_fast.kernels.ssa_attention.function import CORE

    for table in (l1, logmel, CORE):
        table._resolved.clear()
    torch._dynamo.reset()


def run_cli(*args, timeout=600, cwd=None):
    """``ssa-fast ARGS`` in a subprocess, as a user runs it (the result, whatever its status)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ssa_fast.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
