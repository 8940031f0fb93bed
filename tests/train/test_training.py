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
    from scipy import stats

    for n in (2, 3, 5, 10, 31):  # the quantile scipy.stats gives, at every fold count
        values = np.linspace(0.3, 0.8, n) ** 2
        expected = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n)
        assert mean_ci95(values)[1] == pytest.approx(expected, rel=1e-12)


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


CFG = TrainConfig(model="ssa-crnn-r", preset="small", epochs=3, batch_size=8, lr=1e-3, seed=3)


def test_a_folds_segments_do_not_depend_on_the_listings_order(tiny):
    """The identity holds each part's utterances, not their order in the listing (the split
    digest sorts them): the same files listed in another order give the same segments in the
    same order and the same statistics, so the same batches. Before, a reordered manifest
    reused a fold whose retraining gave other numbers."""
    from dataclasses import replace as replace_corpus

    from ssa_fast.train.cv import _fold_segments

    corpus, feats = tiny
    data = {"normalisation": "speaker", "segment_frames": 100, "train_hop": None}
    rng = np.random.default_rng(3)
    order = rng.permutation(len(corpus))
    shuffled = replace_corpus(corpus, records=[corpus[int(i)] for i in order])
    shuffled_feats = [feats[int(i)] for i in order]
    where = np.argsort(order)  # position of each original utterance in the shuffled listing
    val = np.arange(len(corpus))[::4]
    test = np.arange(len(corpus))[1::5]
    train = np.setdiff1d(np.arange(len(corpus)), np.union1d(val, test))
    a = _fold_segments(corpus, feats, train, val, test, data)
    b = _fold_segments(shuffled, shuffled_feats, rng.permutation(where[train]),
                       where[val][::-1], where[test], data)
    for sa, sb in zip(a[:3], b[:3], strict=True):
        assert len(sa) > 0
        for field in ("x", "lengths", "utterance", "label", "speaker"):
            assert torch.equal(getattr(sa, field), getattr(sb, field)), field
    assert a[3].stats.keys() == b[3].stats.keys()
    for k in a[3].stats:
        assert torch.equal(a[3].stats[k].mean, b[3].stats[k].mean)
        assert torch.equal(a[3].stats[k].std, b[3].stats[k].std)


