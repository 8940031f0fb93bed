"""Multi-process data-parallel training (``torchrun``): NCCL on CUDA, gloo on the CPU.

The design keeps a run on W processes mathematically the same as the single-process run:
- every rank draws the same balanced global batch of 40 and trains on its slice ``idx[rank::W]``;
  the local loss is weighted so that DDP's gradient average is the mean over the global batch;
- BatchNorm statistics are reduced over the global batch (:class:`SyncBatchNorm1d`; torch's
  ``SyncBatchNorm`` does not run on the CPU);
- the L1 projection uses the inputs of the whole global batch (:func:`gather_rows`);
- validation segments are split over the ranks and their outputs gathered, so every rank computes
  the same metrics; rank 0 alone writes checkpoints and prints.
Only the order of floating-point sums differs.

    torchrun --standalone --nproc-per-node 2 -m ssa_fast.cli train synthetic DATA --out RUN
"""

from __future__ import annotations

import importlib
import os

import torch
import torch.distributed as dist
from torch import nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """Whether this process is rank 0, the one that prints and writes. Before the process group
    exists (a command's checks, under torchrun), the launcher's RANK says which process this is:
    otherwise every rank would take itself for rank 0 there and say the same things."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return rank() == 0
    return os.environ.get("RANK", "0") == "0"


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def init_from_env(device: str | None = None) -> str | None:
    """Start the process group when launched by torchrun (WORLD_SIZE > 1); returns the device
    this rank should use (cuda:LOCAL_RANK on CUDA), or ``device`` unchanged otherwise."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    # torch._dynamo is loaded lazily (by the optimiser's first step otherwise); loaded in the
    # middle of a gloo job's first steps it aborted a rank now and then ("terminate called
    # without an active exception": 3 of 5 runs of the torchrun tests beside other tests on
    # this 2-core machine; none in 3 with this import here)
    importlib.import_module("torch._dynamo")

    dist.init_process_group("nccl" if cuda else "gloo")
    return device or "cpu"


def broadcast(obj):
    """Rank 0's ``obj`` (picklable) on every rank: a decision all ranks must follow."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_distributed():
        dist.all_reduce(t)
    return t


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate (in rank order) the rows of ``t`` from every rank; row counts may differ."""
    if not is_distributed():
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    counts = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(counts, n)
    counts = [int(c) for c in counts]
    padded = t.new_zeros((max(counts), *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])


class _SyncBNFunction(torch.autograd.Function):
    """Batch normalisation over (N, C, L) with the statistics of all ranks (biased variance for
    normalising, as nn.BatchNorm1d). Returns the normalised input and the global mean / var."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = (0, 2)
        count = torch.tensor([x.shape[0] * x.shape[2]], dtype=x.dtype, device=x.device)
        stats = torch.cat([x.sum(dims), (x * x).sum(dims), count])
        stats = all_reduce_sum(stats)
        C = x.shape[1]
        n = stats[-1]
        mean = stats[:C] / n
        var = (stats[C:2 * C] / n - mean * mean).clamp_min(0)
        invstd = torch.rsqrt(var + eps)
        xhat = (x - mean[None, :, None]) * invstd[None, :, None]
        ctx.save_for_backward(xhat, weight, invstd, n)
        ctx.mark_non_differentiable(mean, var, n)
        return xhat * weight[None, :, None] + bias[None, :, None], mean, var, n

    @staticmethod
    def backward(ctx, gy, _gmean, _gvar, _gn):
        xhat, weight, invstd, n = ctx.saved_tensors
        dims = (0, 2)
        local = torch.cat([gy.sum(dims), (gy * xhat).sum(dims)])
        g_bias_local, g_weight_local = local.chunk(2)
        total = all_reduce_sum(local.clone())
        g_bias, g_weight = total.chunk(2)
        gx = (weight * invstd)[None, :, None] * (
            gy - (g_bias[None, :, None] + xhat * g_weight[None, :, None]) / n)
        # weight / bias gradients stay local: DDP averages them over the ranks like every other
        # parameter, and the loss weighting makes that average the global one.
        return gx, g_weight_local, g_bias_local, None


class SyncBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training statistics span every rank (CPU and CUDA). Same parameters
    and buffers, so checkpoints are interchangeable with the plain module."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_distributed()):
            return super().forward(x)
        y, mean, var, n = _SyncBNFunction.apply(x, self.weight, self.bias, self.eps)
        with torch.no_grad():
            self.num_batches_tracked += 1
            # momentum None: cumulative average, as nn.BatchNorm1d (BatchNorm re-estimation)
            m = self.momentum if self.momentum is not None else \
                1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(m * mean)
            self.running_var.mul_(1 - m).add_(m * var * n / (n - 1).clamp_min(1))
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every nn.BatchNorm1d for SyncBatchNorm1d in place, sharing its parameters and
    buffers (the same tensors: an optimiser made before holds them; copies left it stepping
    the old ones, which got no gradient, and BatchNorm's weight and bias never trained under
    torchrun)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            new = SyncBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats, device=child.weight.device,
                                  dtype=child.weight.dtype)
            for key in new._parameters:
                new._parameters[key] = child._parameters[key]
            for key in new._buffers:
                new._buffers[key] = child._buffers[key]
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module
