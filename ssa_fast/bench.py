"""Workloads of the three fused ops and of a training step, and a quick timer for them.

The pytest-benchmark suite (``benchmarks/``, ``make bench``) and ``ssa-fast bench`` build their
workloads here, so both time the same thing. Every builder returns a function of no arguments
that runs the workload once; ``time_ms`` synchronises the device around each call.

Implementations: a fused backend name ("cpp", "triton", "cuda"; log-Mel also "cuda_regfft": the
second CUDA kernel, opt-in by ``SSA_FAST_LOGMEL_REGFFT``), "reference" (the pure-torch fast
form), "literal" (SSA: the paper-literal form with materialised keys and values), "compile_<name>"
(torch.compile of that reference), "cudagraph_<name>" (SSA on CUDA: captured in a CUDA graph and
replayed), "triton_two_kernel" (SSA: the triton backend's two-kernel path at any batch),
"triton_large" (SSA: its large-batch kernels of design.md 10.2 at any batch) and,
for log-Mel, the peers "torchaudio" (the chain a torchaudio user writes, optional: torchaudio is
not a dependency), "stft_floor" and "stft_abs".
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import numpy as np
import torch

from ._backend import describe_device  # noqa: F401 (this module's API: benchmarks/conftest.py)
from .data.segments import SEGMENT_FRAMES
from .models.registry import PAPER_MODELS, model_spec

SR = 16000


def dry_run() -> bool:
    """``SSA_FAST_DRY_RUN=1``: the GPU benchmarks run their code on the CPU at tiny sizes (the
    GPU session's ``--dry-run``), so a first real run cannot die of a typo."""
    import os

    return os.environ.get("SSA_FAST_DRY_RUN", "") not in ("", "0")


def gpu_bench_device() -> str | None:
    """Where the GPU rows run: "cuda", "cpu" in a dry run, None (skip them) otherwise."""
    if torch.cuda.is_available():
        return "cuda"
    return "cpu" if dry_run() else None


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, device: torch.device | str, *, repeats: int = 10, warmup: int = 2,
            budget_s: float = 2.0) -> float:
    """Median milliseconds of ``fn()``; stops early once ``budget_s`` is spent (at least 3 runs)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times, spent = [], 0.0
    while len(times) < repeats and (len(times) < 3 or spent < budget_s):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return 1e3 * float(np.median(times))


# -- logmel_delta ------------------------------------------------------------------------------

def logmel_signal(seconds: float, batch: int, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return (0.1 * torch.randn(batch, int(seconds * SR), generator=g)).to(device)


@contextlib.contextmanager
def logmel_cuda_kernel(regfft: bool):
    """The log-Mel CUDA kernel backend="cuda" runs inside: the regfft kernel or the default one,
    whatever SSA_FAST_LOGMEL_REGFFT says outside (the flag is read at each call), so that one
    process times and checks both."""
    from .kernels.logmel_delta.native import REGFFT_ENV

    old = os.environ.get(REGFFT_ENV)
    os.environ[REGFFT_ENV] = "1" if regfft else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ[REGFFT_ENV]
        else:
            os.environ[REGFFT_ENV] = old


def logmel_workload(impl: str, x: torch.Tensor):
    from .kernels.logmel_delta import logmel_delta
    from .kernels.logmel_delta.filters import analysis_window, mel_filterbank
    from .kernels.logmel_delta.reference import logmel_delta_reference

    window = analysis_window("hamming", 400, 512).float().to(x.device)
    fb = mel_filterbank(SR, 512, 40).float().to(x.device)
    if impl in ("cuda", "cuda_regfft"):
        def fused_cuda():
            with logmel_cuda_kernel(impl == "cuda_regfft"):
                return logmel_delta(x, backend="cuda")

        return fused_cuda
    if impl in ("cpp", "triton"):
        return lambda: logmel_delta(x, backend=impl)
    if impl in ("reference", "compile_reference"):
        f = logmel_delta_reference
        if impl.startswith("compile_"):
            f = torch.compile(logmel_delta_reference, dynamic=False)
        return lambda: f(x, None, window, fb, 160, True, 1e-10)
    if impl in ("torchaudio", "compile_torchaudio"):
        chain = torchaudio_logmel_chain(fb)
        if impl.startswith("compile_"):
            chain = torch.compile(chain, dynamic=False)
        return lambda: chain(x)
    if impl in ("stft_floor", "stft_abs"):
        # The FFT of the same frames with the same window: a floor no fused chain can beat
        # without a faster FFT; "stft_abs" adds the magnitude, the least a consumer of the
        # spectrum computes (the "torch.stft + abs").
        def stft():
            spec = torch.stft(x, 512, hop_length=160, win_length=512, window=window,
                              center=True, pad_mode="constant", return_complex=True)
            return spec.abs() if impl == "stft_abs" else spec

        return stft
    raise ValueError(f"unknown logmel_delta implementation {impl!r}")


def torchaudio_logmel_chain(mel_fb: torch.Tensor):
    """The 3-D log-Mel as a torchaudio user writes it: ``MelSpectrogram`` (periodic Hamming of 400
    samples centred in 512, hop 160, centred frames with zero padding, power 2) with this library's
    mel bank (so that every row computes the same features), ``ln(max(., 1e-10))``, two
    ``ComputeDeltas`` (width 5, edges replicated), stacked as ``(B, 3, T, n_mels)`` (a transposed
    view, no copy). Raises ImportError without torchaudio (it is not a dependency)."""
    import torchaudio.transforms as ta

    n_mels = mel_fb.shape[0]
    mel = ta.MelSpectrogram(sample_rate=SR, n_fft=512, win_length=400, hop_length=160,
                            n_mels=n_mels, window_fn=torch.hamming_window, center=True,
                            pad_mode="constant", power=2.0).to(mel_fb.device)
    mel.mel_scale.fb.copy_(mel_fb.T)  # (n_freqs, n_mels) there
    deltas = ta.ComputeDeltas(win_length=5, mode="replicate")

    def chain(x: torch.Tensor) -> torch.Tensor:
        c = torch.log(torch.clamp(mel(x), min=1e-10))  # (B, n_mels, T)
        d = deltas(c)
        return torch.stack((c, d, deltas(d)), dim=1).transpose(-1, -2)

    return chain


# -- ssa_attention -----------------------------------------------------------------------------

def ssa_inputs(B: int, T: int, d: int, device) -> list[torch.Tensor]:
    """h_em, h_sp (B, T, d), w_q (T,), W_k_em, W_k_sp, W_v_em, W_v_sp (d, d); all need grad."""
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(B, T, d, generator=g), torch.randn(B, T, d, generator=g),
         torch.randn(T, generator=g)] + [torch.randn(d, d, generator=g) / math.sqrt(d)
                                         for _ in range(4)]
    return [x.to(device).requires_grad_(True) for x in t]


def ssa_workload(impl: str, inputs: list[torch.Tensor]):
    """Forward and backward of SSA (all seven gradients) with a random output gradient."""
    from .kernels.ssa_attention import ssa_attention
    from .kernels.ssa_attention.reference import ssa_attention_fast, ssa_attention_literal

    if impl.startswith("cudagraph_"):
        return _cuda_graph(ssa_workload(impl.removeprefix("cudagraph_"), inputs))
    T = inputs[0].shape[1]
    scale = 1 / math.sqrt(T)
    base = impl.removeprefix("compile_")
    if base in ("cpp", "triton"):
        fn = lambda *a: ssa_attention(*a, backend=base)
    elif base == "triton_two_kernel":  # the triton backend's path for large batches, forced
        from .kernels.ssa_attention.function import SSAAttentionFunction

        fn = lambda *a: SSAAttentionFunction.apply(*a, scale, "concat", "triton")
    elif base == "triton_large":  # the large-batch kernels (SSA_FAST_SSA_LARGE=1's), forced
        from .kernels.ssa_attention.triton_large import SSALargeFunction

        fn = lambda *a: SSALargeFunction.apply(*a, scale, "concat")
    elif base == "reference":
        fn = lambda *a: ssa_attention_fast(*a, scale, "concat")
    elif base == "literal":
        fn = lambda *a: ssa_attention_literal(*a, scale, "concat")
    else:
        raise ValueError(f"unknown ssa_attention implementation {impl!r}")
    if impl.startswith("compile_"):
        fn = torch.compile(fn)
    B, _, d = inputs[0].shape
    gc = torch.randn(B, 2 * d, device=inputs[0].device)

    def step():
        c, alpha = fn(*inputs)
        return torch.autograd.grad((c * gc).sum() + alpha.sum(), inputs)

    return step


def _cuda_graph(step):
    """``step`` captured once in a CUDA graph; returns its replay: the device time of the
    kernels without the host's launch overhead (what the launch-bound rows would cost if the
    caller captured them)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # warm-up: compile, autotune, allocator
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph.replay


