"""The checkpoint layout (models/checkpoint.py) on a real training run: best.pt and last.pt hold
exactly the keys, in the order, and the values the training loop wrote before the layout had one
home (the expected dicts below are built with that code's expressions, frozen); files of older
versions are upgraded on reading; a file that is not a checkpoint is refused in one line."""

import copy
from dataclasses import asdict

import numpy as np
import pytest
import torch

from ssa_fast.data import corpus_features, load_corpus
from ssa_fast.features import FeatureConfig
from ssa_fast.models import checkpoint
from ssa_fast.predict.engine import load_trained
from ssa_fast.train import TrainConfig, prepare_fold, train
from ssa_fast.train.cv import fold_bundle, run_provenance
from ssa_fast.train.fingerprint import corpus_identity, fingerprint, fold_layout

CFG = TrainConfig(model="acrnn", preset="small", epochs=1, batch_size=8, lr=1e-3, seed=3,
                  device="cpu")

# the layout of version 4 (checkpoint.VERSION), taken from the code that wrote it inline
BEST_KEYS = ["config", "model", "epoch", "metrics", "model_config", "bundle"]
LAST_KEYS = ["config", "model", "optimizer", "epoch", "best_metric", "best_epoch", "history",
             "torch_rng"]
PROVENANCE_KEYS = ["identity", "train_utterances", "used_utterances", "epoch_utterances",
                   "fingerprint"]
BUNDLE_KEYS = ["classes", "speakers", "normaliser", "segment_frames", "feature_params"]


def _same(a, b, where="checkpoint"):
    """Equal, dict keys in the same order and tensors bit for bit."""
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)


@pytest.fixture(scope="module")
def run(tiny_corpus, tmp_path_factory):
    """A one-epoch run with a fold's bundle and provenance, as ``cv`` trains it, and one
    without either (the bare ``train`` API); with what each was given."""
    tmp = tmp_path_factory.mktemp("layout")
    corpus, feats = corpus_features(load_corpus("synthetic", tiny_corpus), tmp / "cache",
                                    progress=False)
    idx = np.arange(len(corpus))
    tr, va = np.setdiff1d(idx, idx[::4]), idx[::4]
    train_segs, val_segs, norm = prepare_fold(corpus, feats, tr, va, segment_frames=100)
    data = {"normalisation": "speaker", "segment_frames": 100, "train_hop": None,
            "features": FeatureConfig().to_dict()}
    prov = run_provenance(corpus, corpus_identity(corpus), fold_layout("random", 4, 3, 0),
                          CFG, data, (tr, va, None))
    given = dict(corpus=corpus, norm=norm, prov=prov)
    res = train(CFG, train_segs, val_segs, n_classes=4, n_speakers=2, out_dir=tmp / "fold",
                progress=False, bundle=fold_bundle(corpus, norm, 100, data["features"]),
                provenance=prov)
    bare = train(CFG, train_segs, val_segs, n_classes=4, n_speakers=2, out_dir=tmp / "bare",
                 progress=False)
    return tmp, given, res, bare


def _expected_best(res, bundle, stamp):
    """best.pt as the training loop built it inline (frozen)."""
    metrics = res["history"][res["best_epoch"]]
    return {"config": asdict(CFG), "model": res["model"].state_dict(),
            "epoch": res["best_epoch"],
            "metrics": {k: v for k, v in metrics.items() if not k.endswith("_cm")},
            "model_config": res["model"].config, "bundle": bundle or {}, **stamp}


def test_best_and_last_hold_the_layout_and_values_written_before(run):
    tmp, given, res, bare = run
    corpus, norm, prov = given["corpus"], given["norm"], given["prov"]
    assert checkpoint.VERSION == 4  # a new version: add its upgrade and update this layout
    # the bundle as cv's fold_bundle built it inline, and the stamp as the loop did
    bundle = {"classes": corpus.classes, "speakers": corpus.speakers,
              "normaliser": norm.state_dict(), "segment_frames": 100,
              "feature_params": FeatureConfig().to_dict()}
    stamp = {**prov, "identity": prov["identity"], "fingerprint": fingerprint(prov["identity"])}
    for out, r, b, s, extra in ((tmp / "fold", res, bundle, stamp, PROVENANCE_KEYS),
                                (tmp / "bare", bare, None,
                                 {"identity": None, "fingerprint": None},
                                 ["identity", "fingerprint"])):
        best = checkpoint.load(out / "best.pt")
        assert list(best) == BEST_KEYS + extra
        _same(best, _expected_best(r, b, s))
        assert "segment_cm" in r["history"][0] and "segment_cm" not in best["metrics"]
        last = checkpoint.load(out / "last.pt")
        assert list(last) == LAST_KEYS + extra
        # one epoch: the last epoch is the selected one, its weights those of best.pt
        assert r["best_epoch"] == 0 and last["epoch"] == 0
        _same({k: v for k, v in last.items() if k not in ("optimizer", "torch_rng")},
              {"config": asdict(CFG), "model": r["model"].state_dict(), "epoch": 0,
               "best_metric": r["history"][0]["utterance_uar"], "best_epoch": 0,
               "history": r["history"], **s})
        opt = torch.optim.NAdam(r["model"].parameters(), lr=CFG.lr)
        opt.load_state_dict(last["optimizer"])  # the optimiser's own state_dict
        assert list(last["optimizer"]) == ["state", "param_groups"]
        assert last["torch_rng"].dtype == torch.uint8
        torch.set_rng_state(last["torch_rng"])
    assert list(checkpoint.load(tmp / "fold" / "best.pt")["bundle"]) == BUNDLE_KEYS
    assert res["fingerprint"] == stamp["fingerprint"]


