"""Segmentation, normalisation, balanced batches, cross-validation splits and the feature cache,
on real arrays."""

import numpy as np
import pytest
import torch

from ssa_fast.data import (
    BalancedBatchSampler,
    Normaliser,
    corpus_features,
    leave_one_speaker_out,
    linguistic_folds,
    load_corpus,
    make_segments,
    random_folds,
    segment_bounds,
)
from ssa_fast.data.segments import FrameStats

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


@pytest.mark.parametrize("frames, hop, expected", [
    (650, None, [(0, 300), (300, 300)]),  # a 50-frame tail is dropped
    (720, None, [(0, 300), (300, 300), (600, 120)]),  # a 120-frame tail is kept
    (80, None, [(0, 80)]),  # an utterance's only segment is kept however short
    (300, None, [(0, 300)]),
    (301, None, [(0, 300)]),
    (600, 150, [(0, 300), (150, 300), (300, 300)]),  # overlapping training hop
    (500, 150, [(0, 300), (150, 300), (300, 200)]),
])
def test_segment_bounds(frames, hop, expected):
    assert segment_bounds(frames, 300, hop, 100) == expected


def test_segment_bounds_errors():
    with pytest.raises(ValueError, match="hop"):
        segment_bounds(500, 300, 400)


def _features(seed, frames, offset):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(3, frames, 40, generator=g) * 2 + offset


def test_speaker_normalisation_and_padding_after_it():
    feats = [_features(0, 420, 5.0), _features(1, 350, 5.0), _features(2, 90, -3.0)]
    speakers = ["a", "a", "b"]
    norm = Normaliser("speaker").fit(feats, speakers, segment_frames=300)
    # the statistics of the training segments (SPEC section 3): 420 frames -> 300 + 120 kept,
    # 350 -> 300 kept and a 50-frame tail dropped, which is not among them
    za = torch.cat([norm(feats[0], "a"), norm(feats[1], "a")[:, :300]], dim=1)
    torch.testing.assert_close(za.mean(dim=1), torch.zeros(3, 40), atol=1e-5, rtol=0)
    torch.testing.assert_close(za.std(dim=1), torch.ones(3, 40), atol=1e-4, rtol=0)
    def stats_of(*blocks):
        return FrameStats().add(torch.cat(blocks, dim=1)).stats(1e-5)

    kept = stats_of(feats[0], feats[1][:, :300])
    assert torch.equal(norm.stats["a"].mean, kept.mean) and torch.equal(norm.stats["a"].std,
                                                                        kept.std)
    every = Normaliser("speaker").fit(feats, speakers)  # (no segmentation: every frame)
    assert torch.equal(every.stats["a"].mean, stats_of(feats[0], feats[1]).mean)
    # with an overlapping training hop: the frames the segments cover, each once
    # (350 frames: 0-300 and 100-350 kept)
    hop = Normaliser("speaker").fit(feats, speakers, segment_frames=300, hop=100)
    torch.testing.assert_close(hop.stats["a"].mean, every.stats["a"].mean)
    short = [_features(4, 380, 1.0)]  # hop 200: 0-300 kept, 200-380 (180 < 181) dropped
    assert torch.equal(Normaliser("speaker").fit(short, ["c"], segment_frames=300, hop=200,
                                                  min_tail=181)
                       .stats["c"].mean, FrameStats().add(short[0][:, :300]).stats(1e-5).mean)
    seg = make_segments(feats, [0, 1, 2], speakers, norm, {"a": 0, "b": 1})
    assert seg.x.shape == (4, 3, 300, 40)  # 420 -> 300 + 120, 350 -> 300 (50 dropped), 90
    assert seg.lengths.tolist() == [300, 120, 300, 90]
    assert seg.utterance.tolist() == [0, 0, 1, 2] and seg.speaker.tolist() == [0, 0, 0, 1]
    assert torch.count_nonzero(seg.x[1, :, 120:]) == 0  # padded frames exactly 0
    assert torch.count_nonzero(seg.x[1, :, :120]) > 0


