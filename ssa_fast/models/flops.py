"""Model FLOPs per sample, counted from the layers a real forward pass runs (used for model-FLOPs
utilisation figures). Multiply-adds count as 2 FLOPs."""

from __future__ import annotations

import torch
from torch import nn


def forward_flops(model: nn.Module, input_shape: tuple[int, ...] = (3, 300, 40)) -> dict:
    """FLOPs of one forward pass for one sample of `input_shape`, by layer type.

    Counts convolutions, linear layers and LSTMs (4 gates: 2 * 4H * (I + H) per step and
    direction); the rest (activations, pooling, BN, softmax, attention sums) is below 1% and
    reported as ``other`` estimated from the attention shapes only. Returns a dict with
    ``conv``, ``linear``, ``lstm``, ``attention`` and ``total``.
    """
    counts = {"conv": 0, "linear": 0, "lstm": 0, "attention": 0}

    def conv_hook(m: nn.Conv2d, inp, out):
        kh, kw = m.kernel_size
        counts["conv"] += 2 * (m.in_channels // m.groups) * kh * kw * out.numel()

    def linear_hook(m: nn.Linear, inp, out):
        counts["linear"] += 2 * m.in_features * out.numel()

    def lstm_hook(m: nn.LSTM, inp, out):
        x = inp[0]
        B, T = x.shape[0], x.shape[1]
        H, dirs = m.hidden_size, 2 if m.bidirectional else 1
        size_in = m.input_size
        for _ in range(m.num_layers):
            counts["lstm"] += dirs * B * T * 2 * 4 * H * (size_in + H)
            size_in = H * dirs

    handles = []
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            handles.append(mod.register_forward_hook(conv_hook))
        elif isinstance(mod, nn.Linear):
            handles.append(mod.register_forward_hook(linear_hook))
        elif isinstance(mod, nn.LSTM):
            handles.append(mod.register_forward_hook(lstm_hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            param = next(model.parameters())
            x = torch.zeros(1, *input_shape, device=param.device)
            out = model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    # Attention: scores and weighted sums over (T, d), plus SSA's key/query/value maps.
    if out.alpha_sp is not None:  # SSA-CRNN
        T = out.alpha_em.shape[1]
        d = model.ssa.w_k_em.shape[0]
        counts["attention"] = 2 * T * d * 3 + 4 * 2 * d * d + 2 * 2 * T * d
    counts["total"] = sum(counts.values())
    return counts
