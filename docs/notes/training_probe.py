"""The probe behind training_probe.md: one linguistic fold of the small synthetic corpus,
12 epochs of each model, validation UAR printed after every epoch.

    ssa-fast synth --out /tmp/syn1 --size small && python docs/notes/training_probe.py
"""

import time

import torch

from ssa_fast.data import corpus_features, load_corpus
from ssa_fast.train import TrainConfig, make_folds, prepare_fold, train

torch.set_num_threads(2)
corpus, feats = corpus_features(load_corpus("synthetic", "/tmp/syn1"), "/tmp/cache1",
                                progress=False)
train_idx, val_idx = make_folds(corpus, "linguistic", 3)[0]
train_segs, val_segs, _ = prepare_fold(corpus, feats, train_idx, val_idx)
print(len(train_segs), "training /", len(val_segs), "validation segments", flush=True)
for model in ["acrnn", "acrnn-r", "ssa-crnn-r"]:
    start = time.time()

    def report(epoch, metrics, model=model, start=start):
        print(model, epoch, round(metrics["utterance_uar"], 3), round(metrics["train_loss"], 3),
              f"{time.time() - start:.0f}s", flush=True)

    cfg = TrainConfig(model=model, preset="small", epochs=12, lr=1e-3)
    train(cfg, train_segs, val_segs, n_classes=4,
          n_speakers=len(corpus.speakers), out_dir=f"/tmp/probe_{model}", progress=False,
          on_epoch_end=report)
