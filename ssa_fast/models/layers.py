"""Building blocks: the CRNN trunk, frame attention, Self Speaker Attention, the L1-constrained
classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..kernels.l1_project import l1_project_
from ..kernels.ssa_attention import COMBINES, ssa_attention
from .presets import Preset


class BatchDropout(nn.Module):
    """Dropout (``nn.Dropout``'s: zero with probability ``p``, scale the rest by 1 / (1 - p))
    whose mask, in a batch split over torchrun ranks, is each rank's slice of one mask drawn for
    the whole batch: every rank draws it from the generator they share (one seed) and keeps the
    rows it trains (``rank::world`` of ``global_batch``, set by :func:`split_batches`), so each
    row gets the mask one process gives it. ``nn.Dropout`` gave every rank the same mask for
    its own rows: neither one process's masks nor independent ones."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)
        self.global_batch: int | None = None  # rows of the whole batch (None: not split)
        self.rank, self.world = 0, 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        rows = self.global_batch if self.world > 1 and self.global_batch else x.shape[0]
        keep = torch.empty((rows, *x.shape[1:]), dtype=x.dtype, device=x.device)
        keep.bernoulli_(1.0 - self.p)
        if rows != x.shape[0]:
            keep = keep[self.rank::self.world]
        if keep.shape[0] != x.shape[0]:
            raise ValueError(f"BatchDropout: {x.shape[0]} rows, but rows {self.rank}::"
                             f"{self.world} of a batch of {rows} are {keep.shape[0]}")
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def split_batches(model: nn.Module, global_batch: int, rank: int, world: int) -> None:
    """Tell ``model``'s dropout layers how its training batches are split over ranks: rows
    ``rank::world`` of batches of ``global_batch`` rows (see :class:`BatchDropout`)."""
    for m in model.modules():
        if isinstance(m, BatchDropout):
            m.global_batch, m.rank, m.world = global_batch, rank, world


class CRNNTrunk(nn.Module):
    """Steps 1-6 of design.md section 4: (B, 3, T0, F) -> BLSTM output h (B, T0 / pool_t, d)."""

    def __init__(self, p: Preset, n_mels: int = 40, in_channels: int = 3):
        super().__init__()
        kt, kf = p.kernel
        pad = (kt // 2, kf // 2)
        convs = [nn.Conv2d(in_channels, p.conv1_channels, p.kernel, padding=pad)]
        convs += [nn.Conv2d(p.conv1_channels if i == 0 else p.conv_channels, p.conv_channels,
                            p.kernel, padding=pad) for i in range(p.n_convs - 1)]
        self.conv1, self.convs = convs[0], nn.ModuleList(convs[1:])
        self.pool = nn.MaxPool2d(p.pool)
        self.act = nn.LeakyReLU(p.leaky_slope)
        self.freq_out = n_mels // p.pool[1]
        if self.freq_out < 1:
            raise ValueError(f"n_mels={n_mels} is smaller than the frequency pool {p.pool[1]}")
        self.linear = nn.Linear(p.conv_channels * self.freq_out, p.linear)
        self.bn = nn.BatchNorm1d(p.linear)
        self.dropout = BatchDropout(p.dropout)
        self.lstm = nn.LSTM(p.linear, p.lstm_hidden, batch_first=True, bidirectional=True)
        self.pool_t = p.pool[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T0, F) -> (B, T, d)
        if x.device.type == "cpu" or self.conv1.weight.is_contiguous(
                memory_format=torch.channels_last):
            # oneDNN's convolutions run channels-last: the training step of the small preset
            # takes about 15% less time (benchmarks/RESULTS.md, CPU); results agree to fp32
            # rounding (tests/models/test_models.py). On CUDA a model converted to channels-last
            # (the training loop's bf16 runs: the layout of the tensor cores) takes its input so.
            x = x.contiguous(memory_format=torch.channels_last)
        y = self.pool(self.act(self.conv1(x)))
        for conv in self.convs:
            y = self.act(conv(y))
        B, C, T, F = y.shape
        y = y.permute(0, 2, 1, 3).reshape(B, T, C * F)  # time-major, channels x freq per frame
        y = self.linear(y)
        y = self.act(self.bn(y.transpose(1, 2)).transpose(1, 2))  # BN over batch and time
        # Under torch.compile this call is a graph break: Dynamo does not trace nn.LSTM (unless
        # torch._dynamo.config.allow_rnn), so the LSTM runs eagerly (cuDNN / oneDNN) between the
        # compiled graph of the layers above and that of the layers after the trunk.
        h, _ = self.lstm(self.dropout(y))
        return h


class FrameAttention(nn.Module):
    """Eq. 1-2: alpha = softmax_t(h_t . w), c = sum_t alpha_t h_t."""

    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.empty(d).uniform_(-1 / math.sqrt(d), 1 / math.sqrt(d)))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        alpha = torch.softmax(h @ self.w, dim=1)  # (B, T)
        return torch.einsum("bt,btd->bd", alpha, h), alpha


class SelfSpeakerAttention(nn.Module):
    """Eq. 3-7 (design.md section 5) over h_em and h_sp; runs `ssa_fast.ssa_attention`."""

    def __init__(self, T: int, d: int, combine: str = "concat", scale: float | None = None,
                 backend: str | None = None):
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
        # [choice] q starts as the mean over frames of h_em.
        self.w_q = nn.Parameter(torch.full((T,), 1.0 / T))
        self.w_k_em, self.w_k_sp, self.w_v_em, self.w_v_sp = (
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(d, d))) for _ in range(4))
        self.combine, self.scale, self.backend = combine, scale, backend
        self.out_dim = 2 * d if combine == "concat" else d

    def forward(self, h_em: torch.Tensor, h_sp: torch.Tensor):
        c, alpha = ssa_attention(h_em, h_sp, self.w_q, self.w_k_em, self.w_k_sp, self.w_v_em,
                                 self.w_v_sp, scale=self.scale, combine=self.combine,
                                 backend=self.backend)
        T = h_em.shape[1]
        return c, alpha[:, :T], alpha[:, T:]


