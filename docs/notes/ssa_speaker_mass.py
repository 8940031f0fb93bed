"""How much attention SSA gives to the speaker rows (sum of alpha_sp) in the demo's SSA-CRNN-r
models, on their validation segments, against the same architecture untrained.

    python docs/notes/ssa_speaker_mass.py demo_out      # after `make demo`
"""

import sys
from pathlib import Path

import torch

from ssa_fast.data import corpus_features, load_corpus
from ssa_fast.predict.engine import load_trained, segment_outputs
from ssa_fast.train import TrainConfig, build_model, make_folds, prepare_fold

out = Path(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
corpus, feats = corpus_features(load_corpus("synthetic", out / "corpus"), out / "cache",
                                progress=False)
folds = make_folds(corpus, "linguistic", 3)
for f, (tr, va) in enumerate(folds):
    _, val, _ = prepare_fold(corpus, feats, tr, va)
    tm = load_trained(out / "cv" / "ssa-crnn-r" / f"fold{f:02d}" / "best.pt")
    trained = segment_outputs(tm, val)["alpha_sp"].sum(1)
    torch.manual_seed(0)
    cfg = TrainConfig(model="ssa-crnn-r", preset="small")
    tm.model = build_model(cfg, 4, len(corpus.speakers), 300, 40).eval()
    init = segment_outputs(tm, val)["alpha_sp"].sum(1)
    print(f"fold {f}: alpha_sp mass, trained: mean {trained.mean():.2e}, max "
          f"{trained.max():.2e}; untrained: mean {init.mean():.3f}")