def test_global_and_utterance_modes_and_unseen_speaker():
    feats = [_features(0, 200, 5.0), _features(1, 200, -5.0)]
    g = Normaliser("global").fit(feats, ["a", "b"])
    both = torch.cat([g(f, s) for f, s in zip(feats, ["a", "b"], strict=True)], dim=1)
    torch.testing.assert_close(both.mean(dim=1), torch.zeros(3, 40), atol=1e-5, rtol=0)
    u = Normaliser("utterance")
    torch.testing.assert_close(u(feats[1], "b").mean(dim=1), torch.zeros(3, 40), atol=1e-5,
                               rtol=0)
    s = Normaliser("speaker").fit(feats[:1], ["a"])
    unseen = s(feats[1], "zz")  # falls back to the utterance's own statistics
    torch.testing.assert_close(unseen.mean(dim=1), torch.zeros(3, 40), atol=1e-5, rtol=0)
    restored = Normaliser.from_state_dict(s.state_dict())
    torch.testing.assert_close(restored(feats[0], "a"), s(feats[0], "a"))
    with pytest.raises(ValueError, match="normalisation"):
        Normaliser("minmax")


def test_balanced_sampler():
    labels = np.array([0] * 50 + [1] * 7 + [2] * 23 + [3] * 100)
    sampler = BalancedBatchSampler(labels, 40, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 5
    for b in batches:
        assert len(b) == 40 and np.bincount(labels[b], minlength=4).tolist() == [10] * 4
    assert batches == list(BalancedBatchSampler(labels, 40, seed=1))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    # the small class is cycled through fully before any item repeats
    first = [i for b in batches[:1] for i in b if labels[i] == 1]
    assert len(set(first)) == 7
    # a pool that can fill a batch's share but runs out inside it (15 items, 10 a batch): the
    # reshuffle put items of the same batch in twice (20 of 40 batches)
    labels = np.array([0] * 15 + [1] * 12 + [2] * 40 + [3] * 11)
    for epoch in range(10):
        sampler = BalancedBatchSampler(labels, 40, seed=epoch)
        for b in sampler:
            assert len(set(b)) == 40 and np.bincount(labels[b], minlength=4).tolist() == [10] * 4
    with pytest.raises(ValueError, match="multiple"):
        BalancedBatchSampler(labels, 42)
    with pytest.raises(ValueError, match="no training items"):
        BalancedBatchSampler(labels, 40, n_classes=5)


def test_random_folds_are_disjoint_and_differ():
    folds = random_folds(103, 10, 0.2, seed=4)
    assert len(folds) == 10
    for train, val in folds:
        assert len(val) == 21 and len(train) == 82
        assert not set(train) & set(val) and len(set(train) | set(val)) == 103
    assert len({tuple(v) for _, v in folds}) == 10


def test_linguistic_folds_keep_phrases_apart():
    phrases = [f"s{p:03d}" for p in range(100) for _ in range(3)]
    folds = linguistic_folds(phrases, 10, seed=2)
    validated = {}
    for train, val in folds:
        tp, vp = {phrases[i] for i in train}, {phrases[i] for i in val}
        assert not tp & vp and len(vp) == 20 and len(tp) == 80
        for p in vp:
            validated[p] = validated.get(p, 0) + 1
    assert set(validated.values()) == {2} and len(validated) == 100
    with pytest.raises(ValueError, match="phrase"):
        linguistic_folds([None, "a"], 2, groups=2)


def test_leave_one_speaker_out():
    speakers = ["a", "b", "a", "c", "b"]
    folds = leave_one_speaker_out(speakers)
    assert [v.tolist() for _, v in folds] == [[0, 2], [1, 4], [3]]
    assert all(not set(t) & set(v) for t, v in folds)


def test_feature_cache_reuse_invalidation_and_skips(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    rows = ["path,speaker,label"]
    for i in range(4):
        n = 16000 + 3000 * i
        sf.write(audio / f"u{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(n))
                 .astype(np.float32), 16000)
        rows.append(f"audio/u{i}.wav,s{i % 2},{'ab'[i % 2]}")
    (audio / "bad.wav").write_bytes(b"not audio")
    rows.append("audio/bad.wav,s0,a")
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    corpus = load_corpus("manifest", tmp_path)
    cache = tmp_path / "cache"
    kept, feats = corpus_features(corpus, cache, progress=False)
    assert len(kept) == 4 and any("bad.wav" in p for p, _ in kept.skipped)
    files = list(cache.glob("*.pt"))
    assert len(files) == 1
    for r, f in zip(kept, feats, strict=True):
        y, _ = sf.read(r.path, dtype="float32")
        torch.testing.assert_close(f, torch.from_numpy(np.asarray(
            __import__("ssa_fast").logmel_delta(torch.from_numpy(y)))))
    mtime = files[0].stat().st_mtime_ns
    kept2, feats2 = corpus_features(corpus, cache, progress=False)
    assert files[0].stat().st_mtime_ns == mtime  # reused, not rewritten
    assert [r.path for r in kept2] == [r.path for r in kept]
    assert any("bad.wav" in p for p, _ in kept2.skipped)
    assert all(torch.equal(a, b) for a, b in zip(feats, feats2, strict=True))
    _, feats3 = corpus_features(corpus, cache, n_mels=64, progress=False)
    assert len(list(cache.glob("*.pt"))) == 2 and feats3[0].shape[-1] == 64


def test_make_folds_short_linguistic_run_validates_each_phrase_once():
    from ssa_fast.data.corpus import Corpus, Record
    from ssa_fast.train import make_folds

    records = [Record(f"u{i}.wav", f"s{i % 2}", "neu", phrase=f"p{i % 10}") for i in range(30)]
    corpus = Corpus(records, ["neu"], "test")
    folds = make_folds(corpus, "linguistic", 3)
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(30))  # every utterance validated exactly once
    for tr, va in folds:
        assert not {records[i].phrase for i in tr} & {records[i].phrase for i in va}
    paper = make_folds(corpus, "linguistic", 10)  # 10 groups, 2 validate per fold
    assert len(paper) == 10 and all(len({records[i].phrase for i in va}) == 2 for _, va in paper)


def test_frame_stats_one_formula_for_whole_and_streamed_frames():
    """Normalisation statistics come from FrameStats: one block is exactly torch's mean and
    std of it (what training's speaker statistics are); blocks added one by one (a streamed
    file) agree with their concatenation to float64 rounding; one frame has no spread, so its
    bins normalise to 0 (an unbiased std of one value would be NaN)."""
    from ssa_fast.data.segments import FrameStats, Normaliser

    g = torch.Generator().manual_seed(0)
    blocks = [3 * torch.randn(3, n, 40, generator=g) + 1 for n in (1, 7, 300, 129, 2)]
    whole = torch.cat(blocks, dim=1).double()
    one = FrameStats().add(torch.cat(blocks, dim=1)).stats(1e-5)
    assert torch.equal(one.mean, whole.mean(dim=1, keepdim=True))
    assert torch.equal(one.std, whole.std(dim=1, keepdim=True).clamp_min(1e-5))
    acc = FrameStats()
    for b in blocks:
        acc.add(b)
    streamed = acc.stats(1e-5)
    torch.testing.assert_close(streamed.mean, one.mean, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(streamed.std, one.std, rtol=1e-13, atol=0)
    single = torch.randn(3, 1, 40, generator=g)
    z = Normaliser("utterance")(single, "")
    assert torch.equal(z, torch.zeros_like(z))
    with pytest.raises(ValueError, match="no frames"):
        FrameStats().stats(1e-5)
