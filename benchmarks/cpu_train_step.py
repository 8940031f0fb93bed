"""Milliseconds per training step of the demo's "-r" models on the CPU, as `ssa-fast cv` takes
them: forward, both losses, backward, NAdam step and the L1 projection; `small` preset, batches of
40 segments of 300 frames (the demo's), median over the timed steps after a warm-up.

    python benchmarks/cpu_train_step.py --threads 2
    python benchmarks/cpu_train_step.py --threads 2 --bf16    # under bf16 autocast, as --bf16

For an A/B of a change, run it alternately in checkouts of the two commits (benchmarks/RESULTS.md
quotes the medians of 5 such pairs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ssa_fast.models import ACRNN, SSACRNN


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=40)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--bf16", action="store_true", help="the forward under bf16 autocast")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 300, 40)
    emotion = torch.randint(0, 4, (args.batch,))
    speaker = torch.randint(0, 6, (args.batch,))
    models = {"acrnn-r": ACRNN(4, "small", l1_constraint=True, logit_scale=300.0),
              "ssa-crnn-r": SSACRNN(4, 6, "small", logit_scale=300.0)}
    for name, model in models.items():
        opt = torch.optim.NAdam(model.parameters(), lr=1e-3)
        times = []
        for _ in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            with torch.autocast("cpu", torch.bfloat16, enabled=args.bf16):
                out = model(x)
            loss = F.cross_entropy(out.emotion_logits.float(), emotion)
            if out.speaker_logits is not None:
                loss = loss + F.cross_entropy(out.speaker_logits.float(), speaker)
            opt.zero_grad()
            loss.backward()
            opt.step()
            model.project_(out)
            times.append(time.perf_counter() - t0)
        ms = 1000 * statistics.median(times[args.warmup:])
        print(f"{name}: {ms:.0f} ms per step (B={args.batch}, {args.threads} threads"
              f"{', bf16 autocast' if args.bf16 else ''})", flush=True)


if __name__ == "__main__":
    main()
