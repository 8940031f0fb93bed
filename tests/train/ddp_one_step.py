"""Run by test_distributed.py under `torchrun --nproc-per-node 2` (gloo): one training step of
SSA-CRNN-r split over two ranks the way `ssa_fast.train` does it, against the same step on the
whole batch in one process. Rank 0 writes the largest differences as JSON to argv[1]. With a
second argument P, the model has dropout P (each rank's rows must get the one-process mask)."""

import copy
import gc
import json
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ssa_fast.distributed import convert_batchnorm, gather_rows
from ssa_fast.models.layers import split_batches
from ssa_fast.train import TrainConfig, build_model

dist.init_process_group("gloo")
rank, W = dist.get_rank(), dist.get_world_size()
dropout = float(sys.argv[2]) if len(sys.argv) > 2 else None
torch.manual_seed(0)
model = build_model(TrainConfig(model="ssa-crnn-r", preset="small", dropout=dropout), 4, 3, 100,
                    40)
ref = copy.deepcopy(model)
g = torch.Generator().manual_seed(1)
B = 10  # 5 per rank
x = torch.randn(B, 3, 100, 40, generator=g)
y = torch.randint(0, 4, (B,), generator=g)
s = torch.randint(0, 3, (B,), generator=g)

# the whole batch in one process (plain BatchNorm, no collectives)
torch.manual_seed(5)  # (the dropout masks: one seed, as every rank of a run has)
out = ref(x)
(F.cross_entropy(out.emotion_logits, y) + F.cross_entropy(out.speaker_logits, s)).backward()
ref.project_(out)

# the same batch split over the ranks
before = [id(p) for p in model.parameters()]  # (what an optimiser made before holds)
convert_batchnorm(model)
same_parameters = [id(p) for p in model.parameters()] == before
ddp = torch.nn.parallel.DistributedDataParallel(model)
idx = torch.arange(B)[rank::W]
split_batches(model, B, rank, W)  # (what the training loop does each epoch)
torch.manual_seed(5)
out = ddp(x[idx])
weight = W / B
loss = weight * (F.cross_entropy(out.emotion_logits, y[idx], reduction="sum")
                 + F.cross_entropy(out.speaker_logits, s[idx], reduction="sum"))
loss.backward()
model.project_(out, gather=gather_rows)

if rank == 0:
    def rel(a, b, floor=1e-12):
        return float((a - b).abs().max() / b.abs().max().clamp_min(floor))

    # The bias of the linear layer that feeds BatchNorm has a zero gradient (BN removes the
    # mean): only rounding noise is left, so it is measured against the largest gradient.
    scale = max(float(q.grad.abs().max()) for q in ref.parameters())
    grads, noise = {}, {}
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        if n.endswith("trunk.linear.bias"):
            noise[n] = float((p.grad - q.grad).abs().max()) / scale
        else:
            grads[n] = rel(p.grad, q.grad)
    buffers = {n: rel(p.float(), q.float()) for (n, p), (_, q) in
               zip(model.named_buffers(), ref.named_buffers(), strict=True)}
    projected = rel(model.emotion_classifier.weight.detach(),
                    ref.emotion_classifier.weight.detach())
    with open(sys.argv[1], "w") as fh:
        json.dump({"grads": grads, "zero_grad_noise": noise, "buffers": buffers,
                   "projected": projected, "same_parameters": same_parameters}, fh)
del ddp, out, loss  # the DDP reducer must go before its process group (else std::terminate)
gc.collect()
dist.barrier()
dist.destroy_process_group()
