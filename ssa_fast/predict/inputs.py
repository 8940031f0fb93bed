"""What `predict` reads: inputs named on the command line (files, folders, manifests, list
files) expanded into audio files, decoded and resampled in DataLoader workers.

A worker reads one whole file (at most LOAD_SECONDS of audio: memory stays bounded by the
workers' prefetch), mixes it down, resamples it to the model's rate and hands over an
:class:`~ssa_fast.predict.engine.Item`; a longer file is only scanned (its peak and duration,
block by block) and classified block by block in the main process. A file that cannot be read
becomes an Item with its reason: the run goes on.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import _warn
from .._process import end_with_parent
from ..data.corpus import (
    AUDIO_SUFFIXES,
    file_stamp,
    manifest_paths,
    nfc,
    same_file_key,
    walk_files,
)
from .engine import Item

MANIFEST_SUFFIXES = (".csv", ".json")
LIST_SUFFIXES = (".txt", ".lst", ".list")
LOAD_SECONDS = 300.0  # longer files are streamed in blocks rather than held whole


@dataclass(frozen=True)
class Entry:
    """One audio file to classify, and its speaker when a manifest names one."""

    path: str
    speaker: str | None = None


def _folder(root: Path) -> list[Path]:
    """The audio files below ``root`` (corpus.walk_files: sorted, linked folders too, hidden
    ones left out)."""
    return [p for p in walk_files(root) if p.suffix.lower() in AUDIO_SUFFIXES]


def _list_file(path: Path) -> list[str]:
    """One path a line (relative to the list file's folder); blank lines and # comments are
    skipped."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        from ..errors import UserError

        raise UserError(f"{path}: not a readable list of files ({exc})") from exc
    files = [line.strip() for line in lines]
    return [str(path.parent / f) if not Path(f).is_absolute() else f
            for f in files if f and not f.startswith("#")]


def expand_inputs(inputs: Sequence[str | os.PathLike], columns: Mapping[str, str] | None = None,
                  speaker: str | None = None) -> tuple[list[Entry], list[str]]:
    """The audio files named by ``inputs``, in order, each once: a folder gives its audio files
    (recursively, AUDIO_SUFFIXES, hidden ones left out, sorted), a manifest (.csv / .json,
    ``columns`` as in training; only the path column is needed, a speaker column names each
    file's speaker) and a list file (.txt / .lst / .list, one path a line) the files they name,
    anything else is a file. ``speaker`` is the speaker of files without one.

    Returns (entries, problems): one line per input that gave nothing (a folder without audio,
    a manifest record without a path). Missing or unreadable files are entries: the loader
    reports each with its reason."""
    entries: list[tuple[Entry, bool]] = []  # (entry, whether a manifest named its speaker)
    problems: list[str] = []
    speaker = nfc(speaker)  # (speakers as training reads them: one normal form)
    for inp in inputs:
        p = Path(inp)
        suffix = p.suffix.lower()
        if p.is_dir():
            files = _folder(p)
            if not files:
                problems.append(f"{p}: a folder with no audio files "
                                f"({', '.join(AUDIO_SUFFIXES)}, searched recursively)")
            entries += [(Entry(str(f), speaker), False) for f in files]
        elif suffix in MANIFEST_SUFFIXES and p.is_file():
            rows, bad = manifest_paths(p, columns)
            problems += bad
            entries += [(Entry(f, nfc(s) or speaker), bool(s)) for f, s in rows]
        elif suffix in LIST_SUFFIXES and p.is_file():
            files = _list_file(p)
            if not files:
                problems.append(f"{p}: a list file naming no files")
            entries += [(Entry(f, speaker), False) for f in files]
        else:
            entries.append((Entry(str(p), speaker), False))
    return _once(entries), problems


def _once(entries: list[tuple[Entry, bool]]) -> list[Entry]:
    """Each file once (corpus.same_file_key: a symlink or a hard link is the same file), where
    it is first named, with the speaker a manifest names for it wherever that is (the order of
    the inputs does not change its normalisation); two manifests naming two speakers: the
    first, with a warning."""
    first: dict[tuple, int] = {}
    unique: list[Entry] = []
    named: list[bool] = []
    for e, from_manifest in entries:
        key = same_file_key(e.path)
        if key not in first:
            first[key] = len(unique)
            unique.append(e)
            named.append(from_manifest)
            continue
        i = first[key]
        if from_manifest and not named[i]:
            unique[i], named[i] = Entry(unique[i].path, e.speaker), True
        elif from_manifest and e.speaker != unique[i].speaker:
            _warn.warn(f"{e.path}: named with speaker {unique[i].speaker!r} and with "
                       f"{e.speaker!r}; classified once, as {unique[i].speaker!r}'s")
    return unique


def read_item(index: int, entry: Entry, sample_rate: int,
              load_seconds: float = LOAD_SECONDS) -> Item:
    """One file as an Item: its waveform at ``sample_rate``, or (longer than ``load_seconds``)
    its peak and duration for streaming, or the reason it cannot be used."""
    import soundfile as sf

    from ..audio.io import AudioError, path_problem, read, resample, scan, swing

    path = entry.path
    # (its size and time before it is read: a change while it is read is seen by a resume)
    item = Item(index, path, speaker=entry.speaker, stamp=file_stamp(path))
    problem = path_problem(path)
    if problem:
        item.error = f"{path}: {problem}"
        return item
    try:
        try:
            info_seconds = sf.info(path).duration
        except Exception as exc:  # not audio at all: say so before anything else
            raise AudioError(f"{path}: cannot read audio ({exc})") from exc
        if info_seconds > load_seconds:  # (streamed later: scanned here, not held)
            item.duration, item.peak = scan(path)
            item.stream = True
            return item
        y, sr = read(path)
    except AudioError as exc:
        item.error = str(exc)
        return item
    item.peak = swing(y)  # (at the file's own rate: resampling rings at a constant's edges)
    item.wave = resample(y, sr, sample_rate)
    item.duration = len(item.wave) / sample_rate
    return item


class FileDataset(torch.utils.data.Dataset):
    """Entries -> Items (read_item), for a DataLoader with workers."""

    def __init__(self, entries: Sequence[Entry], sample_rate: int,
                 load_seconds: float = LOAD_SECONDS):
        self.entries, self.sample_rate, self.load_seconds = list(entries), sample_rate, load_seconds

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> Item:
        return read_item(i, self.entries[i], self.sample_rate, self.load_seconds)


def _as_is(item: Item) -> Item:  # (a named function: spawned workers pickle it)
    return item


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C is the main process's: it ends the run (and the workers) with one line, instead
    # of every worker printing its own traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # a killed main process (SIGKILL: no clean-up runs) takes its decoding workers with it;
    # left alone they lived on for minutes, blocked handing over files nobody would read
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is not None:
        end_with_parent(parent.pid, signal.SIGKILL)


def default_workers() -> int:
    """Decoding workers by default: the cores beyond the main process's, at most 8."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def load_items(entries: Sequence[Entry], sample_rate: int, *, num_workers: int | None = None,
               pin_memory: bool = False, load_seconds: float = LOAD_SECONDS) -> Iterator[Item]:
    """Items of ``entries`` in order, read by ``num_workers`` DataLoader workers (0: in this
    process; None: :func:`default_workers`), into pinned memory when ``pin_memory`` (for
    non_blocking copies to a GPU). Workers prefetch 2 files each: memory stays bounded."""
    if num_workers is None:
        num_workers = default_workers()
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if not entries:
        return iter(())
    loader = torch.utils.data.DataLoader(
        FileDataset(entries, sample_rate, load_seconds), batch_size=None, shuffle=False,
        num_workers=num_workers, pin_memory=pin_memory, worker_init_fn=_worker_init,
        collate_fn=_as_is, prefetch_factor=2 if num_workers else None)
    return iter(loader)
