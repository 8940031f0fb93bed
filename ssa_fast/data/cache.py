"""Features of a whole corpus, computed once with `logmel_delta` and cached on disk.

The cache key covers every file (path, size, modification time), its annotation, the feature
parameters, the sample rate and the code that computes features (``_code.FEATURES``: decoding,
resampling, the front end and its kernels): change any of them and the features are recomputed.
Files are written atomically (``_atomic.save_torch``) and read with
``torch.load(weights_only=True)``. A cache file also holds each file's audio digest
(``Record.audio``), which a cached run gives its records as a run that reads the audio does.
Processes sharing a cache folder (the shards of a cluster job) fill it one at a time, under the
folder's lock (_lock.py): the first computes a missing file, the others wait and read it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from .. import _code, _warn
from .._atomic import save_torch, sweep_stale
from .._lock import folder_lock, holder
from ..features.config import FeatureConfig
from .corpus import Corpus, drop_same_audio, file_stamp

CACHE_VERSION = 3  # 2: with the audio digests; 3: files by their real paths


def _key(corpus: Corpus, sample_rate: int, params: dict) -> str:
    # each file by its real path: a path as written (relative to the working folder) names
    # other files from another folder, and two corpora of clips of one size and time stamp
    # (unpacked from archives) shared one cache entry, the first one's features and digests
    files = []
    for r in corpus.records:
        real = os.path.realpath(r.path)
        size, mtime = file_stamp(real) or (None, None)
        files.append((real, size, mtime, r.speaker, r.label, r.phrase))
    blob = json.dumps({"v": CACHE_VERSION, "sr": sample_rate, "params": params, "files": files,
                       "code": _code.code_digest(_code.FEATURES)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _batches(lengths: list[int], max_samples: int) -> list[list[int]]:
    """Indices grouped by similar length, each group's padded size <= max_samples."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    groups, current = [], []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_samples:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    return groups


def compute_features(waves: list, features: FeatureConfig | None = None, *,
                     device: str | torch.device = "cpu", backend: str | None = None,
                     max_batch_samples: int = 16000 * 600,
                     progress: bool = False) -> list[torch.Tensor]:
    """3-D log-Mel (``features``, default FeatureConfig()) of each waveform, batched by length,
    on `device`; CPU float32 tensors."""
    from tqdm import tqdm

    front_end = (features or FeatureConfig()).module(backend).to(device)
    lengths = [len(w) for w in waves]
    out: list[torch.Tensor | None] = [None] * len(waves)
    groups = _batches(lengths, max_batch_samples)
    for group in tqdm(groups, desc="features", unit="batch", disable=None if progress else True):
        n = max(lengths[i] for i in group)
        batch = torch.zeros(len(group), n)
        for j, i in enumerate(group):
            batch[j, :lengths[i]] = torch.as_tensor(waves[i])
        group_lengths = torch.tensor([lengths[i] for i in group])
        feats, frames = front_end(batch.to(device), lengths=group_lengths)
        for j, i in enumerate(group):
            out[i] = feats[j, :, :int(frames[j])].float().cpu().contiguous()
    return out


def _read_cache(path: Path, corpus: Corpus) -> dict | None:
    """The cached features at ``path``, or None (with a warning naming the file, which is
    removed) when it is truncated, corrupt or not a feature cache: it is then rebuilt."""
    data, why = _load_cache(path, corpus)
    if why is None:
        return data
    _warn.warn(f"feature cache {path} is unreadable ({why}): removed, recomputing", CacheWarning)
    path.unlink(missing_ok=True)
    return None


def _load_cache(path: Path, corpus: Corpus) -> tuple[dict | None, str | None]:
    """(the cached features at ``path``, None) or (None, why they cannot be used)."""
    try:
        data = torch.load(path, weights_only=True)
        ok = (isinstance(data, dict) and isinstance(data.get("paths"), list)
              and isinstance(data.get("features"), list)
              and len(data["paths"]) == len(data["features"])
              and isinstance(data.get("audio"), list) and len(data["audio"]) == len(data["paths"])
              and all(isinstance(f, torch.Tensor) and f.ndim == 3 for f in data["features"])
              and set(data["paths"]) <= {os.path.realpath(r.path) for r in corpus.records})
        why = None if ok else "not a feature cache of this corpus"
    except Exception as exc:  # zip / pickle / EOF errors of a truncated or corrupt file
        data, why = None, f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:120]}"
    return (data, None) if why is None else (None, why)


