"""Training step and inference of the models, with model-FLOPs utilisation.

A training step = forward and losses (under bf16 autocast in the fast configuration),
CE(emotion) (+ CE(speaker) for SSA-CRNN), backward, NAdam step, L1 projection
(``ssa_fast.bench.train_step_workload``, which restates the training loop's inline step).
``model_tflops`` = 3 x forward FLOPs x batch / median time (backward ~ 2x forward); on the GPU
``fraction_of_floor`` is the model-FLOPs utilisation against the bf16 matmul peak measured in the
same session.

CPU rows: the `small` preset. GPU rows (``*_cuda``), the `paper` preset at B=40 (design.md
section 9: the SSA-CRNN-r step in bf16 >= 3x the eager fp32 reference model and >= 40% MFU):
``eager_fp32_reference`` (the reference backend, fp32, no tuning: the baseline),
``eager_fp32`` (the Triton kernels), ``bf16_cl`` (bf16 autocast, channels_last, cudnn.benchmark),
``bf16_cl_compile`` (the same with torch.compile of the model, as ``--compile`` does). CUDA
graphs are not used: the optimiser step and the L1 projection read host-side state.
Inference: segments per second at batch 1 (one stream) and 512 (bulk scoring).
"""

import pytest

from ssa_fast.bench import dry_run, gpu_bench_device, train_step_workload

GPU = gpu_bench_device()
GPU_PRESET, GPU_BATCH = ("small", 2) if dry_run() else ("paper", 40)
SEGMENT = 40 if dry_run() else 300  # frames per segment (300 = 3 s, the paper's)
INFER_BATCHES = [2] if dry_run() else [1, 512]
CONFIGS = {
    "eager_fp32_reference": dict(backend="reference"),
    "eager_fp32": dict(),
    "bf16_cl": dict(bf16=True, channels_last=True),
    "bf16_cl_compile": dict(bf16=True, channels_last=True, compile=True),
}


def _skip_in_dry_run(config: str) -> None:
    if dry_run() and config.endswith("compile"):
        pytest.skip("dry run: torch.compile of a model takes minutes on the CPU")


def _record_flops(benchmark, flops: float, batch: int, factor: int) -> None:
    benchmark.extra_info["forward_gflops_per_sample"] = flops / 1e9
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["model_tflops"] = factor * flops * batch / seconds / 1e12


@pytest.mark.parametrize("threads", [2], indirect=True, ids=["t2"])
@pytest.mark.parametrize("mode", ["forward", "train_step"])
@pytest.mark.parametrize("name", ["acrnn", "ssa-crnn-r"])
def test_model(run_bench, benchmark, name, mode, threads):
    benchmark.group = f"{name} small {mode} cpu B=8"
    fn, flops = train_step_workload(name, "small", 8, "cpu", forward_only=mode == "forward")
    run_bench(fn, device="cpu", rounds=5)
    _record_flops(benchmark, flops, 8, 1 if mode == "forward" else 3)


@pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU")
@pytest.mark.parametrize("config", list(CONFIGS))
@pytest.mark.parametrize("name", ["ssa-crnn-r", "acrnn"])
def test_train_step_cuda(run_bench, benchmark, name, config):
    if name == "acrnn" and config == "eager_fp32_reference":
        pytest.skip("ACRNN runs no fused op besides l1_project_: eager_fp32 is its reference")
    _skip_in_dry_run(config)
    benchmark.group = f"{name} {GPU_PRESET} train step {GPU} B={GPU_BATCH}"
    fn, flops = train_step_workload(name, GPU_PRESET, GPU_BATCH, GPU, segment_frames=SEGMENT,
                                    **CONFIGS[config])
    run_bench(fn, device=GPU, flops=3 * flops * GPU_BATCH)
    _record_flops(benchmark, flops, GPU_BATCH, 3)


@pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU")
@pytest.mark.parametrize("config", ["eager_fp32", "bf16_cl", "bf16_cl_compile"])
@pytest.mark.parametrize("batch", INFER_BATCHES, ids=[f"B{b}" for b in INFER_BATCHES])
def test_inference_cuda(run_bench, benchmark, batch, config):
    _skip_in_dry_run(config)
    benchmark.group = f"ssa-crnn-r {GPU_PRESET} inference {GPU} B={batch}"
    fn, flops = train_step_workload("ssa-crnn-r", GPU_PRESET, batch, GPU, forward_only=True,
                                    segment_frames=SEGMENT, **CONFIGS[config])
    run_bench(fn, device=GPU, flops=flops * batch)
    _record_flops(benchmark, flops, batch, 1)
    benchmark.extra_info["segments_per_s"] = batch / benchmark.stats.stats.median
