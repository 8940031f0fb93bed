"""The feature cache heals itself: a truncated or foreign cache file is named, removed and
rebuilt; temporary files of a killed writer are swept at the next start."""

import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from ssa_fast.data import corpus_features, load_corpus
from ssa_fast.data.cache import CacheWarning

sf = pytest.importorskip("soundfile")  # not on every GPU image: the module skips


@pytest.fixture
def corpus(tmp_path):
    rows = ["path,speaker,label"]
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(tmp_path / f"u{i}.wav", (0.1 * rng.standard_normal(3000 + 700 * i))
                 .astype(np.float32), 16000)
        rows.append(f"u{i}.wav,s{i % 2},{'a' if i % 2 else 'b'}")
    (tmp_path / "bad.wav").write_bytes(b"RIFF")
    rows.append("bad.wav,s0,a")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return load_corpus("manifest", tmp_path / "m.csv")


def _same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "foreign"])
def test_damaged_cache_is_named_removed_and_rebuilt(tmp_path, corpus, damage):
    cache = tmp_path / "cache"
    kept, feats = corpus_features(corpus, cache, progress=False)
    assert len(kept) == 4 and len(kept.skipped) == 1
    (path,) = cache.glob("features-*.pt")
    good = path.read_bytes()
    if damage == "truncated":  # what a kill or a full disk leaves without atomic writes
        path.write_bytes(good[: len(good) * 2 // 3])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(good)))
    else:  # loads, but is not this corpus' cache
        torch.save({"paths": ["/elsewhere.wav"], "features": [torch.zeros(3, 2, 40)],
                    "skipped": []}, path)
    with pytest.warns(CacheWarning, match=f"feature cache {path} is unreadable.*recomputing") \
            as caught:
        kept2, feats2 = corpus_features(corpus, cache, progress=False)
    assert caught[0].filename == __file__  # (the caller's line, not the library's)
    assert _same(feats, feats2) and [r.path for r in kept2] == [r.path for r in kept]
    assert kept2.skipped == kept.skipped  # the unreadable file is still reported
    assert path.read_bytes() == good  # rebuilt in full
    with warnings.catch_warnings():  # and read back silently next time
        warnings.simplefilter("error", CacheWarning)
        assert _same(corpus_features(corpus, cache, progress=False)[1], feats)


WRITER = """
import sys, time
from ssa_fast._atomic import atomic_write

def write(tmp):
    with open(tmp, "wb") as fh:
        fh.write(b"partial cache")
        fh.flush()
        print(tmp, flush=True)
        time.sleep(60)  # killed here, mid-write

atomic_write(sys.argv[1], write)
"""


def test_temp_file_of_a_killed_writer_is_swept(tmp_path, corpus):
    cache = tmp_path / "cache"
    kept, feats = corpus_features(corpus, cache, progress=False)
    (path,) = cache.glob("features-*.pt")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    tmp = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert os.path.isfile(tmp) and os.path.basename(tmp).startswith(f".{path.name}.tmp")
    kept2, feats2 = corpus_features(corpus, cache, progress=False)
    assert not os.path.exists(tmp)  # swept at the start of the next run
    assert _same(feats, feats2) and sorted(os.listdir(cache)) == [".lock", path.name]


def test_sweep_leaves_temp_files_of_other_hosts(tmp_path):
    """A folder shared by the machines of a cluster: a process here cannot tell whether a
    process of another host is alive, so only this host's dead writers' files are swept."""
    from ssa_fast._atomic import _host, sweep_stale, temp_path

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    assert temp_path(tmp_path / "x.pt").name == f".x.pt.tmp{os.getpid()}@{_host()}"
    mine, old = tmp_path / f".a.pt.tmp{dead}@{_host()}", tmp_path / f".b.pt.tmp{dead}"
    other = tmp_path / f".c.pt.tmp{dead}@not-{_host()}"
    for p in (mine, old, other):
        p.write_bytes(b"partial")
    assert sorted(sweep_stale(tmp_path)) == sorted([mine, old])
    assert other.is_file()


WAITER = """
import sys
from ssa_fast.data import corpus_features, load_corpus

corpus = load_corpus("manifest", sys.argv[1])
corpus_features(corpus, sys.argv[2], progress=True)
"""


def test_processes_sharing_a_cache_fill_it_once(tmp_path, corpus):
    """While one process fills the cache (here: this one, holding its lock), another waits,
    saying so, and then reads the file instead of computing it again."""
    from ssa_fast._lock import folder_lock
    from ssa_fast.data.cache import _computed, cache_path
    from ssa_fast.features import FeatureConfig

    cache = tmp_path / "cache"
    with folder_lock(cache):
        proc = subprocess.Popen([sys.executable, "-c", WAITER, str(tmp_path / "m.csv"),
                                 str(cache)], stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        assert f"waiting for the feature cache {cache}: pid {os.getpid()} on " in line
        assert proc.poll() is None
        # what corpus_features does with the lock held (a second lock in this process would
        # wait for the first: flock locks belong to open files, not processes)
        _computed(corpus, cache_path(corpus, cache, FeatureConfig()), FeatureConfig(), "cpu",
                  None, False)
        (path,) = cache.glob("features-*.pt")
        stamp = path.stat().st_mtime_ns
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    proc.stderr.close()
    assert path.stat().st_mtime_ns == stamp  # read, not computed and written again


def test_two_corpora_listed_alike_from_two_folders_get_their_own_cache(tmp_path, monkeypatch):
    """The same relative listing in two folders, clips of one size and one time stamp (two
    archives unpacked): each corpus gets its own features, not the first one's."""
    rng = np.random.default_rng(1)
    for v in ("v1", "v2"):
        (tmp_path / v / "wav").mkdir(parents=True)
        rows = ["path,speaker,label"]
        for i in range(4):
            path = tmp_path / v / "wav" / f"u{i}.wav"
            sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000,
                     subtype="PCM_16")
            os.utime(path, ns=(1_700_000_000_000_000_000,) * 2)
            rows.append(f"wav/u{i}.wav,s{i % 2},{'ab'[i % 2]}")
        (tmp_path / v / "m.csv").write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    for v in ("v1", "v2"):
        monkeypatch.chdir(tmp_path / v)
        corpus = load_corpus("manifest", "m.csv")
        assert corpus[0].path == "wav/u0.wav"  # (as listed: relative to this folder)
        cached = corpus_features(corpus, cache, progress=False)[1]
        assert _same(cached, corpus_features(corpus, None, progress=False)[1]), v
    assert len(list(cache.glob("features-*.pt"))) == 2


def test_one_corpus_named_from_two_working_folders_shares_its_cache(tmp_path, monkeypatch):
    """The same files listed by relative and by absolute paths (the corpus root given both
    ways, or two shards started from other folders): the cache keyed them by real path but
    checked the paths as written, called the other's healthy file unreadable, removed it and
    recomputed every feature, each time the naming switched."""
    rng = np.random.default_rng(2)
    (tmp_path / "c" / "wav").mkdir(parents=True)
    rows_rel, rows_abs = ["path,speaker,label"], ["path,speaker,label"]
    for i in range(4):
        path = tmp_path / "c" / "wav" / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(8000)).astype(np.float32), 16000)
        rows_rel.append(f"wav/u{i}.wav,s{i % 2},{'ab'[i % 2]}")
        rows_abs.append(f"{path},s{i % 2},{'ab'[i % 2]}")
    (tmp_path / "c" / "rel.csv").write_text("\n".join(rows_rel) + "\n")
    (tmp_path / "abs.csv").write_text("\n".join(rows_abs) + "\n")
    cache = tmp_path / "cache"
    monkeypatch.chdir(tmp_path / "c")
    rel = load_corpus("manifest", "rel.csv")
    assert rel[0].path == "wav/u0.wav"
    first = corpus_features(rel, cache, progress=False)
    (path,) = cache.glob("features-*.pt")
    stamp = path.stat().st_mtime_ns
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        for corpus in (load_corpus("manifest", "abs.csv"), load_corpus("manifest", "c/rel.csv")):
            kept, feats = corpus_features(corpus, cache, progress=False)
            assert [r.path for r in kept] == [r.path for r in corpus]  # (its own names)
            assert _same(feats, first[1])
    assert list(cache.glob("features-*.pt")) == [path] and path.stat().st_mtime_ns == stamp


def test_a_corpus_of_clips_of_a_few_samples_gets_features(tmp_path):
    """The cache batches clips by length: ten clips of 4 samples are a (10, 4) batch with
    lengths, not the (samples, channels) array of a file that logmel_delta refuses alone."""
    rows = ["path,speaker,label"]
    for i in range(10):
        sf.write(tmp_path / f"u{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(4))
                 .astype(np.float32), 16000)
        rows.append(f"u{i}.wav,s{i % 2},{'ab'[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    kept, feats = corpus_features(load_corpus("manifest", tmp_path / "m.csv"),
                                  tmp_path / "cache", progress=False)
    assert len(kept) == 10 and all(f.shape == (3, 1, 40) for f in feats)