class CacheWarning(UserWarning):
    """A cache file was unreadable and is rebuilt."""


def corpus_features(corpus: Corpus, cache_dir: str | Path | None = None, *,
                    features: FeatureConfig | None = None, device: str = "cpu",
                    backend: str | None = None, progress: bool = True,
                    **params) -> tuple[Corpus, list[torch.Tensor]]:
    """(corpus of the readable records, their features (3, T, M)) with the parameters of
    ``features`` (default FeatureConfig()); keyword ``params`` (``n_mels=64``...) override
    single fields. Unreadable files are in the returned corpus' ``skipped``, and so are copies
    of one audio under several names (corpus.drop_same_audio: one kept where their annotations
    agree, none where they differ). With ``cache_dir``, results are reused across runs (the
    cache key holds every parameter).

    The cache heals itself: temporary files of killed runs are swept, a truncated or corrupt
    cache file is named (CacheWarning), removed and rebuilt, and a full disk raises
    DiskFullError naming the file (no partial file is left)."""
    return drop_same_audio(*_every_record(corpus, cache_dir, features, device, backend,
                                          progress, params))


def _every_record(corpus: Corpus, cache_dir, features, device, backend, progress,
                  params: dict) -> tuple[Corpus, list[torch.Tensor]]:
    """corpus_features before copies of one audio are left out (the cache holds them all)."""
    features = FeatureConfig.from_dict({**(features or FeatureConfig()).to_dict(), **params})
    if cache_dir is None:
        return _computed(corpus, None, features, device, backend, progress)
    sweep_stale(cache_dir, recursive=False)
    path = cache_path(corpus, cache_dir, features)
    data = _load_cache(path, corpus)[0] if path.is_file() else None  # (read without the lock)
    if data is None:
        with folder_lock(cache_dir, wait=False) as held:
            if held:
                return _filled(corpus, path, features, device, backend, progress)
        if progress:
            import sys

            print(f"waiting for the feature cache {cache_dir}: {holder(cache_dir)} is "
                  "filling it", file=sys.stderr, flush=True)
        with folder_lock(cache_dir):
            return _filled(corpus, path, features, device, backend, progress)
    return _cached(corpus, data)


def cache_path(corpus: Corpus, cache_dir: str | Path, features: FeatureConfig) -> Path:
    """The cache file of ``corpus``'s features with ``features``' parameters."""
    params = features.to_dict()
    key = _key(corpus, params.pop("sample_rate"), params)
    return Path(cache_dir) / f"features-{corpus.name or 'corpus'}-{key}.pt"


def _cached(corpus: Corpus, data: dict) -> tuple[Corpus, list[torch.Tensor]]:
    # (by real path: the same files named from another working folder, or through a link, are
    # the same cache; the key holds the real paths)
    audio = dict(zip(data["paths"], data["audio"], strict=True))
    skipped = list(corpus.skipped) + [tuple(s) for s in data["skipped"]]
    real = [os.path.realpath(r.path) for r in corpus.records]
    kept = Corpus([replace(r, audio=audio[p]) for r, p in zip(corpus.records, real, strict=True)
                   if p in audio],
                  corpus.classes, corpus.name, corpus.root, skipped, list(corpus.notes),
                  dict(corpus.options))
    return kept, list(data["features"])


def _filled(corpus, path: Path, features: FeatureConfig, device, backend, progress):
    """The features of the cache file ``path``, computed and saved unless another process did
    that while this one waited; the cache folder's lock is held."""
    data = _read_cache(path, corpus) if path.is_file() else None
    if data is not None:
        return _cached(corpus, data)
    return _computed(corpus, path, features, device, backend, progress)


def _computed(corpus, path: Path | None, features: FeatureConfig, device, backend, progress):
    kept, waves = corpus.load_audio(features.sample_rate, progress=progress)
    feats = compute_features(waves, features, device=device, backend=backend, progress=progress)
    if path is not None:
        new_skips = [list(s) for s in kept.skipped[len(corpus.skipped):]]
        save_torch(path, {"paths": [os.path.realpath(r.path) for r in kept.records],
                          "features": feats,
                          "audio": [r.audio for r in kept.records], "skipped": new_skips})
    return kept, feats
