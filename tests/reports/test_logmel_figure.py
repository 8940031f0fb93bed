"""plot_logmel_delta: the waveform and the three feature channels share one time axis, so the
features' frames must be placed at their own hop and sample rate."""

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from ssa_fast.features import FeatureConfig
from ssa_fast.reports import plot_logmel_delta

matplotlib.use("Agg")


def _ends(fig) -> tuple[float, list[float]]:
    """(the waveform's last sample's time, the right edge of every feature image), seconds."""
    wave = fig.axes[0].get_lines()[0].get_xdata()
    return float(wave[-1]), [im.get_extent()[1] for ax in fig.axes for im in ax.get_images()]


@pytest.mark.parametrize("config", [FeatureConfig(sample_rate=8000),  # hop 160: 20 ms
                                    FeatureConfig(hop_length=80),  # 16 kHz, hop 5 ms
                                    FeatureConfig()])
def test_the_feature_frames_end_where_the_waveform_ends(config):
    from ssa_fast.reports.features import logmel_delta_figure

    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(2 * config.sample_rate)).astype(np.float32)  # 2 s
    feats = config.module("reference")(torch.from_numpy(wave))
    frame = config.frame_seconds
    calls = [{"config": config}]
    if config.hop_length == FeatureConfig().hop_length:  # the default hop, from the rate
        calls.append({"sample_rate": config.sample_rate})
    for kwargs in calls:
        fig = logmel_delta_figure(feats, waveform=wave, **kwargs)
        try:
            wave_end, image_ends = _ends(fig)
            assert wave_end == pytest.approx(2.0 - 1 / config.sample_rate)
            assert len(image_ends) == 3
            for end in image_ends:  # T = 1 + N // hop frames (centred) of `frame` s each
                assert end == pytest.approx(feats.shape[1] * frame)
                assert end == pytest.approx(2.0 + frame), kwargs
        finally:
            plt.close(fig)


def test_a_time_axis_that_contradicts_the_features_is_refused(tmp_path):
    config = FeatureConfig(sample_rate=8000)
    wave = np.zeros(2 * 8000, np.float32)
    feats = config.module("reference")(torch.from_numpy(wave))
    # 20 ms frames drawn as 10 ms ones: the images would end at 1.01 s, the waveform at 2 s
    with pytest.raises(ValueError, match="waveform lasts 2.000 s at 8000 Hz.*config="):
        plot_logmel_delta(feats, tmp_path / "f.png", waveform=wave, sample_rate=8000,
                          hop_seconds=0.01)
    with pytest.raises(ValueError, match="sample_rate=16000 contradicts config"):
        plot_logmel_delta(feats, tmp_path / "f.png", config=config, sample_rate=16000)
    with pytest.raises(ValueError, match="hop_seconds=0.01 contradicts config"):
        plot_logmel_delta(feats, tmp_path / "f.png", config=config, hop_seconds=0.01)
    assert not (tmp_path / "f.png").exists()
    assert plot_logmel_delta(feats, tmp_path / "f.png", config=config, waveform=wave) == \
        tmp_path / "f.png"