def test_a_diverged_epoch_is_never_kept(tiny, tmp_path, monkeypatch):
    """Weights gone to NaN (a learning rate too high, a bf16 overflow) "predict" the first class
    everywhere, which scores exactly chance: such an epoch was selected over an earlier one
    below chance, and written as best.pt, silently. Now training stops there, said, keeping the
    epochs before it; with none before it, it is refused in one line."""
    import ssa_fast.train.loop as loop
    from ssa_fast.errors import UserError

    train_segs, val_segs, _ = _fold(tiny)
    real = loop._train_epoch

    def diverging_from(first):
        def epoch_then_nan(step_model, model, opt, sampler, data, cfg, epoch, *rest):
            out = real(step_model, model, opt, sampler, data, cfg, epoch, *rest)
            if epoch >= first:  # (the weights after this epoch's last step)
                with torch.no_grad():
                    for p in model.parameters():
                        p.fill_(float("nan"))
            return out
        return epoch_then_nan

    cfg = TrainConfig(model="acrnn", preset="small", epochs=3, batch_size=8, lr=1e-3, seed=0)
    monkeypatch.setattr(loop, "_train_epoch", diverging_from(1))
    with pytest.warns(UserWarning, match=r"acrnn: training diverged in epoch 2 \(training "
                                         r"loss .*, validation loss nan\); try a lower --lr "
                                         r"\(now 0.001\): stopped, the selected epoch is 1"):
        res = train(cfg, train_segs, val_segs, n_classes=4, n_speakers=2,
                    out_dir=tmp_path / "later", progress=False)
    assert res["best_epoch"] == 0 and len(res["history"]) == 1 and res["diverged_epoch"] == 2
    best = load_checkpoint(tmp_path / "later" / "best.pt")
    assert best["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in best["model"].values() if v.is_floating_point())
    monkeypatch.setattr(loop, "_train_epoch", diverging_from(0))
    with pytest.raises(UserError, match="training diverged in epoch 1 .*no epoch before it"):
        train(cfg, train_segs, val_segs, n_classes=4, n_speakers=2, out_dir=tmp_path / "first",
              progress=False)
    assert not (tmp_path / "first" / "best.pt").exists()
    for bad in ({"epochs": 0}, {"batch_size": -8}, {"patience": 0}, {"lr": 0.0}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be"):
            TrainConfig(**bad)


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
    # nothing depends on the epochs still to come (no schedule): a shorter run is the start of
    # a longer one, which docs/experiments relies on to table long runs at fewer epochs
    short = train(replace(CFG, epochs=2), trs, vas, n_classes=4, n_speakers=2,
                  out_dir=tmp_path / "short", progress=False)
    for key in ("utterance_uar", "train_loss", "embedding_l1", "step_ratio"):
        assert [h[key] for h in short["history"]] == [h[key] for h in full["history"][:2]], key
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


def test_scores_do_not_depend_on_the_evaluation_batch(tiny, tmp_path):
    """The CPU scores in batches of 32 by default (faster there than 128): the same outputs as
    batches of 128, bit for bit (a batch of 7 rounds differently, by an ulp)."""
    from ssa_fast.train.loop import evaluate

    trs, vas, _ = _fold(tiny)
    res = train(replace(CFG, epochs=1), trs, vas, n_classes=4, n_speakers=2,
                out_dir=tmp_path / "run", progress=False)
    model = res["model"]
    assert len(trs) > 32  # (the default splits them)
    scored = [evaluate(model, trs, replace(CFG, eval_batch=b), 4, keep_outputs=True)
              for b in (None, 128, 32, 7)]
    for other, exact in zip(scored[1:], (True, True, False), strict=True):
        for key in ("segment_uar", "utterance_uar", "segment_cm", "utterance_cm"):
            assert other[key] == scored[0][key], key
        for key in ("z", "alpha_em", "alpha_sp"):
            if exact:
                assert torch.equal(other[key], scored[0][key]), key
            else:
                torch.testing.assert_close(other[key], scored[0][key], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="eval_batch"):
        TrainConfig(eval_batch=0)


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


# ---------------------------------------------------------------- report figures (fake runs)

def _fake_results(models=("acrnn", "ssa-crnn-r"), k=3, epochs=(7, 5, 6), n_segments=24,
                  frames=100, classes=("neu", "hap", "sad", "ang")):
    """A cross-validation result as cross_validate returns it, with made-up numbers: folds of
    different lengths (early stopping), segments zero-padded to ``frames`` feature frames."""
    rng = np.random.default_rng(0)
    n = len(classes)
    folds, summary, figures = {}, {}, {}
    for m in models:
        rows = []
        for f in range(k):
            uar_ = rng.uniform(0.2, 0.6, epochs[f])
            rows.append({"best_epoch": int(np.argmax(uar_)), "utterance_uar": float(uar_.max()),
                         "utterance_cm": (rng.integers(0, 5, (n, n))
                                          + (f + 1) * 5 * np.eye(n, dtype=int)).tolist(),
                         "history": [{"epoch": e, "train_loss": 1.0 / (e + 1),
                                      "segment_uar": float(u), "utterance_uar": float(u),
                                      "utterance_recall": [float(u)] * n}
                                     for e, u in enumerate(uar_)]})
        folds[m] = rows
        ci = mean_ci95([r["utterance_uar"] for r in rows])
        summary[m] = {"name": m, "folds": k, "segment_uar": ci, "utterance_uar": ci,
                      "last_k_utterance_uar": ci, "utterance_wa": ci, "utterance_macro_f1": ci,
                      "utterance_recall": [0.5] * n,
                      "utterance_cm": (rng.integers(0, 5, (n, n)) + 10 * np.eye(n)).tolist()}
        labels = torch.arange(n_segments) % n
        att = lambda: torch.softmax(torch.randn(n_segments, frames // 2), dim=1)  # noqa: E731
        figures[m] = {"alpha_em": att(), "alpha_sp": att() if m.startswith("ssa") else None,
                      "z": torch.randn(n_segments, 8) + 4 * torch.eye(n, 8)[labels],
                      "labels": labels,
                      "lengths": torch.tensor(rng.integers(20, frames, n_segments))}
    return {"corpus": "fake", "protocol": "random", "k": k, "classes": list(classes),
            "config": {"preset": "small"}, "identity": {"data": {"features": {"n_mels": 40}}},
            "reported_on": "validation", "selection": 0.0, "last_k": 3, "summary": summary,
            "folds": folds, "figures_data": figures}


def test_reports_in_every_figure_format(tmp_path):
    """pdf and svg are written as such (magic bytes) and a run in another format removes the
    figures of the previous one, none of them with "none" (the table alone); an unknown format
    is refused before anything is written."""
    res = _fake_results()
    magic = {"png": (b"\x89PNG\r\n\x1a\n",), "pdf": (b"%PDF",), "svg": (b"<?xml", b"<svg")}
    for fmt in ("pdf", "svg"):
        paths = write_reports(res, tmp_path, fmt=fmt)
        for key in ("confusion", "curves", "tsne", "attention"):
            assert paths[key].suffix == f".{fmt}", key
            assert paths[key].read_bytes().startswith(magic[fmt]), key
        left = {p.suffix for p in tmp_path.iterdir() if p.stem != "table"}
        assert left == {f".{fmt}"}, left
        assert not list(tmp_path.glob(".*.tmp*"))  # written through temporary files
    table = (tmp_path / "table.md").read_text()
    # none: the same table alone, and no figure left of the run before
    paths = write_reports(res, tmp_path, fmt="none")
    assert set(paths) == {"table", "csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv", "table.md"]
    assert (tmp_path / "table.md").read_text() == table
    with pytest.raises(ValueError, match="format"):
        write_reports(res, tmp_path / "other", fmt="jpg")
    assert not (tmp_path / "other").exists()


def test_training_curves_show_folds_mean_selection_and_chance():
    import matplotlib.pyplot as plt

    from ssa_fast.reports.experiment import epoch_ticks, fold_curves, training_curves_figure

    res = _fake_results()
    fig = training_curves_figure(res)
    try:
        for ax, m in zip(fig.axes, res["folds"], strict=True):
            assert ax.get_title() == {"acrnn": "ACRNN", "ssa-crnn-r": "SSA-CRNN-r"}[m]
            ticks = ax.get_xticks()
            assert len(ticks) and all(t == int(t) and 1 <= t <= 7 for t in ticks), ticks
            assert "epoch" in ax.get_xlabel()
            lines = {tuple(line.get_xdata()): line for line in ax.get_lines()}
            for fold in res["folds"][m]:  # every fold's curve, epochs counted from 1
                assert tuple(range(1, len(fold["history"]) + 1)) in lines
            chance = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
            assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(25)
        assert "%" in fig.axes[0].get_ylabel()
        assert fig.legends and "chance" in " ".join(t.get_text() for t in fig.legends[0].texts)
    finally:
        plt.close(fig)
    data = fold_curves(res["folds"]["acrnn"])
    for (epoch, value), fold in zip(data["selected"], res["folds"]["acrnn"], strict=True):
        assert epoch == fold["best_epoch"] + 1
        assert value == pytest.approx(100 * fold["history"][fold["best_epoch"]]["utterance_uar"])
    # the folds ran 7, 5 and 6 epochs (early stopping): the mean is drawn where all 3 ran, so
    # that no fold leaving makes it jump, and the legend says so
    epochs, mean = data["mean"]
    assert epochs == list(range(1, 6)) and data["cut"]
    h = [f["history"] for f in res["folds"]["acrnn"]]
    for e in (0, 4):
        assert mean[e] == pytest.approx(100 * np.mean([x[e]["utterance_uar"] for x in h]))
    fig = training_curves_figure(res)
    try:
        for ax in fig.axes:
            (bold,) = [line for line in ax.get_lines() if line.get_linewidth() > 2]
            assert list(bold.get_xdata()) == [1, 2, 3, 4, 5]
        legend = [t.get_text() for t in fig.legends[0].texts]
        assert "mean over folds (epochs every fold ran)" in legend
    finally:
        plt.close(fig)
    # folds of the same length: the mean runs to their end, under its plain name
    same = _fake_results(epochs=(6, 6, 6))
    fig = training_curves_figure(same)
    try:
        for ax in fig.axes:
            (bold,) = [line for line in ax.get_lines() if line.get_linewidth() > 2]
            assert list(bold.get_xdata()) == [1, 2, 3, 4, 5, 6]
        assert "mean over folds" in [t.get_text() for t in fig.legends[0].texts]
    finally:
        plt.close(fig)
    assert not fold_curves(same["folds"]["acrnn"])["cut"]
    for n in (1, 2, 9, 30, 200):
        ticks = epoch_ticks(n)
        assert ticks[0] == 1 and ticks[-1] <= n and all(isinstance(t, int) for t in ticks)


def test_attention_figure_stops_at_the_valid_length(tmp_path):
    import matplotlib.pyplot as plt

    from ssa_fast.reports.experiment import attention_figure, attention_segment, plot_attention

    res = _fake_results()
    figures = res["figures_data"]
    d = figures["ssa-crnn-r"]
    d["lengths"][:] = 30  # every segment zero-padded to 100 frames; the longest has 79
    d["lengths"][5] = 79
    i = attention_segment(d)
    assert i == 5
    fig = attention_figure(figures, res["classes"], fold=0, n_folds=3,
                           seconds_per_frame=0.02, hop_seconds=0.01)
    try:
        (ax,) = fig.axes
        assert ax.get_title().startswith("SSA-CRNN-r, fold 0 of 3")
        assert f"true: {res['classes'][int(d['labels'][i])]}" in ax.get_title()
        curves = [line for line in ax.get_lines() if len(line.get_xdata())]
        assert len(curves) == 2
        for line in curves:  # 79 frames of 10 ms: 40 attention frames, none past 0.79 s
            assert len(line.get_xdata()) == 40
            assert max(line.get_xdata()) <= 0.79 + 1e-9
        assert ax.get_xlim()[1] == pytest.approx(1.0)  # the padded segment: 50 x 20 ms
        assert ax.get_xlabel() == "time in the segment (s)"
    finally:
        plt.close(fig)
    # the CLI's call (a name with its suffix) still writes that file; no SSA model: no figure
    assert plot_attention(figures, tmp_path, res["classes"], name="a.wav.png") == \
        tmp_path / "a.wav.png"
    assert plot_attention({"acrnn": figures["acrnn"]}, tmp_path, res["classes"]) is None


def test_attention_figure_seconds_follow_the_runs_own_pooling():
    """The attention figure's time axis (Figure 3) is the run's features' hop times the time
    pooling its model ran with: ``--pool`` where given (before: the preset's alone, so with
    --pool 4,2 a 1 s segment was drawn as 0.5 s), else the preset's."""
    from ssa_fast.features.config import FeatureConfig
    from ssa_fast.models.presets import get_preset
    from ssa_fast.reports.experiment import run_frame_seconds

    hop = FeatureConfig().frame_seconds
    feats = {"identity": {"data": {"features": FeatureConfig().to_dict()}}}
    for config, pool in (({"preset": "small", "pool": [4, 2]}, 4),  # (results.json: a list)
                         ({"preset": "paper", "pool": (3, 2)}, 3),
                         ({"preset": "small", "pool": None}, get_preset("small").pool[0]),
                         ({"preset": "paper"}, get_preset("paper").pool[0])):
        assert run_frame_seconds({**feats, "config": config}) == \
            pytest.approx((hop, hop * pool)), config


@pytest.mark.parametrize("n_classes", [11, 21])
def test_tsne_gives_every_class_its_own_colour(n_classes):
    """Beyond 10 classes the default colour cycle repeats (C10 is C0): every class keeps a
    colour of its own, the same in the legend and in every panel."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from ssa_fast.reports.experiment import tsne_figure

    classes = [f"c{i}" for i in range(n_classes)]
    res = _fake_results(classes=classes, n_segments=4 * n_classes)
    fig = tsne_figure(res["figures_data"], classes, fold=0, n_folds=3)
    try:
        legend = [to_rgb(h.get_color()) for h in fig.legends[0].legend_handles]
        assert [t.get_text() for t in fig.legends[0].texts] == classes
        assert len(set(legend)) == n_classes
        for ax in fig.axes:
            drawn = [to_rgb(c.get_facecolor()[0]) for c in ax.collections]
            assert drawn == legend
    finally:
        plt.close(fig)


def test_tsne_confusion_and_history_figures_are_labelled(tmp_path):
    import matplotlib.pyplot as plt

    from ssa_fast.reports.experiment import (
        confusions_figure,
        history_figure,
        plot_history,
        tsne_figure,
    )

    res = _fake_results()
    fig = tsne_figure(res["figures_data"], res["classes"], fold=0, n_folds=3)
    try:
        assert "fold 0 of 3" in fig.get_suptitle()  # fold00, train --fold 0
        assert [ax.get_title() for ax in fig.axes] == ["ACRNN", "SSA-CRNN-r"]
        assert [t.get_text() for t in fig.legends[0].texts] == res["classes"]
        for ax in fig.axes:  # class c drawn in colour Cc in every panel
            colours = [tuple(c.get_facecolor()[0][:3]) for c in ax.collections]
            assert len(set(colours)) == len(res["classes"])
        assert colours == [tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections]
    finally:
        plt.close(fig)
    fig = confusions_figure(res)
    try:
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        for ax in panels:
            assert "true" in ax.get_ylabel() and "predicted" in ax.get_xlabel()
            assert [t.get_text() for t in ax.get_xticklabels()] == res["classes"]
            assert [t.get_text() for t in ax.get_yticklabels()] == res["classes"]
            rows = np.array([float(t.get_text()) for t in ax.texts]).reshape(4, 4)
            assert rows.sum(axis=1) == pytest.approx(np.ones(4), abs=0.03)  # row-normalised
        assert panels[1].get_title().startswith("SSA-CRNN-r")
    finally:
        plt.close(fig)
    hist = res["folds"]["ssa-crnn-r"][0]["history"]
    fig = history_figure(hist, "ssa-crnn-r", best_epoch=2)
    try:
        assert fig.get_suptitle() == "SSA-CRNN-r"
        for ax in fig.axes:
            assert all(t == int(t) and t >= 1 for t in ax.get_xticks())
        labels = [t.get_text() for t in fig.axes[1].get_legend().texts]
        assert "selected epoch" in labels and "chance (1/4)" in labels
    finally:
        plt.close(fig)
    out = plot_history(hist, tmp_path / "training_curves.png", title="ssa-crnn-r", fmt="svg")
    assert out == tmp_path / "training_curves.svg" and out.read_bytes()[:5] == b"<?xml"
