"""Device time per kernel of SSA forward + backward at a large batch, for the large-batch path
(``triton_large``, design.md 10.2) beside the two-kernel path (``triton_two_kernel``), with the
bytes each of the new kernels must move and the bandwidth that makes.

    python benchmarks/ssa_large_profile.py                    # B=4096, T=150, d=256, CUDA
    python benchmarks/ssa_large_profile.py --B 512 --T 151 --d 200
    SSA_FAST_DRY_RUN=1 TRITON_INTERPRET=1 python benchmarks/ssa_large_profile.py   # plumbing only

The pytest suite's rows time the whole step; this says which kernel holds the time: the forward
kernel (3 B T d of h, one of them a re-read meant to hit L2, plus 2 d^2 floats of W_k per item
from L2), K1 (reads h_em and h_sp, writes dh_sp: 3 B T d) and K2 (reads h_em, writes dh_em: 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssa_fast.bench import dry_run, ssa_inputs, ssa_min_bytes, ssa_workload  # noqa: E402


def kernel_bytes(B: int, T: int, d: int, itemsize: int = 4) -> dict[str, int]:
    """DRAM bytes each large-batch kernel cannot avoid (h re-read by the forward not counted)."""
    btd = B * T * d * itemsize
    return {"_ssa_large_fwd_kernel": 2 * btd, "_ssa_large_bwd_rows_kernel": 3 * btd,
            "_ssa_large_bwd_em_kernel": 2 * btd}


def profile(impl: str, B: int, T: int, d: int, device: str, steps: int) -> list[tuple]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step = ssa_workload(impl, ssa_inputs(B, T, d, device))
    for _ in range(2):  # compile, allocator
        step()
    cuda = device == "cuda"
    acts = [ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    with torch_profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        us = (e.device_time_total if cuda else e.cpu_time_total) / steps
        if us > 0 and (not cuda or e.device_type.name == "CUDA"):
            rows.append((e.key, us, e.count // steps))
    return sorted(rows, key=lambda r: -r[1])[: 12 if cuda else 6]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--B", type=int, default=4096)
    ap.add_argument("--T", type=int, default=150)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args(argv)
    B, T, d = (3, 7, 9) if dry_run() else (args.B, args.T, args.d)
    device = "cpu" if dry_run() or not torch.cuda.is_available() else "cuda"
    floor = ssa_min_bytes(B, T, d)
    own = kernel_bytes(B, T, d)
    print(f"B={B} T={T} d={d} on {device}: minimum bytes {floor / 1e9:.3f} GB")
    for impl in ("triton_large", "triton_two_kernel"):
        rows = profile(impl, B, T, d, device, 1 if dry_run() else args.steps)
        total = sum(us for _, us, _ in rows)
        print(f"\n{impl}: {total / 1e3:.3f} ms over its top kernels, "
              f"{floor / (total * 1e-6) / 1e9:.0f} GB/s at the minimum bytes")
        print(f"  {'us':>9} {'calls':>5} {'GB/s (own bytes)':>16}  kernel")
        for name, us, calls in rows:
            bw = next((f"{b / (us * 1e-6) / 1e9:.0f}" for k, b in own.items() if k in name), "")
            print(f"  {us:9.1f} {calls:5d} {bw:>16}  {name[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