def ssa_min_bytes(B: int, T: int, d: int, itemsize: int = 4) -> int:
    """h_em and h_sp read by the forward and the backward, dh_em and dh_sp written."""
    return 6 * B * T * d * itemsize


# -- l1_project_ -------------------------------------------------------------------------------

def l1_workload(impl: str, K: int, n: int, N: int, device):
    from .kernels.l1_project import l1_project_, l1_project_reference_

    g = torch.Generator().manual_seed(0)
    w = torch.randn(K, n, generator=g).to(device)
    x = torch.randn(N, n, generator=g).to(device)
    if impl == "reference":
        return lambda: l1_project_reference_(w, x)
    return lambda: l1_project_(w, x, backend=impl)


# -- device ceilings and floors ---------------------------------------------------------------

def _per_call_ms(fn, device, *, calls: int, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time of ``calls`` back-to-back calls (CUDA events on a
    GPU, so launch gaps are amortised; a synchronised host clock elsewhere)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        if torch.device(device).type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(calls):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / calls)
        else:
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            sync(device)
            times.append(1e3 * (time.perf_counter() - t0) / calls)
    return float(np.median(times))


def device_ceilings(device: torch.device | str, *, copy_bytes: int = 2 << 30,
                    matmul_n: int = 8192) -> dict:
    """The two ceilings every floor is measured against, taken on ``device`` in this process:
    device-to-device copy bandwidth (bytes read + written per second, random data) and the bf16
    matrix-product rate (2 n^3 / s, random data). The defaults fill an H100; pass small sizes
    for a CPU dry run."""
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    n = copy_bytes // 4
    bufs = [torch.rand(n, generator=g, device=device)]
    bufs.append(torch.empty_like(bufs[0]))
    copy_ms = _per_call_ms(lambda: bufs[1].copy_(bufs[0]), device, calls=10)
    bufs.clear()  # free 2 x copy_bytes before the matrices
    a = torch.randn(matmul_n, matmul_n, generator=g, device=device).to(torch.bfloat16)
    b = torch.randn(matmul_n, matmul_n, generator=g, device=device).to(torch.bfloat16)
    mm_ms = _per_call_ms(lambda: a @ b, device, calls=10)
    return {"device": describe_device(device),
            "copy_GB_per_s": 2 * n * 4 / (copy_ms * 1e-3) / 1e9,
            "bf16_matmul_TFLOP_per_s": 2 * matmul_n ** 3 / (mm_ms * 1e-3) / 1e12,
            "copy_bytes": 2 * n * 4, "matmul_n": matmul_n}


