"""What produced a result: the identity of a training run and its fingerprint.

Every run, fold result and checkpoint carries an *identity*, a JSON-ready dict of everything that
determines its numbers, and its *fingerprint*, a stable hash of that dict (SHA-256 of its canonical
JSON: sorted keys, no whitespace). A finished fold is reused only when its fingerprint equals the
one of the run asked for, and :func:`differences` names what changed when it does not.

The identity holds:

- ``corpus``: the corpus name, classes, number of utterances and a hash over every utterance's
  (path relative to the corpus root, file size, modification time, speaker, label, phrase). The
  file size and modification time come from one ``stat`` per file: cheap, and they change when a
  file is rewritten (content hashes would mean reading the whole corpus on every run). Moving the
  corpus folder keeps the hash; copying it (new modification times) changes it, which makes the
  runs recompute rather than risk reusing results of other data.
- ``folds``: the protocol, number of folds, the seed of the split, the fold, and the selection
  split (see :func:`ssa_fast.train.cv.split_fold`).
- ``split``: a hash of which utterances (their listing keys, below) the run trains on, chooses
  its epoch on and holds out (:func:`split_digest`). The layout above rebuilds the split only
  from the same listing: the random protocol and the selection carve draw positions in the
  corpus, so the same files listed in another order give another split, and a run trained on
  the old one must not be reused (its held-out utterances are not the new fold's). Within a
  fold each part's utterances are taken in the order of their listing keys
  (``cv._fold_segments``), so the listing's order decides nothing the split does not.
- ``data``: normalisation, segment length, training hop and the feature parameters.
- ``code``: a digest of the library's code that computes a run's numbers
  (:func:`ssa_fast._code.code_digest`): a fold trained by another version, or before an edit of
  that code, is recomputed.
- ``train``: the whole :class:`~ssa_fast.train.config.TrainConfig` (model, preset, epochs, lr,
  seed, device, bf16...) except the evaluation batch size and the free-form ``extra`` notes,
  which do not change the numbers.

Beside the identity, and not part of it, every result records its ``environment``
(:func:`environment`): the library, Python, torch, CUDA and Triton versions, the device and its
name, the CPU's instruction set as torch uses it, the number of processes, a CPU run's threads,
whether the compiled extension loaded, and a backend forced from outside the configuration
(``SSA_FAST_BACKEND``), the audio libraries that decode and resample (soundfile, soxr) and the
GPU kernels' opt-in variants set (``SSA_FAST_SSA_ONE_LAUNCH``, ``SSA_FAST_SSA_LARGE``,
``SSA_FAST_LOGMEL_REGFFT``). Shards of one
cross-validation may run on different nodes of a cluster, and their folds must still be reused and
assembled; but numbers computed on other hardware or by another torch differ, in rounding at least.
So `cv` lists the environments its table's runs were trained in (``results.json``, "environments")
and warns when there is more than one.

Utterances a run used (trained on, or chose its epoch on with a selection split) are recognised
by what the audio is, not by how it is listed: :func:`used_keys` gives each utterance three keys,
its ``listing`` key (:func:`utterance_keys`: path relative to the corpus root, size, speaker,
label; not the modification time, so a copied corpus still matches), its ``file`` key (resolved
real path, size and modification time: the same file through another manifest, absolute or
relative paths, a symlink, with or without a speaker column) and its ``audio`` key (a hash of the
decoded samples, ``Record.audio``: the same audio anywhere, in any container). Checkpoints store
the keys of the utterances they used (``used_utterances``; ``train_utterances``, the listing keys
of the training utterances, is what older versions stored and read), and ``evaluate`` leaves out
every utterance one of whose keys is among them (:func:`used_positions`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

from .._code import code_digest
from .._digest import canonical_json, fingerprint  # noqa: F401 (this module's API)
from ..data.corpus import file_stamp

IDENTITY_VERSION = 3  # 2: the split's hash; 3: the code's digest
# TrainConfig fields that do not change what a run computes
NOT_IN_IDENTITY = ("eval_batch", "extra")




def _stat(path: str) -> tuple[int | None, int | None]:
    return file_stamp(path) or (None, None)


def _relative(path: str, root: str) -> str:
    if not root:
        return path
    try:
        return os.path.relpath(path, root)
    except ValueError:  # another drive (Windows)
        return path


def corpus_identity(corpus) -> dict:
    """Name, classes, size and a hash of every utterance's file and annotation (see above)."""
    rows = []
    for r in corpus:
        size, mtime = _stat(r.path)
        rows.append([_relative(r.path, corpus.root), size, mtime, r.speaker, r.label, r.phrase])
    rows.sort(key=canonical_json)
    digest = hashlib.sha256(canonical_json(rows).encode()).hexdigest()[:16]
    out = {"name": corpus.name, "classes": list(corpus.classes), "utterances": len(rows),
           "hash": digest}
    if corpus.options:  # (what a class is: IEMOCAP's merge_excited, Att-HACK's names)
        out["options"] = dict(corpus.options)
    return out


def utterance_keys(corpus, indices: Iterable[int] | None = None) -> list[str]:
    """One short key per utterance (path relative to the root, size, speaker, label)."""
    idx = range(len(corpus)) if indices is None else indices
    keys = []
    for i in idx:
        r = corpus[int(i)]
        blob = canonical_json([_relative(r.path, corpus.root), _stat(r.path)[0], r.speaker,
                               r.label])
        keys.append(hashlib.sha256(blob.encode()).hexdigest()[:16])
    return keys


USED_KINDS = ("listing", "file", "audio")


def _file_key(path: str) -> str:
    real = os.path.realpath(path)
    size, mtime = _stat(real)
    return hashlib.sha256(canonical_json(["file", real, size, mtime]).encode()).hexdigest()[:16]


