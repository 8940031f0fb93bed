"""Archives that outgrow one machine: the prediction engine on a Dask cluster (the optional
extra ``ssa-fast[dask]``, ``dask[distributed]``).

::

    from distributed import Client
    from ssa_fast.predict.dask import classify_files_dask

    client = Client("tcp://scheduler:8786")      # or Client(LocalCluster()) on one machine
    for rec in classify_files_dask(client, "best.pt", ["archive/", "more.csv"]):
        print(rec["file"], rec["status"], rec["label"])

The client expands the inputs (as ``ssa-fast predict``) and cuts the file list into tasks of
``files_per_task`` files; each worker process loads the checkpoint once (on its GPU when it
has one: run one worker process per GPU, e.g. with dask-cuda's LocalCUDACluster, which gives
each its own device) and classifies its tasks with the same engine as one machine
(:meth:`EmotionClassifier.classify_entries`: segments of many files a forward pass). Records
(``predict.output.record``: the rows of ``--out``) come back in input order, a task's as soon as
it and every task before it are done, while at most ``max_pending`` tasks are submitted ahead;
the files must be readable at the same paths on every worker (a shared file system).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_CLASSIFIERS: dict = {}  # (checkpoint, device) -> (EmotionClassifier, checkpoint id): per worker


def _classifier(checkpoint: str, device: str | None, ident: str | None = None):
    """The worker's classifier of ``checkpoint`` on ``device``, loaded once, and loaded again
    when the file's id is no longer ``ident`` (the client's, taken once per call): a checkpoint
    retrained into the same path was scored with the old weights, under the old id, by every
    worker that had loaded it."""
    import torch

    from . import EmotionClassifier
    from .output import checkpoint_id

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (checkpoint, device)
    if key not in _CLASSIFIERS or (ident is not None and _CLASSIFIERS[key][1] != ident):
        now = checkpoint_id(checkpoint)
        if ident is not None and now != ident:
            raise RuntimeError(f"checkpoint {checkpoint} changed during this call (its id "
                               f"{ident} then, {now} now): call again to score with one model")
        _CLASSIFIERS[key] = (EmotionClassifier.from_checkpoint(checkpoint, device), now)
    return _CLASSIFIERS[key]


def classify_task(checkpoint: str, entries: list, device: str | None = None,
                  batch_size: int | None = None, bf16: bool = False,
                  num_workers: int = 0, ident: str | None = None) -> list[dict]:
    """One task on a worker: the records of ``entries`` (inputs.Entry), in order, by the
    checkpoint whose id is ``ident`` (the client's; None: whatever the file is now)."""
    from .output import record

    clf, ident = _classifier(checkpoint, device, ident)
    return [record(p, ident, bf16) for p in clf.classify_entries(
        entries, batch_size=batch_size, num_workers=num_workers, bf16=bf16)]


def classify_files_dask(client, checkpoint: str | os.PathLike,
                        inputs: Sequence[str | os.PathLike], *, speaker: str | None = None,
                        columns: Mapping[str, str] | None = None, files_per_task: int = 256,
                        max_pending: int | None = None, device: str | None = None,
                        batch_size: int | None = None, bf16: bool = False,
                        num_workers: int = 0) -> Iterator[dict]:
    """Records of every file of ``inputs`` classified on the cluster of ``client``, in input
    order. ``device`` None: each worker's GPU if it has one, else its CPU; ``num_workers``:
    decoding processes inside each task (0: the Dask worker's own thread); ``max_pending``
    (default: 2 per Dask worker thread) bounds the tasks in flight. Files that failed come
    back with status "failed" and their reason; the inputs that name no file raise nothing
    and are returned by ``expand_inputs`` if you need them. The checkpoint's id is taken once
    here: a worker that loaded an earlier file at that path loads it again, and one that finds
    the file replaced during the call raises rather than score with two models."""
    from .inputs import Entry, expand_inputs
    from .output import checkpoint_id

    if files_per_task < 1:
        raise ValueError(f"files_per_task must be >= 1, got {files_per_task}")
    checkpoint = str(Path(checkpoint).resolve())
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    ident = checkpoint_id(checkpoint)
    entries, _ = expand_inputs(list(inputs), columns, speaker)
    if any(e.speaker for e in entries):  # a name that normalises nothing, said here, once
        _classifier(checkpoint, "cpu", ident)[0].say_unused_speakers(entries)
    # the workers get absolute paths (a relative one is another file, or none, from a worker's
    # working directory) and the records name each file as it was given, as classify_files does
    given = [e.path for e in entries]
    entries = [Entry(os.path.abspath(e.path), e.speaker) for e in entries]
    tasks = range(0, len(entries), files_per_task)
    if max_pending is None:
        max_pending = 2 * max(1, sum(client.nthreads().values()))
    pending: deque = deque()

    def records(start: int, future) -> list[dict]:
        recs = future.result()
        for rec, name in zip(recs, given[start:start + files_per_task], strict=True):
            rec["file"] = name
        return recs

    for start in tasks:
        pending.append((start, client.submit(
            classify_task, checkpoint, entries[start:start + files_per_task], device,
            batch_size, bf16, num_workers, ident, pure=False)))
        while len(pending) >= max_pending:
            yield from records(*pending.popleft())
    while pending:
        yield from records(*pending.popleft())
