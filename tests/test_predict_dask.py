"""The Dask recipe (optional extra ssa-fast[dask]) on a local cluster of 2 worker processes: the
same records, in input order, as classify_files on one machine; skipped without Dask."""

import os

import numpy as np
import pytest
from helpers import speech_like

distributed = pytest.importorskip("distributed")
sf = pytest.importorskip("soundfile")


def test_dask_recipe_equals_one_machine(trained, tmp_path):
    from ssa_fast import EmotionClassifier
    from ssa_fast.predict.dask import classify_files_dask

    ckpt, _ = trained
    paths = []
    for i in range(7):
        path = tmp_path / f"x{i}.wav"
        sf.write(path, speech_like(16000 + 5000 * i, seed=i).astype(np.float32), 16000)
        paths.append(path)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    sf.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    local = list(EmotionClassifier.from_checkpoint(ckpt).classify_files([tmp_path],
                                                                        num_workers=0))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        recs = list(classify_files_dask(client, ckpt, [tmp_path], files_per_task=2,
                                        max_pending=3))
        assert len(client.scheduler_info()["workers"]) == 2
    assert [r["file"] for r in recs] == [p.file for p in local] and len(recs) == 9
    for r, p in zip(recs, local, strict=True):
        assert r["status"] == p.status and r["label"] == p.label
        assert r["probabilities"].keys() == p.probabilities.keys()
        assert all(abs(r["probabilities"][c] - p.probabilities[c]) < 1e-5
                   for c in p.probabilities)
    assert {r["status"] for r in recs} == {"ok", "failed", "silent"}


def test_dask_workers_get_absolute_paths_and_a_manifests_unknown_speaker_is_said(
        trained, tmp_path, monkeypatch):
    """Relative paths went to the workers as given: from a worker's own working directory
    they named other files (here: silence under the same names), or none."""
    from ssa_fast import EmotionClassifier
    from ssa_fast.predict.dask import classify_files_dask

    ckpt, _ = trained
    for d, make in (("A", lambda i: speech_like(16000 + 4000 * i, seed=i)),
                    ("B", lambda i: np.zeros(16000, np.float32))):
        (tmp_path / d / "data").mkdir(parents=True)
        for i in range(3):
            sf.write(tmp_path / d / "data" / f"x{i}.wav", make(i).astype(np.float32), 16000)
    (tmp_path / "A" / "typo.csv").write_text("path,speaker\ndata/x0.wav,SPK00\n")
    monkeypatch.chdir(tmp_path / "A")
    local = list(EmotionClassifier.from_checkpoint(ckpt).classify_files(["data"],
                                                                        num_workers=0))
    assert [p.status for p in local] == ["ok"] * 3
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        client.run(os.chdir, str(tmp_path / "B"))  # (a worker elsewhere)
        recs = list(classify_files_dask(client, ckpt, ["data"], files_per_task=2))
        with pytest.warns(UserWarning, match="speaker 'SPK00' was not in training"):
            typo = list(classify_files_dask(client, ckpt, ["typo.csv"]))
    assert [r["file"] for r in recs] == [p.file for p in local] == \
        [f"data/x{i}.wav" for i in range(3)]
    assert [r["status"] for r in recs] == ["ok"] * 3
    for r, p in zip(recs, local, strict=True):
        assert all(abs(r["probabilities"][c] - p.probabilities[c]) < 1e-5
                   for c in p.probabilities)
    assert [(r["file"], r["normalisation"]) for r in typo] == [("data/x0.wav", "utterance")]


def test_dask_scores_with_the_checkpoint_now_at_its_path(trained, tmp_path):
    """A checkpoint retrained into the same path: each worker kept the model it had loaded by
    path, so a second call on the same cluster gave the old model's numbers under the old id.
    Records also keep each file's size and time from before it was read."""
    import shutil

    import torch

    from ssa_fast import EmotionClassifier
    from ssa_fast.predict.dask import classify_files_dask
    from ssa_fast.predict.output import checkpoint_id

    ckpt, _ = trained
    path = tmp_path / "best.pt"
    shutil.copyfile(ckpt, path)
    other = torch.load(ckpt, weights_only=True)  # (another model: its weights moved)
    gen = torch.Generator().manual_seed(0)
    other["model"] = {k: v + 0.05 * torch.randn(v.shape, generator=gen)
                      if v.is_floating_point() and "running_" not in k else v
                      for k, v in other["model"].items()}
    wavs = []
    for i in range(3):
        wavs.append(tmp_path / f"x{i}.wav")
        sf.write(wavs[-1], speech_like(16000 + 4000 * i, seed=30 + i).astype(np.float32), 16000)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        first = list(classify_files_dask(client, path, wavs))
        torch.save(other, path)
        second = list(classify_files_dask(client, path, wavs))
    local = list(EmotionClassifier.from_checkpoint(path).classify_files(wavs, num_workers=0))
    assert {r["checkpoint"] for r in second} == {checkpoint_id(path)} != \
        {r["checkpoint"] for r in first}
    for r, p, w in zip(second, local, wavs, strict=True):
        assert all(abs(r["probabilities"][c] - p.probabilities[c]) < 1e-5
                   for c in p.probabilities)
        assert (r["bytes"], r["mtime_ns"]) == (w.stat().st_size, w.stat().st_mtime_ns)
    assert any(abs(a["probabilities"][c] - b["probabilities"][c]) > 1e-3
               for a, b in zip(first, second, strict=True) for c in a["probabilities"])