class Classifier(nn.Linear):
    """FC^c. With `l1_constraint`, `project_(x)` rescales every class row to the L1 norm of
    design.md section 6, relative to ``x``, the batch's inputs of this layer.

    The constrained layer has no bias [choice]: the projected rows are tiny (|logit| <~ 1/K), so
    any free bias would decide every prediction by itself (measured: constant predictions).

    ``logit_scale`` multiplies the constrained layer's logits: 1 is eq. 8 literally. With rows of
    L1 norm N / (K sum_i ||x_i||_1) the logits do not depend on the embedding's scale and stay
    within ~1/K, so the cross-entropy stays at ln K and never saturates (docs/experiments/E1).
    A scale s > 1 keeps the constraint (equal, batch-relative class norms) and lets the softmax
    become confident; ``learn_scale`` makes it a parameter (learned in log space from
    ``logit_scale``). The projection constrains W only; the scale is shared by all classes.
    """

    def __init__(self, n_in: int, n_classes: int, l1_constraint: bool = False,
                 backend: str | None = None, logit_scale: float = 1.0,
                 learn_scale: bool = False):
        super().__init__(n_in, n_classes, bias=not l1_constraint)
        if not logit_scale > 0:
            raise ValueError(f"logit_scale must be > 0, got {logit_scale}")
        if not l1_constraint and (logit_scale != 1.0 or learn_scale):
            raise ValueError("logit_scale applies to the L1-constrained classifier only")
        self.l1_constraint, self.backend = l1_constraint, backend
        log_scale = torch.tensor(math.log(logit_scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            # (not in the state dict: the model's config holds it, and older checkpoints load)
            self.register_buffer("log_scale", log_scale, persistent=False)
        self.scaled = l1_constraint and (learn_scale or logit_scale != 1.0)

    @property
    def logit_scale(self) -> float:
        return float(self.log_scale.detach().exp())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y * self.log_scale.exp().to(y.dtype) if self.scaled else y

    @torch.no_grad()
    def project_(self, x: torch.Tensor) -> None:
        """Project the rows onto the constraint of the batch whose inputs were ``x`` (N, n_in)
        (under torchrun: the whole batch's, gathered by the caller)."""
        if self.l1_constraint:
            # (x as it is: l1_project_ applies its dtype rule, a half weight beside larger
            # activations projected in float32; cast here, they were infinite and the weight
            # stayed as it was)
            l1_project_(self.weight, x, backend=self.backend)
