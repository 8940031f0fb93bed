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
