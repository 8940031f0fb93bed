"""Streamed features and streamed prediction of long files (bounded memory)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ssa_fast.audio import AudioError, load
from ssa_fast.data.segments import Normaliser
from ssa_fast.features.stream import stream_features
from ssa_fast.kernels.logmel_delta import logmel_delta
from ssa_fast.predict.engine import TrainedModel, classify, classify_file
from ssa_fast.train import TrainConfig, build_model

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


def _speechy(seconds, sr, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    y = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / sr) * (np.sin(2 * np.pi * 2.1 * t) > -0.3)
    return (y + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.mark.parametrize("n_samples, block_frames", [(16000 * 7 + 37, 250), (16000 * 2, 5000),
                                                       (900, 7), (16000 * 3, 300)])
def test_streamed_blocks_equal_the_whole_file(tmp_path, n_samples, block_frames):
    path = tmp_path / "a.wav"
    sf.write(path, _speechy(n_samples / 16000, 16000)[:n_samples], 16000, subtype="FLOAT")
    whole = logmel_delta(torch.from_numpy(load(path)))
    blocks = list(stream_features(path, block_frames=block_frames))
    assert all(b.shape[1] == block_frames for b in blocks[:-1])
    got = torch.cat(blocks, dim=1)
    assert got.shape == whole.shape
    assert float((got - whole).abs().max()) < 1e-4


@pytest.mark.parametrize("n_fft, win_length, hop_length", [(2048, 2048, 64), (1024, 1024, 32),
                                                         (511, 400, 160), (400, 400, 400)])
def test_streamed_blocks_equal_the_whole_file_for_any_window_and_hop(tmp_path, n_fft,
                                                                     win_length, hop_length):
    """The halo grows with the frames a window reaches into: a fixed 16 frames left blocks of
    a 2048-sample window at a 64-sample hop (16 frames each side) with zeros for context."""
    from ssa_fast.features import FeatureConfig

    features = FeatureConfig(n_fft=n_fft, win_length=win_length, hop_length=hop_length)
    path = tmp_path / "a.wav"
    y = _speechy(3.0, 16000, 2)  # (48000 samples: every hop here divides it)
    sf.write(path, y, 16000, subtype="FLOAT")
    whole = features.module()(torch.from_numpy(load(path)))
    for block_frames in (7, 300):
        got = torch.cat(list(stream_features(path, features, block_frames=block_frames)), dim=1)
        assert got.shape == whole.shape
        assert float((got - whole).abs().max()) < 1e-4, block_frames


def test_streamed_resampling_matches_one_shot(tmp_path):
    path = tmp_path / "b.wav"
    sf.write(path, _speechy(6.3, 22050, 1), 22050, subtype="PCM_16")
    whole = logmel_delta(torch.from_numpy(load(path)))
    got = torch.cat(list(stream_features(path, block_frames=128)), dim=1)
    assert got.shape == whole.shape
    # streamed and one-shot soxr differ by rounding only (log-Mel, dB-free units)
    assert float((got - whole).abs().max()) < 1e-2
    assert float((got - whole).abs().mean()) < 1e-4


def test_stream_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVE garbage")
    with pytest.raises(AudioError, match="bad.wav"):
        list(stream_features(bad))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        list(stream_features(empty))
    with pytest.raises(ValueError, match="block_frames"):
        list(stream_features(bad, block_frames=0))


def _trained(kind="ssa-crnn-r", mode="speaker"):
    torch.manual_seed(0)
    model = build_model(TrainConfig(model=kind, preset="small"), 4, 2, 100, 40).eval()
    feats = [logmel_delta(torch.from_numpy(_speechy(2.0, 16000, s))) for s in range(4)]
    norm = Normaliser(mode).fit(feats, ["a", "a", "b", "b"])
    return TrainedModel(model, ["neu", "hap", "sad", "ang"], ["a", "b"], norm, 100, {}, "mean",
                        {})


@pytest.mark.parametrize("kind, mode, speaker", [("ssa-crnn-r", "speaker", None),
                                                 ("ssa-crnn-r", "speaker", "a"),
                                                 ("acrnn", "global", None)])
def test_classify_file_equals_classify_of_the_whole_file(tmp_path, kind, mode, speaker):
    tm = _trained(kind, mode)
    path = tmp_path / "c.wav"
    sf.write(path, _speechy(7.45, 16000, 5), 16000, subtype="FLOAT")  # 746 frames: 7 segments
    feats = logmel_delta(torch.from_numpy(load(path)))
    probs, segs, out = classify(tm, [feats], [speaker])
    streamed = classify_file(tm, path, speaker, block_frames=130, batch=3, keep_attention=True)
    assert torch.equal(streamed["lengths"], segs.lengths)
    torch.testing.assert_close(streamed["logp"], out["logp"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(streamed["probabilities"], probs[0], atol=1e-4, rtol=1e-4)
    if kind.startswith("ssa"):
        torch.testing.assert_close(streamed["alpha_em"], out["alpha_em"], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_predict_on_a_one_hour_wav_runs_in_bounded_memory(tmp_path):
    tm = _trained("acrnn")
    ckpt = tmp_path / "best.pt"
    torch.save({"config": {"pooling": "mean"}, "model": tm.model.state_dict(),
                "model_config": tm.model.config,
                "bundle": {"classes": tm.classes, "speakers": tm.speakers,
                           "normaliser": tm.normaliser.state_dict(), "segment_frames": 100,
                           "feature_params": {}}}, ckpt)
    path = tmp_path / "hour.wav"
    minute = (_speechy(60, 16000, 7) * 32767).astype(np.int16)
    with sf.SoundFile(path, "w", 16000, 1, subtype="PCM_16") as fh:
        for _ in range(60):
            fh.write(minute)
    code = ("import resource, sys; from ssa_fast.cli import main; rc = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "raise SystemExit(rc)")
    base = subprocess.run([sys.executable, "-c", "import resource, torch, ssa_fast.cli, "
                           "ssa_fast.predict.engine; "
                           "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                          capture_output=True, text=True, timeout=300)
    proc = subprocess.run([sys.executable, "-c", code, "predict", str(ckpt), str(path),
                           "--json", "--workers", "1"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res,) = json.loads(proc.stdout[:proc.stdout.index("MAXRSS")])
    assert len(res["segments"]) == 3600 * 100 // 100  # one per 100-frame segment, plus no tail
    assert "\r" not in proc.stderr  # stderr is a pipe here: no progress bar (a terminal gets one)
    rss_mb, worker_mb = (int(v) / 1024 for v in proc.stdout.split("MAXRSS")[1].split())
    base_mb = int(base.stdout.split("MAXRSS")[1]) / 1024
    # the whole file would take 230 MB as float32 samples and 173 MB as features
    assert rss_mb - base_mb < 150, (rss_mb, base_mb)  # measured: 90 MB above the imports
    # the decoding worker only scans a file this long (its peak, block by block)
    assert worker_mb - base_mb < 150, (worker_mb, base_mb)
