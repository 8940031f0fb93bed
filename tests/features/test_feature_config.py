"""FeatureConfig: the feature defaults stated once, agreeing with every function that takes them,
stored whole and read back from old checkpoints that kept only n_mels."""

import inspect

import numpy as np
import pytest
import torch

import ssa_fast
from ssa_fast import cli, config_file
from ssa_fast.features import FeatureConfig, LogMelDelta
from ssa_fast.kernels.logmel_delta import DEFAULTS


def test_defaults_agree_with_the_functions_and_the_command_line():
    d = FeatureConfig().to_dict()
    assert d == DEFAULTS._asdict()  # written there, once
    for fn in (ssa_fast.logmel_delta, LogMelDelta.__init__):
        params = inspect.signature(fn).parameters
        for name, value in d.items():
            assert params[name].default == value, (fn.__qualname__, name)
    args = config_file.subparser(cli.build_parser(), "features")
    defaults = {a.dest: a.default for a in args._actions}
    for name in ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax",
                 "window", "htk"):
        assert defaults[name] == d[name], name


def test_round_trip_old_checkpoints_and_errors():
    c = FeatureConfig(n_mels=64, hop_length=128)
    assert FeatureConfig.from_dict(c.to_dict()) == c
    assert FeatureConfig.from_dict({"n_mels": 40}) == FeatureConfig()  # what 0.1 stored
    assert FeatureConfig.from_dict(None) == FeatureConfig()
    assert c.frame_seconds == 128 / 16000
    with pytest.raises(ValueError, match="unknown feature parameters"):
        FeatureConfig.from_dict({"n_mel": 40})
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(n_fft=256)


@pytest.mark.parametrize("amin", [0, -1.0, float("inf"), float("nan"), 1e-40, "1e-10", True])
def test_an_amin_the_kernels_cannot_compute_with_is_refused_everywhere(amin):
    """An amin below the smallest normal float32 (or infinite) gave the C++ kernel another
    ln(amin) than the reference (-88.0 for -92.1 at 1e-40; 88.7 for inf), and FeatureConfig
    took 0 and -1 until the first call failed."""
    for make in (lambda: FeatureConfig(amin=amin), lambda: ssa_fast.LogMelDelta(amin=amin),
                 lambda: ssa_fast.logmel_delta(torch.zeros(1600), amin=amin)):
        with pytest.raises(ValueError, match="amin must be finite and at least 1.18e-38"):
            make()
    for ok in (1e-10, 1.2e-38, np.float32(1e-5), 1):  # (numpy and int floors are floors)
        assert FeatureConfig(amin=ok).amin == ok


def test_module_and_function_compute_the_same_features():
    c = FeatureConfig(n_mels=24, fmax=6000.0)
    x = torch.randn(2, 8000)
    torch.testing.assert_close(c.module(backend="reference")(x),
                               ssa_fast.logmel_delta(x, backend="reference", **c.kwargs()))
    assert c.module()(x).shape == (2, 3, 51, 24)