def floor_ms(ceilings: dict, *, bytes_moved: float = 0.0, flops: float = 0.0) -> dict:
    """The physical floor of a workload: bytes / measured copy bandwidth and FLOPs / measured bf16
    matrix peak; the larger bounds it. (The bf16 peak is optimistic for float32 work: an fp32
    kernel that is FLOP-bound has a higher real floor.)"""
    mem = bytes_moved / (ceilings["copy_GB_per_s"] * 1e9) * 1e3
    arith = flops / (ceilings["bf16_matmul_TFLOP_per_s"] * 1e12) * 1e3
    return {"floor_ms": max(mem, arith), "bound": "memory" if mem >= arith else "flops",
            "floor_memory_ms": mem, "floor_flops_ms": arith}


def logmel_min_bytes(batch: int, samples: int, n_mels: int = 40, hop: int = 160) -> int:
    """The waveform read once and the (B, 3, T, n_mels) float32 features written once."""
    frames = samples // hop + 1
    return 4 * batch * samples + 4 * batch * 3 * frames * n_mels


def ssa_flops(B: int, T: int, d: int) -> int:
    """Forward (scores and weighted sums over 2T rows: 8BTd) and backward (h.dp, dh, dqk: 12BTd)."""
    return 20 * B * T * d


def l1_min_bytes(K: int, n: int, N: int, itemsize: int = 4) -> int:
    """The weight read and written, the classifier input read."""
    return (2 * K * n + N * n) * itemsize


# -- a training step and inference -------------------------------------------------------------