def _keys_of(corpus, i: int) -> dict[str, str | None]:
    """The keys of utterance ``i`` by kind (``audio`` None when its audio was not read)."""
    r = corpus[int(i)]
    return {"listing": utterance_keys(corpus, [i])[0], "file": _file_key(r.path),
            "audio": getattr(r, "audio", None)}


def used_keys(corpus, indices: Iterable[int]) -> dict[str, list[str]]:
    """{kind: sorted keys} of the utterances at ``indices`` (see the module's docstring)."""
    out: dict[str, set[str]] = {kind: set() for kind in USED_KINDS}
    for i in indices:
        for kind, key in _keys_of(corpus, i).items():
            if key is not None:
                out[kind].add(key)
    return {kind: sorted(keys) for kind, keys in out.items()}


def used_positions(corpus, indices: Sequence[int], used: dict[str, Iterable[str]]) -> list[int]:
    """Positions in ``indices`` of the utterances that have a key in ``used`` ({kind: keys},
    as :func:`used_keys` gives; a checkpoint of an older version: {"listing": keys})."""
    known = {kind: set(used.get(kind) or ()) for kind in USED_KINDS}
    return [j for j, i in enumerate(indices)
            if any(key in known[kind] for kind, key in _keys_of(corpus, i).items())]


def fold_layout(protocol: str, k: int, seed: int, fold: int, selection: float = 0.0) -> dict:
    """Which utterances train and which validate: enough to rebuild the split of a corpus."""
    return {"protocol": protocol, "k": int(k), "seed": int(seed), "fold": int(fold),
            "selection": float(selection)}


def split_digest(keys: Sequence[str], train_idx, selection_idx, held_out_idx) -> str:
    """A hash of the utterances in each part of a fold's split (``keys``: the corpus'
    :func:`utterance_keys`, by position; each part's keys sorted, so the listing's order does
    not matter, only which utterance is where)."""
    parts = [sorted(keys[int(i)] for i in ([] if idx is None else idx))
             for idx in (train_idx, selection_idx, held_out_idx)]
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def run_identity(corpus_id: dict, layout: dict, train_config: dict, data: dict,
                 split: str) -> dict:
    """The identity of one training run (one model on one fold; ``split``: its
    :func:`split_digest`)."""
    cfg = {k: v for k, v in train_config.items() if k not in NOT_IN_IDENTITY}
    return {"version": IDENTITY_VERSION, "corpus": corpus_id, "folds": layout, "split": split,
            "data": data, "train": cfg, "code": code_digest()}


def environment(device: str = "cpu") -> dict:
    """What is computing a run in this process, on ``device`` (JSON-ready; see the module's
    docstring)."""
    import platform
    from importlib import metadata

    import torch

    from .. import __version__
    from .. import distributed as dist
    from .._backend import describe_device, extension_status, requested_backend
    from ..kernels.logmel_delta.native import REGFFT_ENV
    from ..kernels.ssa_attention.function import LARGE_ENV, ONE_LAUNCH_ENV

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    # the GPU kernels' opt-in variants set in this process (None: none, as in older records)
    switches = {name: os.environ[name] for name in (ONE_LAUNCH_ENV, LARGE_ENV, REGFFT_ENV)
                if os.environ.get(name, "") not in ("", "0")}
    return {"ssa_fast": __version__, "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.version.cuda, "triton": version("triton"),
            # (decoding and resampling: a corpus' features, when they are computed here)
            "soundfile": version("soundfile"), "soxr": version("soxr"),
            "kernel_variants": switches or None,
            "device": torch.device(device).type, "device_name": describe_device(device),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "processes": dist.world_size(),
            # (what else changes the numbers in rounding: the threads of a CPU run, whether the
            # compiled extension loads (else the pure-torch reference runs), a backend forced by
            # SSA_FAST_BACKEND or use_backend; TrainConfig.backend is in the identity)
            "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else None,
            "extension": extension_status()[0], "backend": requested_backend(None)}


def environments(runs: Iterable[dict]) -> list[dict]:
    """The distinct environments of run results (their ``environment``; None for a result that
    recorded none), each with the runs trained in it, in the order first seen."""
    out: dict[str, dict] = {}  # (by canonical JSON: one pass, insertion-ordered)
    for r in runs:
        env = r.get("environment")
        out.setdefault(canonical_json(env), {"environment": env, "runs": 0})["runs"] += 1
    return list(out.values())


def environment_differences(envs: Sequence[dict | None]) -> list[str]:
    """The entries in which some of these environments differ (``unrecorded`` when one is
    None)."""
    recorded = [e for e in envs if isinstance(e, dict)]
    keys = sorted({k for e in recorded for k in e})
    out = [k for k in keys if len({canonical_json(e.get(k)) for e in recorded}) > 1]
    return out + (["unrecorded"] if len(recorded) < len(envs) else [])


def _flat(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def differences(old: dict | None, new: dict) -> list[str]:
    """Readable ``name: old -> new`` lines for every entry in which two identities differ."""
    if not isinstance(old, dict):
        return ["no record of what produced it"]
    a, b = _flat(old), _flat(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            name = {"corpus.hash": "corpus files",
                    "split": "the fold's utterances (training / selection / held out)",
                    "code": "ssa_fast's code that computes the results"
                    }.get(key, key)
            out.append(f"{name}: {a.get(key, '<absent>')} -> {b.get(key, '<absent>')}")
    return out


def describe_layout(layout: dict) -> str:
    sel = layout.get("selection") or 0.0
    return (f"protocol {layout['protocol']}, {layout['k']} folds, seed {layout['seed']}, fold "
            f"{layout['fold']}" + (f", selection split {sel:g}" if sel else ""))

