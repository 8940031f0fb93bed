"""Atomic file writes: one helper for every JSON, CSV, checkpoint, cache file and figure.

A write goes to a temporary file in the destination's folder and is renamed over the destination
only once complete, so a kill, a crash or a full disk mid-write leaves the previous file (or no
file) and never a truncated one. The temporary file is removed on failure; files left by a killed
process (``.<name>.tmp<pid>@<host>``, pid no longer alive on this host) are swept by
:func:`sweep_stale`. The host in the name keeps processes of other machines writing into a shared
folder (the shards of a cluster job) safe from a sweep here, which cannot see their processes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path

_TMP = re.compile(r"^\.(?P<name>.+)\.tmp(?P<pid>\d+)(?:@(?P<host>[^@]+))?$")


def _host() -> str:
    """This machine's name as it goes into a file name."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


class DiskFullError(OSError):
    """The destination's file system is full (the partial file was removed)."""


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}@{_host()}")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file, then rename it over ``path``.

    Returns ``path``. On any failure the temporary file is removed and the error re-raised; a full
    disk is raised as :class:`DiskFullError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is None and exc.errno is not None:  # a failed write() names no file
            exc.filename = str(path)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(exc.errno, f"no space left on the device while writing {path}",
                                str(path)) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj, **kwargs) -> Path:
    kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **kwargs) + "\n")


class _Capture:
    """A file wrapper that keeps the OSError of a failed write: torch.save turns it into a
    RuntimeError without the errno, and a full disk would not be recognised."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data):
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def flush(self):
        return self.fh.flush()


def save_torch(path: str | os.PathLike, obj) -> Path:
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            capture = _Capture(fh)
            try:
                torch.save(obj, capture)
            except RuntimeError:
                if capture.error is not None:
                    raise capture.error from None
                raise

    return atomic_write(path, write)


def save_figure(path: str | os.PathLike, fig, **kwargs) -> Path:
    """``fig.savefig`` through a temporary file (the format comes from ``path``'s suffix)."""
    path = Path(path)
    fmt = kwargs.pop("format", path.suffix.lstrip(".") or None)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, **kwargs))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Remove temporary files of dead processes of this host under ``folder`` (and those named
    without a host, by older versions); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, here = [], _host()
    for p in folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*"):
        m = _TMP.match(p.name)
        if m and m["host"] in (None, here) and p.is_file() and not _alive(int(m["pid"])):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def snapshot(obj):
    """A copy of ``obj`` (nested dicts, lists, tuples) whose tensors are detached CPU copies:
    what a background write may serialise while training goes on changing the originals."""
    import torch

    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, snapshot(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(snapshot(v) for v in obj)
    return obj


class BackgroundWriter:
    """Checkpoint writes off the training loop's critical path: one thread writes the files in
    the order they were handed over, each atomically (:func:`save_torch`), from a
    :func:`snapshot` taken at hand-over. A failed write is raised by the next :meth:`save_torch`
    or by :meth:`wait`; :meth:`wait` returns once everything handed over is on disk."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ssa-fast-writer")
        self._pending: list = []

    def save_torch(self, path: str | os.PathLike, obj) -> None:
        self._raise_failed()
        self._pending.append(self._pool.submit(save_torch, path, snapshot(obj)))

    def _raise_failed(self) -> None:
        done = [f for f in self._pending if f.done()]
        self._pending = [f for f in self._pending if not f.done()]
        for f in done:
            f.result()

    def wait(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)