def test_reading_upgrades_older_versions(run, tmp_path):
    tmp, given, res, _ = run
    v4 = checkpoint.load(tmp / "fold" / "best.pt")
    v3 = copy.deepcopy(v4)
    del v3["epoch_utterances"]
    v2 = copy.deepcopy(v3)
    del v2["used_utterances"]
    v1 = copy.deepcopy(v2)
    for key in ("identity", "train_utterances", "fingerprint"):
        del v1[key]
    v1["bundle"]["feature_params"] = {"n_mels": 40}  # what version 1 stored
    del v1["bundle"]["speakers"], v1["config"]["pooling"]
    for version, state in (("v4", v4), ("v3", v3), ("v2", v2), ("v1", v1)):
        torch.save(state, tmp_path / f"{version}.pt")
    best = {v: checkpoint.read_best(tmp_path / f"{v}.pt") for v in ("v4", "v3", "v2", "v1")}
    for b in best.values():
        assert b.feature_params == FeatureConfig().to_dict()
        assert b.classes == given["corpus"].classes and b.segment_frames == 100
        assert b.model_config == res["model"].config and b.epoch == 0
    # the validation utterances chose the epoch (no selection split): 8 of the 32, each kind
    assert best["v4"].epoch_utterances == given["prov"]["epoch_utterances"]
    assert sorted(map(len, best["v4"].epoch_utterances.values())) == [8, 8, 8]
    assert best["v3"].epoch_utterances is best["v2"].epoch_utterances is None
    assert best["v3"].used_utterances == given["prov"]["used_utterances"]
    assert best["v2"].used_utterances == {"listing": given["prov"]["train_utterances"]}
    assert best["v2"].identity == given["prov"]["identity"]
    assert best["v1"].identity is best["v1"].used_utterances is best["v1"].fingerprint is None
    assert best["v1"].speakers == [] and best["v1"].pooling == "mean"
    assert best["v3"].speakers == given["corpus"].speakers
    tm = load_trained(tmp_path / "v2.pt")  # what evaluate reads: the upgraded fields
    assert tm.used_utterances == {"listing": given["prov"]["train_utterances"]}
    for k, v in tm.model.state_dict().items():
        assert torch.equal(v, v3["model"][k]), k


def test_last_reads_typed(run):
    tmp, _, res, _ = run
    last = checkpoint.read_last(tmp / "fold" / "last.pt")
    assert last.epoch == 0 and last.best_epoch == 0 and last.history == res["history"]
    assert last.fingerprint == res["fingerprint"] == checkpoint.fingerprint_of(
        tmp / "fold" / "last.pt")
    assert last.config == asdict(CFG) and last.identity["folds"]["k"] == 4
    for k, v in checkpoint.weights(tmp / "fold" / "best.pt").items():
        assert torch.equal(v, last.model[k]), k


def test_what_is_not_a_model_checkpoint_is_refused_in_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint .*nothing.pt does not exist"):
        checkpoint.read_best(tmp_path / "nothing.pt")
    cases = {"text.pt": "not a checkpoint that loads with weights_only=True",
             "tensor.pt": r"not a model checkpoint \(a Tensor\)",
             "partial.pt": r"written by `ssa-fast train` or `ssa-fast cv` \(a best.pt\); "
                           r"missing \['normaliser', 'segment_frames'\]",
             "last.pt": r"missing \['classes', 'normaliser', 'segment_frames'\]",
             "nomodel.pt": r"missing \['model_config'\]"}
    (tmp_path / "text.pt").write_text("hello")
    torch.save(torch.ones(2), tmp_path / "tensor.pt")
    torch.save({"model": {}, "bundle": {"classes": ["a"]}}, tmp_path / "partial.pt")
    torch.save({"config": {}, "model": {}, "optimizer": {}}, tmp_path / "last.pt")
    torch.save({"bundle": {"classes": [], "normaliser": {}, "segment_frames": 1}},
               tmp_path / "nomodel.pt")
    for name, message in cases.items():
        with pytest.raises(ValueError, match=message) as info:
            checkpoint.read_best(tmp_path / name)
        text = str(info.value)
        assert text.startswith(f"{tmp_path / name}: ") and "\n" not in text, text


def test_a_gpu_runs_generator_state_goes_through_last_pt(tmp_path):
    """last.pt of a run on a GPU holds its device generator's state (the dropout masks after a
    resume; only torch's CPU state was saved), read back as it was written; a CPU run's has
    none. (The resume on a GPU is tests/train/test_crash_resume.py's, with dropout.)"""
    from ssa_fast._atomic import save_torch
    from ssa_fast.models.checkpoint import last_state, read_last

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.NAdam(model.parameters())
    state = torch.randint(0, 255, (16,), dtype=torch.uint8)  # (any generator state's bytes)
    for rng in (state, None):
        save_torch(tmp_path / "last.pt", last_state({}, model, opt, 0, 0.5, 0, [], {}, rng))
        back = read_last(tmp_path / "last.pt")
        assert (back.cuda_rng is None) if rng is None else torch.equal(back.cuda_rng, rng)
        assert ("cuda_rng" in checkpoint.load(tmp_path / "last.pt")) == (rng is not None)
