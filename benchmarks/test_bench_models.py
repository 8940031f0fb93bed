"""Forward pass and training step of ACRNN and SSA-CRNN-r (the `small` preset on the CPU, the
`paper` preset on CUDA), with model FLOPs per sample from `ssa_fast.forward_flops`.

A training step = forward, CE(emotion) (+ CE(speaker) for SSA-CRNN), backward, NAdam step, L1
projection (``ssa_fast.bench.train_step_workload``). ``model_tflops`` = 3 x forward FLOPs x batch
/ median time (backward ~ 2x forward).
"""

import pytest
import torch

from ssa_fast.bench import train_step_workload

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRESET = "paper" if DEVICE == "cuda" else "small"
BATCH = 40 if DEVICE == "cuda" else 8


@pytest.mark.parametrize("threads", [2], indirect=True, ids=["t2"])
@pytest.mark.parametrize("mode", ["forward", "train_step"])
@pytest.mark.parametrize("name", ["acrnn", "ssa-crnn-r"])
def test_model(run_bench, benchmark, name, mode, threads):
    benchmark.group = f"{name} {PRESET} {mode} {DEVICE} B={BATCH}"
    fn, flops = train_step_workload(name, PRESET, BATCH, DEVICE, forward_only=mode == "forward")
    run_bench(fn, device=DEVICE, rounds=5 if DEVICE == "cpu" else None)
    benchmark.extra_info["forward_gflops_per_sample"] = flops / 1e9
    factor = 1 if mode == "forward" else 3
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["model_tflops"] = factor * flops * BATCH / seconds / 1e12
