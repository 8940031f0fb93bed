"""Plot of the three log-Mel channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import save_figure


def plot_logmel_delta(features, path: str | Path, *, hop_seconds: float = 0.01,
                      title: str = "", waveform=None, sample_rate: int = 16000) -> Path:
    """Write a PNG with the static, delta and delta-delta channels of `features` (3, T, n_mels),
    optionally with the waveform above them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features)
    if feats.ndim != 3 or feats.shape[0] != 3:
        raise ValueError(f"features must have shape (3, T, n_mels), got {feats.shape}")
    T, M = feats.shape[1:]
    rows = 4 if waveform is not None else 3
    fig, axes = plt.subplots(rows, 1, figsize=(10, 2.2 * rows), sharex=True,
                             constrained_layout=True)
    extent = (0, T * hop_seconds, 0, M)
    ax_iter = iter(axes)
    if waveform is not None:
        ax = next(ax_iter)
        w = np.asarray(waveform)
        ax.plot(np.arange(len(w)) / sample_rate, w, lw=0.4, color="0.2")
        ax.set_ylabel("waveform")
    names = ("static log-Mel", "delta", "delta-delta")
    for i, (ax, name) in enumerate(zip(ax_iter, names, strict=True)):
        data = feats[i].T
        if i == 0:
            im = ax.imshow(data, origin="lower", aspect="auto", extent=extent, cmap="magma")
        else:
            lim = float(np.percentile(np.abs(data), 99)) or 1.0
            im = ax.imshow(data, origin="lower", aspect="auto", extent=extent, cmap="coolwarm",
                           vmin=-lim, vmax=lim)
        ax.set_ylabel(f"{name}\nmel bin")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    path = Path(path)
    save_figure(path, fig, dpi=110)
    plt.close(fig)
    return path
