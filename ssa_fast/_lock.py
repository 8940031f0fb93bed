"""Exclusive locks of run folders between processes: two processes never train the same run.

A lock is ``fcntl.flock`` on ``<folder>/.lock``: the operating system releases it when its
process ends, however it ends (a kill, a crash), so an interrupted run never blocks the next one
and nothing has to clean it up. The file holds "pid N on HOST" while it is held, to name the
holder. Across machines the lock needs a shared file system whose flock works between clients
(NFSv4 does; Lustre needs the ``flock`` mount option).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

LOCK_NAME = ".lock"


def holder(folder: str | os.PathLike) -> str:
    """Who holds the lock of ``folder``, as written by the holder ("pid N on HOST")."""
    try:
        text = (Path(folder) / LOCK_NAME).read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, wait: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block; yields
    True when held. ``wait=False``: yields False at once when another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield True
        finally:
            os.ftruncate(fd, 0)  # still held: nobody reads a stale name
    finally:
        os.close(fd)  # releases the lock
