"""Training, evaluation, resume and cross-validation end to end on a tiny synthetic corpus."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ssa_fast.data import corpus_features, load_corpus, synthesize_corpus
from ssa_fast.reports import write_reports
from ssa_fast.train import (
    TrainConfig,
    confusion_matrix,
    cross_validate,
    load_checkpoint,
    mean_ci95,
    prepare_fold,
    train,
    uar,
)


def test_uar_against_a_hand_made_confusion_matrix():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 2, 1, 0, 2, 2, 2, 2, 2, 1]
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 1, 0], [1, 1, 0, 0], [0, 1, 5, 0], [0, 0, 0, 0]]
    # recalls 2/4, 1/2, 5/6; class 3 has no reference items and is left out
    assert uar(cm) == pytest.approx((0.5 + 0.5 + 5 / 6) / 3)
    assert uar(cm) != pytest.approx(np.trace(cm) / cm.sum())  # not the accuracy


def test_utterance_pooling_rules():
    from ssa_fast.train import utterance_probabilities

    post = torch.tensor([[0.7, 0.3], [0.1, 0.9], [0.4, 0.6], [0.2, 0.8]])
    utt = torch.tensor([0, 0, 0, 1])
    mean = utterance_probabilities(post.log(), utt, 2, "mean")
    g = torch.exp(post[:3].log().mean(0))
    torch.testing.assert_close(mean[0], g / g.sum())
    best = utterance_probabilities(post.log(), utt, 2, "max")
    torch.testing.assert_close(best[0], torch.tensor([0.7, 0.9]) / 1.6)
    torch.testing.assert_close(best[1], post[3])
    assert mean[0].argmax() == 1 and best[0].argmax() == 1


def test_mean_ci95_uses_the_t_distribution():
    mean, half = mean_ci95([0.6, 0.7, 0.8])
    assert mean == pytest.approx(0.7)
    assert half == pytest.approx(4.302652729911275 * 0.1 / np.sqrt(3))  # t(0.975, 2) = 4.3027


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    synthesize_corpus(root, "tiny", phrases=3, seed=1, jobs=2, progress=False)
    corpus = load_corpus("synthetic", root)
    corpus, feats = corpus_features(corpus, root / "cache", progress=False)
    return corpus, feats


def _fold(tiny):
    corpus, feats = tiny
    idx = np.arange(len(corpus))
    val = idx[::4]
    train_idx = np.setdiff1d(idx, val)
    return prepare_fold(corpus, feats, train_idx, val, segment_frames=100, min_tail=20)


CFG = TrainConfig(model="ssa-crnn-r", epochs=3, batch_size=8, lr=1e-3, seed=3)


def test_train_writes_checkpoints_and_resumes_identically(tiny, tmp_path):
    trs, vas, _ = _fold(tiny)
    full = train(CFG, trs, vas, n_classes=4, n_speakers=2, out_dir=tmp_path / "full",
                 progress=False)

    class Interrupt(Exception):
        pass

    def stop_after_first(epoch, metrics):
        if epoch == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(CFG, trs, vas, n_classes=4, n_speakers=2, out_dir=tmp_path / "cut",
              progress=False, on_epoch_end=stop_after_first)
    assert load_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 0
    resumed = train(CFG, trs, vas, n_classes=4, n_speakers=2, out_dir=tmp_path / "cut",
                    resume=True, progress=False)
    assert [h["utterance_uar"] for h in resumed["history"]] == \
           [h["utterance_uar"] for h in full["history"]]
    assert [h["train_loss"] for h in resumed["history"]] == \
           [h["train_loss"] for h in full["history"]]
    for a, b in zip(full["model"].state_dict().values(), resumed["model"].state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    best = load_checkpoint(tmp_path / "full" / "best.pt")  # weights_only=True
    assert best["config"]["model"] == "ssa-crnn-r" and "model_config" in best
    with pytest.raises(ValueError, match="another configuration"):
        train(replace(CFG, lr=5e-4), trs, vas, n_classes=4, n_speakers=2,
              out_dir=tmp_path / "cut", resume=True, progress=False)


def test_evaluate_outputs_for_every_model(tiny, tmp_path):
    trs, vas, _ = _fold(tiny)
    for m in ("acrnn", "acrnn-r", "ssa-crnn-r"):
        res = train(replace(CFG, model=m, epochs=1), trs, vas, n_classes=4, n_speakers=2,
                    out_dir=tmp_path / m, progress=False)
        assert 0.0 <= res["segment_uar"] <= 1.0 and 0.0 <= res["utterance_uar"] <= 1.0
        assert np.asarray(res["utterance_cm"]).sum() == len(np.unique(vas.utterance))
        assert res["z"].shape[0] == len(vas)
        assert (res["alpha_sp"] is not None) == m.startswith("ssa")
    with pytest.raises(ValueError, match="model must be"):
        TrainConfig(model="cnn")


def test_training_logs_the_classifier_diagnostics(tiny, tmp_path):
    """metrics.csv holds ||z||_1, the step / |W| ratio and (constrained models) the logit scale,
    whose value a learned scale changes and a fixed one keeps."""
    trs, vas, _ = _fold(tiny)
    for model, scale, learn in (("acrnn", 1.0, False), ("acrnn-r", 50.0, False),
                                ("ssa-crnn-r", 50.0, True)):
        cfg = replace(CFG, model=model, epochs=2, logit_scale=scale, learn_logit_scale=learn)
        res = train(cfg, trs, vas, n_classes=4, n_speakers=2, out_dir=tmp_path / model,
                    progress=False)
        header, *rows = (tmp_path / model / "metrics.csv").read_text().splitlines()
        cols = header.split(",")
        assert len(rows) == 2 and {"embedding_l1", "step_ratio"} <= set(cols)
        assert ("logit_scale" in cols) == model.endswith("-r")
        for h in res["history"]:
            assert h["embedding_l1"] > 0 and h["step_ratio"] > 0
        if model.endswith("-r"):
            logged = [float(r.split(",")[cols.index("logit_scale")]) for r in rows]
            assert (logged[-1] != pytest.approx(scale, rel=1e-6)) == learn
            best = load_checkpoint(tmp_path / model / "best.pt")
            assert best["model_config"]["logit_scale"] == scale
            assert best["model_config"]["learn_logit_scale"] == learn
    with pytest.raises(ValueError, match="logit_scale"):
        replace(CFG, logit_scale=-1.0)


def test_cross_validation_and_reports(tiny, tmp_path):
    corpus, feats = tiny
    cfg = replace(CFG, epochs=1)
    res = cross_validate(corpus, feats, ["acrnn", "ssa-crnn-r"], cfg, tmp_path, protocol="random",
                         k=2, segment_frames=100, progress=False)
    assert set(res["summary"]) == {"acrnn", "ssa-crnn-r"}
    assert all(len(v) == 2 for v in res["folds"].values())
    paths = write_reports(res, tmp_path / "reports")
    table = paths["table"].read_text()
    assert "| ACRNN |" in table and "| SSA-CRNN-r |" in table and "±" in table
    for key in ("confusion", "curves", "tsne", "attention"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", key
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["k"] == 2 and saved["classes"] == ["neu", "hap", "sad", "ang"]
    # finished folds are reused, not retrained
    stamp = (tmp_path / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns
    cross_validate(corpus, feats, ["acrnn", "ssa-crnn-r"], cfg, tmp_path, protocol="random",
                   k=2, segment_frames=100, progress=False)
    assert (tmp_path / "acrnn" / "fold00" / "result.json").stat().st_mtime_ns == stamp
