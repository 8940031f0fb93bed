"""Child processes that do not outlive their parent."""

from __future__ import annotations

import os
import signal


def end_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:
    """Have the kernel send this process ``sig`` when its parent (pid ``parent``) ends, so
    that no orphan goes on working after its parent was killed (Linux; elsewhere a no-op).
    When the parent has already ended, ``sig`` is sent at once."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the line above
        os.kill(os.getpid(), sig)