def _fast_setup(model, x, device, *, bf16: bool, channels_last: bool):
    """The fast configuration of a CUDA run: cudnn autotuning and channels_last memory format
    (the convolutions' preferred layout for bf16 tensor cores). bf16 autocast is applied by the
    callers around the forward pass, as the training loop does."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = bf16 or channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    return model, x


def train_step_workload(model_name: str, preset: str, batch: int, device, *,
                        n_speakers: int = 10, forward_only: bool = False, bf16: bool = False,
                        channels_last: bool = False, compile: bool = False,
                        backend: str | None = None, segment_frames: int = SEGMENT_FRAMES,
                        n_mels: int = 40):
    """One step of ``model_name`` ("acrnn", "acrnn-r", "ssa-crnn", "ssa-crnn-r") as the training
    loop runs it: ``ssa_fast.train.loop.train_step`` (forward and losses under bf16 autocast
    when ``bf16``, CE(emotion) (+ CE(speaker) for SSA-CRNN), backward, NAdam, L1 projection);
    with ``compile`` the model is wrapped in torch.compile as the loop's ``--compile`` does.
    Returns (fn, forward FLOPs per sample)."""
    from .models import forward_flops
    from .train.loop import TrainConfig, build_model, train_step

    device = torch.device(device)
    cfg = TrainConfig(model=model_name, preset=preset, backend=backend)
    model = build_model(cfg, 4, n_speakers, segment_frames, n_mels)
    model = model.to(device)
    # counted on the device: a model built for one backend (backend="triton") runs only there
    flops = forward_flops(model, (3, segment_frames, n_mels))["total"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, segment_frames, n_mels, generator=g).to(device)
    e = torch.randint(0, 4, (batch,), generator=g).to(device)
    s = torch.randint(0, n_speakers, (batch,), generator=g).to(device)
    model, x = _fast_setup(model, x, device, bf16=bf16, channels_last=channels_last)
    step_model = torch.compile(model) if compile else model
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
    if forward_only:
        model.eval()

        def forward():
            with torch.no_grad(), torch.autocast(**autocast):
                return step_model(x).emotion_logits

        return forward, flops
    model.train()
    opt = torch.optim.NAdam(model.parameters(), lr=1e-4)

    speakers = s if model_spec(model_name).speaker_attentive else None

    def step():
        return train_step(step_model, model, opt, x, e, speakers, bf16=bf16).loss

    return step, flops


# -- the quick table of `ssa-fast bench` -------------------------------------------------------

OPS = ("logmel_delta", "ssa_attention", "l1_project_", "train_step")  # what quick_bench times


def quick_bench(device: torch.device | str, *, ops=OPS, compile: bool = False,
                budget_s: float = 2.0, progress: bool = True) -> list[dict]:
    """Time every available implementation of each op at the shapes of design.md section 9 on
    ``device``; returns rows {op, case, impl, ms, speedup} (speedup over the row's baseline)."""
    from tqdm import tqdm

    from ._backend import available_backends

    device = torch.device(device)
    cuda = device.type == "cuda"
    fused = [b for b in available_backends(device) if b != "reference"]
    extra = ["compile_reference"] if compile else []
    preset = "paper" if cuda else "small"
    batch = 40 if cuda else 8
    plan = []
    if "logmel_delta" in ops:
        for secs, b in ([(60, 1), (3, 512)] if cuda else [(60, 1), (3, 32)]):
            x = logmel_signal(secs, b, device)
            regfft = ["cuda_regfft"] if "cuda" in available_backends(device, "logmel_delta") \
                else []
            for impl in fused + regfft + ["reference"] + extra + ["stft_floor"]:
                plan.append(("logmel_delta", f"{b} x {secs} s", impl, "reference",
                             lambda impl=impl, x=x: logmel_workload(impl, x)))
    if "ssa_attention" in ops:
        for B in ([40, 4096] if cuda else [40]):
            inputs = ssa_inputs(B, 150, 256, device)
            impls = fused + ["reference", "literal"] + (["compile_literal"] if compile else [])
            for impl in impls:
                plan.append(("ssa_attention fwd+bwd", f"B={B} T=150 d=256", impl, "literal",
                             lambda impl=impl, inputs=inputs: ssa_workload(impl, inputs)))
    if "l1_project_" in ops:
        for impl in fused + ["reference"]:
            plan.append(("l1_project_", "K=4 n=128 N=40", impl, "reference",
                         lambda impl=impl: l1_workload(impl, 4, 128, 40, device)))
    if "train_step" in ops:
        for m in PAPER_MODELS:
            plan.append(("train step", f"{preset} B={batch}", m, None,
                         lambda m=m: train_step_workload(m, preset, batch, device)[0]))
    rows = []
    for op, case, impl, baseline, build in tqdm(plan, desc="bench", unit="row",
                                                disable=None if progress else True):
        rows.append({"op": op, "case": case, "impl": impl, "baseline": baseline,
                     "ms": time_ms(build(), device, budget_s=budget_s)})
    for r in rows:
        base = [b["ms"] for b in rows if (b["op"], b["case"], b["impl"]) ==
                (r["op"], r["case"], r["baseline"])]
        r["speedup"] = base[0] / r["ms"] if base else None
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| op | case | implementation | ms | speed-up |", "|---|---|---|---:|---:|"]
    for r in rows:
        up = "" if r["speedup"] is None else f"{r['speedup']:.2f}x vs {r['baseline']}"
        lines.append(f"| {r['op']} | {r['case']} | {r['impl']} | {r['ms']:.3f} | {up} |")
    return "\n".join(lines)
