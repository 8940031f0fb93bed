"""Features of a whole corpus, computed once with `logmel_delta` and cached on disk.

The cache key covers every file (path, size, modification time), its annotation, the feature
parameters and the sample rate: change any of them and the features are recomputed. Files are
written atomically (temporary file + rename) and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from ..kernels.logmel_delta import logmel_delta
from .corpus import Corpus

CACHE_VERSION = 1


def _key(corpus: Corpus, sample_rate: int, params: dict) -> str:
    files = []
    for r in corpus.records:
        try:
            st = os.stat(r.path)
            files.append((r.path, st.st_size, st.st_mtime_ns, r.speaker, r.label, r.phrase))
        except OSError:
            files.append((r.path, None, None, r.speaker, r.label, r.phrase))
    blob = json.dumps({"v": CACHE_VERSION, "sr": sample_rate, "params": params, "files": files},
                      sort_keys=True, default=str)
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


def compute_features(waves: list, *, device: str | torch.device = "cpu",
                     backend: str | None = None, max_batch_samples: int = 16000 * 600,
                     progress: bool = False, **params) -> list[torch.Tensor]:
    """3-D log-Mel of each waveform (batched by length, on `device`); CPU float32 tensors."""
    from tqdm import tqdm

    lengths = [len(w) for w in waves]
    out: list[torch.Tensor | None] = [None] * len(waves)
    groups = _batches(lengths, max_batch_samples)
    for group in tqdm(groups, desc="features", unit="batch", disable=not progress):
        n = max(lengths[i] for i in group)
        batch = torch.zeros(len(group), n)
        for j, i in enumerate(group):
            batch[j, :lengths[i]] = torch.as_tensor(waves[i])
        group_lengths = torch.tensor([lengths[i] for i in group])
        feats, frames = logmel_delta(batch.to(device), lengths=group_lengths, backend=backend,
                                     **params)
        for j, i in enumerate(group):
            out[i] = feats[j, :, :int(frames[j])].float().cpu().contiguous()
    return out


def corpus_features(corpus: Corpus, cache_dir: str | Path | None = None, *,
                    sample_rate: int = 16000, device: str = "cpu", backend: str | None = None,
                    progress: bool = True, **params) -> tuple[Corpus, list[torch.Tensor]]:
    """(corpus of the readable records, their features (3, T, M)). Unreadable files are in the
    returned corpus' ``skipped``. With ``cache_dir``, results are reused across runs."""
    path = None
    if cache_dir is not None:
        key = _key(corpus, sample_rate, params)
        path = Path(cache_dir) / f"features-{corpus.name or 'corpus'}-{key}.pt"
        if path.is_file():
            data = torch.load(path, weights_only=True)
            keep = set(data["paths"])
            skipped = list(corpus.skipped) + [tuple(s) for s in data["skipped"]]
            kept = Corpus([r for r in corpus.records if r.path in keep], corpus.classes,
                          corpus.name, corpus.root, skipped)
            return kept, list(data["features"])
    kept, waves = corpus.load_audio(sample_rate, progress=progress)
    feats = compute_features(waves, device=device, backend=backend, progress=progress,
                             sample_rate=sample_rate, **params)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        new_skips = [list(s) for s in kept.skipped[len(corpus.skipped):]]
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        torch.save({"paths": [r.path for r in kept.records], "features": feats,
                    "skipped": new_skips}, tmp)
        os.replace(tmp, path)
    return kept, feats
