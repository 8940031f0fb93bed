"""logmel_delta throughput: ours vs the peers users would pick vs the FFT floor.

Every row of one group runs the same input in the same process; ``audio_h_per_s`` is hours of
audio processed per second (median time). Peers: librosa (CPU), nnAudio, torchaudio's
MelSpectrogram + log + two ComputeDeltas and torch.compile of that chain (rows skipped where
torchaudio is absent or does not load), torch.compile of the reference, torch.stft alone
(``stft_floor``) and with its magnitude (``stft_abs``). Targets (design.md section 9): cpp >= 4x
librosa at one thread and within 1.3x of the floor (torch.stft of the same frames); on CUDA at
1024 x 10 s >= 3000 h/s, >= 3x compile_torchaudio, >= 2.5x stft_abs; at 512 x 3 s faster than
stft_abs.
"""

import numpy as np
import pytest
import torch

import ssa_fast
from ssa_fast.bench import (
    dry_run,
    gpu_bench_device,
    logmel_min_bytes,
    logmel_signal,
    logmel_workload,
)

SR = 16000
CPU_IMPLS = ["cpp", "reference", "librosa", "torchaudio", "stft_floor"]
# "cuda": the fused kernel of csrc/cuda/logmel_delta.cu, "cuda_regfft" the second one
# (csrc/cuda/logmel_delta_regfft.cu, opt-in) side by side (rows skipped where they are not built)
GPU_IMPLS = ["cuda", "cuda_regfft", "triton", "reference", "compile_reference", "torchaudio",
             "compile_torchaudio", "nnaudio", "stft_floor", "stft_abs"]


def _need_torchaudio() -> None:
    """Skip the row without a working torchaudio: absent, or built for another torch (its
    extension then fails to load with an OSError, not an ImportError)."""
    try:
        import torchaudio.transforms  # noqa: F401
    except Exception as exc:
        pytest.skip(f"torchaudio does not import: {type(exc).__name__}: {exc}")


def _record(benchmark, seconds, batch):
    hours = seconds * batch / 3600.0
    benchmark.extra_info["audio_hours"] = hours
    benchmark.extra_info["audio_h_per_s"] = hours / benchmark.stats.stats.median


def _impl(name: str, x: torch.Tensor):
    if name in ("torchaudio", "compile_torchaudio"):
        _need_torchaudio()
    if name in ("cpp", "triton", "cuda", "cuda_regfft", "reference", "compile_reference",
                "torchaudio", "compile_torchaudio", "stft_floor", "stft_abs"):
        return logmel_workload(name, x)
    if name == "librosa":
        librosa = pytest.importorskip("librosa")
        y = x.cpu().numpy()
        return lambda: librosa.feature.melspectrogram(
            y=y, sr=SR, n_fft=512, hop_length=160, win_length=400, window="hamming",
            center=True, pad_mode="constant", power=2.0, n_mels=40)
    if name == "nnaudio":
        features = pytest.importorskip("nnAudio.features")
        layer = features.MelSpectrogram(sr=SR, n_fft=512, win_length=400, hop_length=160,
                                        n_mels=40, window="hamming", center=True,
                                        pad_mode="constant", power=2.0, trainable_mel=False,
                                        trainable_STFT=False, verbose=False).to(x.device)
        return lambda: layer(x)
    raise ValueError(name)


CPU_SHAPES = [(3, 1), (60, 1), (3, 32), (60, 32)]
# (10 s x 1024: the fused kernel's target shape, >= 3000 h/s; 60 s x 1: one long utterance)
GPU_SHAPES = [(0.5, 2)] if dry_run() else [(3, 1), (60, 1), (3, 512), (60, 256), (10, 1024)]
GPU = gpu_bench_device()


def _ids(shapes):
    return [f"{s}s-x{b}" for s, b in shapes]


@pytest.mark.parametrize("threads", [1, 2], indirect=True, ids=["t1", "t2"])
@pytest.mark.parametrize("seconds, batch", CPU_SHAPES, ids=_ids(CPU_SHAPES))
@pytest.mark.parametrize("impl", CPU_IMPLS)
def test_logmel_delta_cpu(run_bench, benchmark, impl, seconds, batch, threads):
    if impl == "cpp" and "cpp" not in ssa_fast.available_backends("cpu"):
        pytest.fail("the cpp backend is not built")
    benchmark.group = f"logmel_delta cpu {seconds}s x{batch} threads={threads}"
    x = logmel_signal(seconds, batch, "cpu")
    rounds = 5 if seconds * batch >= 600 and impl in ("librosa", "reference") else None
    run_bench(_impl(impl, x), device="cpu", rounds=rounds)
    _record(benchmark, seconds, batch)


@pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU")
@pytest.mark.parametrize("seconds, batch", GPU_SHAPES, ids=_ids(GPU_SHAPES))
@pytest.mark.parametrize("impl", GPU_IMPLS)
def test_logmel_delta_cuda(run_bench, benchmark, impl, seconds, batch):
    if dry_run() and impl.startswith("compile_"):
        pytest.skip("dry run: torch.compile of the reference takes minutes on the CPU")
    if impl.startswith("cuda") and "cuda" not in ssa_fast.available_backends(GPU, "logmel_delta"):
        pytest.skip("the fused CUDA kernel is not built (extension without CUDA) or no GPU")
    benchmark.group = f"logmel_delta {GPU} {seconds}s x{batch}"
    x = logmel_signal(seconds, batch, GPU)
    run_bench(_impl(impl, x), device=GPU,
              bytes_moved=logmel_min_bytes(batch, int(seconds * SR)))
    _record(benchmark, seconds, batch)


def test_cpu_rows_agree():
    """Not a timing: the rows being compared compute the same features (guards the benchmark)."""
    x = logmel_signal(3, 2, "cpu")
    ref = _impl("reference", x)()
    np.testing.assert_allclose(_impl("cpp", x)().numpy(), ref.numpy(), atol=1e-4)


def test_torchaudio_row_agrees():
    """Not a timing: the torchaudio peer computes the library's features (same window, bank, log
    floor and deltas), so its row compares like with like."""
    x = logmel_signal(1, 2, "cpu")
    ref = _impl("reference", x)()
    out = _impl("torchaudio", x)()
    assert out.shape == ref.shape
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=1e-4)
