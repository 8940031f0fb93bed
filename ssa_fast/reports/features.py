"""Plot of the three log-Mel channels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .._atomic import save_figure
from ..features.config import FeatureConfig


def plot_logmel_delta(features, path: str | Path, *, config: FeatureConfig | None = None,
                      title: str = "", waveform=None, sample_rate: int | None = None,
                      hop_seconds: float | None = None) -> Path:
    """Write a PNG with the static, delta and delta-delta channels of `features` (3, T, n_mels),
    optionally with the waveform above them, on one time axis (see
    :func:`logmel_delta_figure`)."""
    import matplotlib.pyplot as plt

    fig = logmel_delta_figure(features, config=config, title=title, waveform=waveform,
                              sample_rate=sample_rate, hop_seconds=hop_seconds)
    path = Path(path)
    try:
        save_figure(path, fig, dpi=110)
    finally:
        plt.close(fig)
    return path


def logmel_delta_figure(features, *, config: FeatureConfig | None = None, title: str = "",
                        waveform=None, sample_rate: int | None = None,
                        hop_seconds: float | None = None):
    """The figure of :func:`plot_logmel_delta`.

    The time of a feature frame is its hop: ``config`` (the FeatureConfig the features were
    computed with) gives it and the sample rate. Without it, ``sample_rate`` (default 16000)
    and the default hop of FeatureConfig (160 samples) give it, unless ``hop_seconds`` is
    given. A ``hop_seconds`` or ``sample_rate`` that contradicts ``config``, and a waveform
    whose length does not match the frames (another hop or sample rate than the features'),
    are refused: the two panels would show different times on one axis."""
    default = FeatureConfig()
    if config is not None:
        for name, given, own in (("sample_rate", sample_rate, config.sample_rate),
                                 ("hop_seconds", hop_seconds, config.frame_seconds)):
            if given is not None and not np.isclose(given, own, rtol=1e-9, atol=0):
                raise ValueError(f"{name}={given:g} contradicts config ({name} {own:g})")
        sample_rate, hop_seconds = config.sample_rate, config.frame_seconds
        window = config.n_fft / config.sample_rate
    else:
        sample_rate = default.sample_rate if sample_rate is None else sample_rate
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        hop_seconds = default.hop_length / sample_rate if hop_seconds is None else hop_seconds
        window = default.n_fft / sample_rate
    if not hop_seconds > 0:
        raise ValueError(f"hop_seconds must be positive, got {hop_seconds}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    feats = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features)
    if feats.ndim != 3 or feats.shape[0] != 3:
        raise ValueError(f"features must have shape (3, T, n_mels), got {feats.shape}")
    if waveform is not None:
        wave_seconds = len(np.asarray(waveform)) / sample_rate
        frame_seconds = feats.shape[1] * hop_seconds
        # (T = 1 + N // hop frames when centred, 1 + (N - n_fft) // hop otherwise)
        if abs(frame_seconds - wave_seconds) > window + hop_seconds:
            raise ValueError(
                f"the waveform lasts {wave_seconds:.3f} s at {sample_rate} Hz but the "
                f"{feats.shape[1]} feature frames of {1000 * hop_seconds:g} ms last "
                f"{frame_seconds:.3f} s: pass config=, the FeatureConfig of the features")
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
    return fig
