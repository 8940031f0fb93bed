"""Forward pass and training step of ACRNN and SSA-CRNN-r (the `small` preset on the CPU, the
`paper` preset on CUDA), with model FLOPs per sample from `ssa_fast.forward_flops`.

A training step = forward, CE(emotion) (+ CE(speaker) for SSA-CRNN), backward, NAdam step, L1
projection. ``model_tflops`` = 3 x forward FLOPs x batch / median time (backward ~ 2x forward).
"""

import pytest
import torch

from ssa_fast.models import ACRNN, SSACRNN, forward_flops

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
PRESET = "paper" if DEVICE == "cuda" else "small"
BATCH = 40 if DEVICE == "cuda" else 8


def _model(name):
    if name == "acrnn":
        return ACRNN(4, preset=PRESET)
    return SSACRNN(4, 10, preset=PRESET, l1_constraint=True)


def _loss(model, x, e, s):
    if isinstance(model, SSACRNN):
        out = model(x)
        return (torch.nn.functional.cross_entropy(out.emotion_logits, e)
                + torch.nn.functional.cross_entropy(out.speaker_logits, s))
    return torch.nn.functional.cross_entropy(model(x), e)


@pytest.mark.parametrize("threads", [2], indirect=True, ids=["t2"])
@pytest.mark.parametrize("mode", ["forward", "train_step"])
@pytest.mark.parametrize("name", ["acrnn", "ssa_crnn_r"])
def test_model(run_bench, benchmark, name, mode, threads):
    benchmark.group = f"{name} {PRESET} {mode} {DEVICE} B={BATCH}"
    model = _model(name)
    flops = forward_flops(model)["total"]
    model = model.to(DEVICE)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 3, 300, 40, generator=g).to(DEVICE)
    e = torch.randint(0, 4, (BATCH,), generator=g).to(DEVICE)
    s = torch.randint(0, 10, (BATCH,), generator=g).to(DEVICE)
    if mode == "forward":
        model.eval()

        def fn():
            with torch.no_grad():
                return model(x)

        factor = 1
    else:
        model.train()
        opt = torch.optim.NAdam(model.parameters(), lr=1e-4)

        def fn():
            loss = _loss(model, x, e, s)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.project_()
            return loss

        factor = 3
    run_bench(fn, device=DEVICE, rounds=5 if DEVICE == "cpu" else None)
    benchmark.extra_info["forward_gflops_per_sample"] = flops / 1e9
    seconds = benchmark.stats.stats.median
    benchmark.extra_info["model_tflops"] = factor * flops * BATCH / seconds / 1e12
